"""Generates the Python stubs and Envoy's descriptor set from proto/.

Run by `make gen`. The google/api imports come from the googleapis-common-protos wheel
because no proto registry is reachable from the build machines.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import grpc_tools
from grpc_tools import protoc
import google.api.annotations_pb2  # noqa: F401  (locates the googleapis protos)

PROTO_ROOT = pathlib.Path(__file__).resolve().parent.parent / "proto"


def googleapis_dir() -> pathlib.Path:
    """google/api, google/rpc, google/type protos as the googleapis-common-protos wheel ships them."""
    return pathlib.Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent


def well_known_dir() -> pathlib.Path:
    """google/protobuf/*.proto as grpcio-tools ships them."""
    return pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"


def include_dirs(root: pathlib.Path = PROTO_ROOT) -> list[str]:
    return [str(root), str(googleapis_dir()), str(well_known_dir())]


def generate(out: pathlib.Path | None, descriptor: pathlib.Path, root: pathlib.Path = PROTO_ROOT) -> None:
    """Python code into `out` (None: none) and the descriptor set of every proto under `root`."""
    protos = sorted(str(p.relative_to(root)) for p in root.rglob("*.proto"))
    descriptor.parent.mkdir(parents=True, exist_ok=True)
    args = ["protoc", *(f"-I{d}" for d in include_dirs(root))]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={descriptor}", *protos]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    if out is None:
        return
    for package in {pathlib.Path(p).parent for p in protos}:
        for level in [package, *package.parents][:-1]:
            (out / level / "__init__.py").touch()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, help="where the Python code goes (omitted: none)")
    parser.add_argument("--descriptor", type=pathlib.Path, required=True)
    parser.add_argument("--proto-root", type=pathlib.Path, default=PROTO_ROOT)
    ns = parser.parse_args(argv)
    generate(ns.out, ns.descriptor, ns.proto_root.resolve())


if __name__ == "__main__":
    main(sys.argv[1:])
