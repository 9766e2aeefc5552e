"""On the GPU machine: stage the carried pieces, then prepare the model and run bench/gpu.py.

    python3 bench/gpu_device.py stage [--into /tmp/clearbg-gpu]
    python3 bench/gpu_device.py run --budget 420 [--device cuda|cpu] [--into ...] [--out $OUT]

`stage` unpacks whatever `.device/part*` this call carried (bench/gpu_bundle.py made them) into
the staging folder: chunks first, then every item whose chunks are all there, checked by sha256.
The folder outlives the call only while the machine stays warm, so the pieces go in consecutive
calls (bench/GPU_RUN.md). It prints what is complete and what is still missing.

`run` needs every item staged. It runs `python -m modelprep --kinds fp32` there (the manifest is
measured on that machine: torch-cuda-fp16/bf16 against onnxruntime's fp32), then `python -m
bench.gpu` with what is left of --budget, and writes every log and result under --out ($OUT).
Only the standard library here: it runs under the machine's own python3 before anything is set up.
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
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGE = pathlib.Path("/tmp/clearbg-gpu")


def _index(into: pathlib.Path, pieces: pathlib.Path) -> dict | None:
    for candidate in [*sorted(pieces.glob("part*/bundle.json")), into / "bundle.json"]:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def _unshuffle(blob: bytes, layout: dict) -> bytes:
    """The file as it was before bench/gpu_bundle.shuffle_onnx (stdlib only: runs on the device
    before anything is installed; the bundler checks every shuffle with it)."""
    segments, size = layout["segments"], layout["size"]
    rest_size = size - sum(length for _, length, _ in segments)
    rest, moved = memoryview(blob)[:rest_size], memoryview(blob)[rest_size:]
    out, cursor, taken, at = bytearray(size), 0, 0, 0
    for offset, length, itemsize in segments:
        gap = offset - cursor
        out[cursor:offset] = rest[taken:taken + gap]
        taken += gap
        plane = length // itemsize
        for byte in range(itemsize):  # byte `byte` of every value was stored together
            out[offset + byte:offset + length:itemsize] = moved[at + byte * plane:at + (byte + 1) * plane]
        at += length
        cursor = offset + length
    out[cursor:] = rest[taken:]
    return bytes(out)


def _done(into: pathlib.Path, item: dict) -> bool:
    """Unpacked already, from this very bundle (a rebuilt bundle's item has another sha256)."""
    marker = into / "done" / item["name"]
    return marker.is_file() and marker.read_text() == item["sha256"]


def stage(into: pathlib.Path, pieces: pathlib.Path = ROOT / ".device") -> int:
    into.mkdir(parents=True, exist_ok=True)
    chunks_dir, done_dir = into / "chunks", into / "done"
    chunks_dir.mkdir(exist_ok=True)
    done_dir.mkdir(exist_ok=True)
    index = _index(into, pieces)
    if index is None:
        print("no .device/part*/bundle.json carried and nothing staged: build the pieces with "
              "`python -m bench.gpu_bundle` and carry one", file=sys.stderr)
        return 2
    (into / "bundle.json").write_text(json.dumps(index))
    for piece in sorted(pieces.glob("part*")):
        for chunk in piece.iterdir():
            if chunk.name != "bundle.json" and not (chunks_dir / chunk.name).is_file():
                shutil.copyfile(chunk, chunks_dir / f"{chunk.name}.part")
                os.replace(chunks_dir / f"{chunk.name}.part", chunks_dir / chunk.name)
                print(f"staged chunk {chunk.name} from {piece.name}")
    missing = []
    for item in index["items"]:
        if _done(into, item):
            continue
        absent = [c for c in item["chunks"] if not (chunks_dir / c).is_file()]
        if absent:
            missing.append(f"{item['name']} (needs {', '.join(absent)})")
            continue
        started = time.monotonic()
        blob = lzma.decompress(b"".join((chunks_dir / c).read_bytes() for c in item["chunks"]))
        if hashlib.sha256(blob).hexdigest() != item["sha256"]:
            raise SystemExit(f"{item['name']}: sha256 mismatch after unpacking: a piece is damaged")
        if item["kind"] == "onnx-shuffled":
            data = _unshuffle(blob, item["layout"])
            if hashlib.sha256(data).hexdigest() != item["file_sha256"]:
                raise SystemExit(f"{item['name']}: the model file does not match its sha256 after unshuffling")
            target = into / item["dest"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            target = into / item["dest"]
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                tar.extractall(target, filter="data")
        for chunk in item["chunks"]:
            (chunks_dir / chunk).unlink()
        (done_dir / item["name"]).write_text(item["sha256"])
        print(f"unpacked {item['name']} ({item['size'] / 2**20:.1f} MiB) in {time.monotonic() - started:.1f} s")
    complete = [i["name"] for i in index["items"] if _done(into, i)]
    print(f"complete: {', '.join(complete) or 'nothing'}")
    if missing:
        print(f"still missing: {'; '.join(missing)}")
        return 3
    print(f"all {len(index['items'])} items staged in {into}: ready for `run`")
    return 0


def environment(into: pathlib.Path, device: str) -> dict[str, str]:
    env = dict(os.environ, CLEARBG_CACHE_DIR=str(into / "cache"), PYTHONUNBUFFERED="1")
    paths = [str(ROOT), str(ROOT / "gen")]
    if device == "cuda":  # the carried packages are the GPU image's Python's (3.12); a CPU check uses its own venv
        paths.insert(0, str(into / "site"))
        env["PATH"] = f"{into / 'site' / 'envoy' / '_bin'}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = ":".join(paths + [p for p in env.get("PYTHONPATH", "").split(":") if p])
    return env


def _run_logged(argv: list[str], env: dict, log: pathlib.Path, timeout: float) -> int:
    print(f"$ {' '.join(argv)}  (at most {timeout:.0f} s)", flush=True)
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        for line in process.stdout:
            sys.stdout.write(line)
            handle.write(line)
            if time.monotonic() > deadline:
                break
        try:
            return process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            print(f"stopped after {timeout:.0f} s", flush=True)
            return 124


def run(into: pathlib.Path, budget: float, device: str, out: pathlib.Path, sections: str | None,
        extra: list[str]) -> int:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    index = json.loads((into / "bundle.json").read_text()) if (into / "bundle.json").is_file() else None
    missing = [i["name"] for i in index["items"] if not _done(into, i)] if index else ["everything"]
    if missing:
        print(f"not staged: {', '.join(missing)}; run `stage` with the missing pieces first", file=sys.stderr)
        return 2
    for name in ("gen", "build"):  # generated here from proto/ (no grpcio-tools there)
        source = into / "repo" / name
        if source.is_dir():
            shutil.copytree(source, ROOT / name, dirs_exist_ok=True)
    env = environment(into, device)
    facts = subprocess.run([sys.executable, "-c", "import torch, onnxruntime, numpy, sys; print(sys.version.split()[0], "
                            "'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ort', onnxruntime.__version__, "
                            "'numpy', numpy.__version__)"], env=env, capture_output=True, text=True)
    print(facts.stdout.strip() or facts.stderr[-2000:], flush=True)
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
        (out / "nvidia-smi.txt").write_text(smi.stdout)
    prep = [sys.executable, "-m", "modelprep", "--kinds", "fp32"] + (["--torch-cpu-check"] if device == "cpu" else [])
    # about a minute there; on a CPU check, fp32 on two runtimes at the net's full view takes minutes
    code = _run_logged(prep, env, out / "modelprep.txt", max(30.0, budget * (0.3 if device == "cuda" else 0.6)))
    if code != 0:
        print(f"modelprep failed ({code}): see modelprep.txt", file=sys.stderr)
        return code
    left = budget - (time.monotonic() - started) - 15.0
    bench = [sys.executable, "-m", "bench.gpu", "--device", device, "--budget", f"{max(10.0, left):.0f}",
             "--quality", str(into / "quality"), "--out", str(out)]
    if sections:
        bench += ["--sections", sections]
    code = _run_logged(bench + extra, env, out / "bench.txt", max(20.0, left + 10.0))
    print(f"done in {time.monotonic() - started:.0f} s of {budget:.0f}; results in {out}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/gpu_device.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("stage")
    staging.add_argument("--into", type=pathlib.Path, default=STAGE)
    running = commands.add_parser("run")
    running.add_argument("--into", type=pathlib.Path, default=STAGE)
    running.add_argument("--budget", type=float, required=True, help="seconds for modelprep and the bench together")
    running.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    running.add_argument("--out", type=pathlib.Path, default=pathlib.Path(os.environ.get("OUT", ROOT / "bench-results")))
    running.add_argument("--sections", default=None)
    ns, extra = parser.parse_known_args(argv)
    if ns.command == "stage":
        return stage(ns.into)
    return run(ns.into, ns.budget, ns.device, ns.out, ns.sections, extra)


if __name__ == "__main__":
    sys.exit(main())
