"""Generates ClearBG's gRPC stubs for other languages from proto/ (run by `make stubs`).

    python clients/grpc/generate.py --out build/stubs [--lang python --lang ruby ...]

Writes build/stubs/<lang>/ (never committed, never edited by hand) for the public services
(clearbg.v1 RemoveBgService and AccountService). The generators are pinned:

- python: grpcio-tools from the project's venv (pyproject.toml), `--python_out --pyi_out
  --grpc_python_out`; google/api and google/rpc come from the googleapis-common-protos wheel.
- node: no code generation step: @grpc/proto-loader loads the copied protos at run time and
  its `proto-loader-gen-types` writes the TypeScript types (versions in clients/grpc's
  package-lock.json). npm's grpc-tools would fetch prebuilt binaries from outside the registry
  at install, which these machines cannot reach.
- ruby, php: Debian's protoc (protobuf-compiler 3.21.12) with Debian's grpc_ruby_plugin and
  grpc_php_plugin (protobuf-compiler-grpc 1.51.1). Ruby takes google/api and google/rpc from
  Debian's ruby-googleapis-common-protos-types; PHP gets them generated beside clearbg.
- csharp: Debian's protoc for the messages, and gRPC's own C# plugin built from the same gRPC
  release as Debian's plugins (grpcio-tools 1.51.1's source on PyPI, sha256-checked, compiled
  against Debian's libprotoc-dev 3.21.12): Debian ships no C# plugin. Cached under
  $CLEARBG_CACHE_DIR/tools.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import google.api.annotations_pb2

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO = ROOT / "proto"
# The public contract: what an API caller needs (the operator's AdminService is not a client's business).
PUBLIC = ("clearbg/v1/common.proto", "clearbg/v1/removebg.proto", "clearbg/v1/account.proto")
GOOGLE_API = ("google/api/annotations.proto", "google/api/http.proto", "google/api/httpbody.proto")
GOOGLE_RPC = ("google/rpc/status.proto", "google/rpc/error_details.proto")
GOOGLEAPIS = pathlib.Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent
DEBIAN_PROTOC = "/usr/bin/protoc"
DEBIAN_INCLUDE = "/usr/include"  # google/protobuf/*.proto of Debian's libprotobuf-dev
LANGUAGES = ("python", "node", "ruby", "php", "csharp")

CSHARP_PLUGIN_SOURCE = ("grpcio-tools", "1.51.1", "8e62d23d3fed9d4f81738f98dd193dbd2e21aed4a8f0dd715e75b5439e649727")


def run(*args: str | pathlib.Path, cwd: pathlib.Path | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=cwd)


def protoc(out: pathlib.Path, outputs: list[str], protos: tuple[str, ...], plugin: tuple[str, str] | None = None) -> None:
    """Debian's protoc over proto/ and the googleapis protos."""
    out.mkdir(parents=True, exist_ok=True)
    args = [DEBIAN_PROTOC, f"-I{PROTO}", f"-I{GOOGLEAPIS}", f"-I{DEBIAN_INCLUDE}", *outputs]
    if plugin is not None:
        args += [f"--plugin=protoc-gen-grpc={plugin[0]}", f"--grpc_out={plugin[1]}"]
    run(*args, *protos)


def python(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(__import__("grpc_tools").__file__).resolve().parent / "_proto"
    run(sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"-I{GOOGLEAPIS}", f"-I{well_known}",
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *PUBLIC)
    for package in (out / "clearbg", out / "clearbg" / "v1"):
        (package / "__init__.py").touch()


def node(out: pathlib.Path) -> None:
    """The protos (loaded at run time by @grpc/proto-loader) and their TypeScript types."""
    for root, names in ((PROTO, PUBLIC), (GOOGLEAPIS, GOOGLE_API + GOOGLE_RPC)):
        for name in names:
            target = out / "proto" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, target)
    gen_types = HERE / "node_modules" / ".bin" / "proto-loader-gen-types"
    if not gen_types.exists():
        raise SystemExit(f"{gen_types} is missing: run `npm ci` in {HERE} (make stubs does)")
    run(gen_types, "--grpcLib=@grpc/grpc-js", f"--outDir={out / 'types'}", f"--includeDirs={out / 'proto'}",
        "--keepCase", "--longs=String", "--enums=String", "--defaults", "--oneofs", *PUBLIC, *GOOGLE_RPC)


def ruby(out: pathlib.Path) -> None:
    protoc(out, [f"--ruby_out={out}"], PUBLIC, ("/usr/bin/grpc_ruby_plugin", str(out)))


def php(out: pathlib.Path) -> None:
    protoc(out, [f"--php_out={out}"], PUBLIC, ("/usr/bin/grpc_php_plugin", str(out)))
    protoc(out, [f"--php_out={out}"], GOOGLE_API + GOOGLE_RPC)


def csharp(out: pathlib.Path) -> None:
    protoc(out, [f"--csharp_out={out}"], PUBLIC, (str(csharp_plugin()), str(out)))
    protoc(out, [f"--csharp_out={out}"], GOOGLE_API + GOOGLE_RPC)


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CLEARBG_CACHE_DIR", pathlib.Path.home() / ".cache" / "clearbg")) / "tools"


def csharp_plugin() -> pathlib.Path:
    """gRPC's grpc_csharp_plugin, built once from the grpcio-tools sdist (sha256-checked) that
    carries gRPC's generator sources, against Debian's libprotoc."""
    name, version, sha256 = CSHARP_PLUGIN_SOURCE
    binary = cache_dir() / f"grpc_csharp_plugin-{version}-{sha256[:12]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        # The sdist's setup.py still imports pkg_resources: an old setuptools in a venv of its
        # own lets pip fetch it (pip builds its metadata); nothing of it is installed.
        run(sys.executable, "-m", "venv", work / "venv")
        pip = work / "venv" / "bin" / "pip"
        run(pip, "install", "--quiet", "setuptools<70", "wheel")
        run(pip, "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
            f"{name}=={version}", "-d", work)
        sdist = work / f"{name}-{version}.tar.gz"
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{sdist.name}: sha256 {digest}, expected {sha256}")
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        source = work / f"{name}-{version}" / "grpc_root"
        built = work / "grpc_csharp_plugin"
        run("g++", "-std=c++17", "-O1", f"-I{source}", f"-I{source / 'include'}",
            source / "src/compiler/csharp_plugin.cc", source / "src/compiler/csharp_generator.cc",
            "-lprotoc", "-lprotobuf", "-lpthread", "-o", built)
        shutil.move(built, binary)
    return binary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--lang", action="append", choices=LANGUAGES, help="default: all")
    ns = parser.parse_args(argv)
    for language in ns.lang or LANGUAGES:
        out = ns.out.resolve() / language
        shutil.rmtree(out, ignore_errors=True)
        globals()[language](out)
        print(f"stubs: {language} -> {out}")


if __name__ == "__main__":
    main()
