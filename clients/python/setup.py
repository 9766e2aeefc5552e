"""Builds the package with its gRPC stubs (clearbg.v1), generated from the service's protos.

The protos are the repository's proto/ (two folders up) when building from a checkout, or the
copy an sdist carries in proto/. The generated code lands in build/generated (never committed)
and is packaged as clearbg.v1; the `grpc` extra then asks for at least the protobuf and grpcio
versions that code was generated for.
"""

import pathlib
import re
import shutil

from setuptools import setup
from setuptools.command.sdist import sdist

HERE = pathlib.Path(__file__).resolve().parent
# The public services only (the operator's AdminService is not a client's business).
PROTOS = ("clearbg/v1/common.proto", "clearbg/v1/removebg.proto", "clearbg/v1/account.proto")
GENERATED = HERE / "build" / "generated"


def proto_root() -> pathlib.Path:
    for candidate in (HERE / "proto", HERE.parent.parent / "proto"):
        if all((candidate / name).is_file() for name in PROTOS):
            return candidate
    raise SystemExit(f"the ClearBG protos ({', '.join(PROTOS)}) are neither in {HERE / 'proto'} nor in ../../proto")


def generate() -> tuple:
    """Runs protoc; returns the minimum (protobuf, grpcio) versions of the generated code."""
    import google.api.annotations_pb2
    import google.protobuf
    import grpc_tools
    from grpc_tools import protoc

    googleapis = pathlib.Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
    shutil.rmtree(GENERATED, ignore_errors=True)
    GENERATED.mkdir(parents=True)
    root = proto_root()
    code = protoc.main([
        "protoc", f"-I{root}", f"-I{googleapis}", f"-I{well_known}",
        f"--python_out={GENERATED}", f"--pyi_out={GENERATED}", f"--grpc_python_out={GENERATED}", *PROTOS,
    ])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    (GENERATED / "clearbg" / "v1" / "__init__.py").write_text('"""Generated from proto/clearbg/v1 at build time."""\n')
    messages = (GENERATED / "clearbg" / "v1" / "removebg_pb2.py").read_text()
    found = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+)", messages)
    protobuf_min = ".".join(found.groups()) if found else google.protobuf.__version__
    stubs = (GENERATED / "clearbg" / "v1" / "removebg_pb2_grpc.py").read_text()
    found = re.search(r"GRPC_GENERATED_VERSION = ['\"]([\d.]+)['\"]", stubs)
    grpcio_min = found.group(1) if found else "1.48"
    return protobuf_min, grpcio_min


class SdistWithProtos(sdist):
    """An sdist carries the protos, so building from it needs no checkout."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        root = proto_root()
        for name in PROTOS:
            target = pathlib.Path(base_dir) / "proto" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, target)


protobuf_min, grpcio_min = generate()

setup(
    package_dir={"": "src", "clearbg.v1": "build/generated/clearbg/v1"},
    packages=["clearbg", "clearbg.grpc", "clearbg.cli", "clearbg.v1"],
    extras_require={
        "grpc": [f"grpcio>={grpcio_min}", f"protobuf>={protobuf_min}", "googleapis-common-protos>=1.56"],
        # The SDK's own tests (tests/): synthetic photos, and the check that the code runs on 3.8.
        "test": ["pytest>=7", "pillow>=9", "vermin>=1.6"],
    },
    cmdclass={"sdist": SdistWithProtos},
)
