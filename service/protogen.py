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


def include_dirs() -> list[str]:
    googleapis = pathlib.Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(PROTO_ROOT), str(googleapis), str(well_known)]


def generate(out: pathlib.Path, descriptor: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    descriptor.parent.mkdir(parents=True, exist_ok=True)
    args = ["protoc", *(f"-I{d}" for d in include_dirs())]
    args += [
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={descriptor}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    for package in {pathlib.Path(p).parent for p in protos}:
        for level in [package, *package.parents][:-1]:
            (out / level / "__init__.py").touch()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--descriptor", type=pathlib.Path, required=True)
    ns = parser.parse_args(argv)
    generate(ns.out, ns.descriptor)


if __name__ == "__main__":
    main(sys.argv[1:])
