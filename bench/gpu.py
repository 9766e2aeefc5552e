"""The GPU path measured where a GPU is: the net alone, agreement with fp32, the engine, REST.

    python -m bench.gpu [--device cuda|cpu] [--budget 420] [--quality ../shared/quality]
                        [--out bench-results] [--sections net,agree,engine,rest]

Needs `make model` to have run on this machine with PyTorch and a GPU (the manifest then holds
torch-cuda-fp16 / torch-cuda-bf16, measured and chosen like the CPU candidates). Sections, each
given a share of --budget seconds (in-flight work finishes; a section out of time is skipped and
says so):

- net: the torch variant alone at the net's commonest view (1024x768), batch 1 / 8 / 32, per
  precision (fp32 = TF32, fp16, bf16, channels-last): images a second, peak GPU memory.
- agree: masks (> 0.5) of each precision against onnxruntime's fp32 on the CPU (the reference
  every candidate is held to, modelprep/measure.py) on the quality photos at the engine's view:
  mean and min IoU; the bound is 0.995.
- engine: Engine.remove in process on 1 MP photos from many threads (batched GPU inference,
  the CPU side on every core): images a minute, p50 / p99.
- rest: the real REST path (Envoy + N gRPC server processes, each batching its own requests)
  at rising concurrency, 1 MP and 12 MP photos: images a minute, p50 / p99, GPU utilisation
  and memory (nvidia-smi, sampled).

`--device cpu` runs the same code on the CPU in fp32 with tiny sizes (a check that it works,
no figures worth keeping). Results: printed, and written to <out>/gpu.md and gpu.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUALITY = ROOT.parent / "shared" / "quality"
VIEW = (1024, 768)  # the net's view of a 4:3 photo (engine/models/families.py)
BOUND_IOU = 0.995
SECTIONS = ("net", "agree", "engine", "rest")
SHARES = {"net": 0.15, "agree": 0.12, "engine": 0.18, "rest": 0.55}


class Budget:
    """Seconds left for the whole run; each section gets its share of what is left."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def share(self, section: str, sections: Sequence[str]) -> float:
        pending = [s for s in sections if s in SHARES]
        total = sum(SHARES[s] for s in pending) or 1.0
        return max(0.0, self.left() * SHARES[section] / total)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- what the manifest prepared ----------------------------------------------------------------


def manifest_here():
    from engine.config import DEFAULT_CHECKPOINT
    from engine.models import manifest
    from modelprep.fetch import cache_dir

    return manifest.load(cache_dir(), DEFAULT_CHECKPOINT)


def torch_file(found) -> pathlib.Path:
    for c in found.candidates:
        if c.kind == "torch":
            return c.file
    raise SystemExit("the manifest has no torch candidate: run `python -m modelprep` with torch and a GPU "
                     "(or --torch-cpu-check) first")


def precisions(device: str) -> list[str]:
    return ["fp32", "fp16", "bf16"] if device == "cuda" else ["fp32"]


def open_torch(graph: pathlib.Path, device: str, precision: str):
    from engine.models import providers, torchnet

    return torchnet.open_session(graph, providers.TORCH_CUDA if device == "cuda" else providers.TORCH_CPU, precision)


def quality_photos(quality: pathlib.Path, limit: int | None = None) -> list[pathlib.Path]:
    found = sorted(p for p in quality.glob("*/images/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return found[:limit] if limit else found


# --- net alone -----------------------------------------------------------------------------------


def _synchronise(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def section_net(found, device: str, seconds: float, batches: Sequence[int]) -> list[dict]:
    import torch

    graph = torch_file(found)
    rows = []
    per_cell = seconds / max(1, len(batches) * len(precisions(device)))
    width, height = VIEW if device == "cuda" else (256, 192)  # a CPU check, not a figure
    x1 = np.random.default_rng(0).normal(0, 0.3, (1, 3, height, width)).astype(np.float32)
    for precision in precisions(device):
        session = open_torch(graph, device, precision)
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        for batch in batches:
            x = np.repeat(x1, batch, axis=0)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            session.run_batch(x)  # first run of this size: cuDNN's set-up
            first = time.perf_counter() - started
            runs, began = 0, time.perf_counter()
            while runs < 2 or (time.perf_counter() - began < per_cell and runs < 200):
                session.run_batch(x)
                runs += 1
            _synchronise(device)
            took = time.perf_counter() - began
            row = {"precision": precision, "batch": batch, "view": f"{width}x{height}", "images_per_s": round(runs * batch / took, 1),
                   "ms_per_batch": round(1000 * took / runs, 1), "first_run_s": round(first, 2), "runs": runs}
            if device == "cuda":
                row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            rows.append(row)
            log(f"net {precision} batch {batch}: {row['images_per_s']} images/s")
        del session
        if device == "cuda":
            torch.cuda.empty_cache()
    if device == "cuda":  # what cuDNN's autotuning would gain at the largest batch, and its set-up
        torch.backends.cudnn.benchmark = True
        try:
            session = open_torch(graph, device, "fp16")
            batch = max(batches)
            x = np.repeat(x1, batch, axis=0)
            started = time.perf_counter()
            session.run_batch(x)
            first = time.perf_counter() - started
            runs, began = 0, time.perf_counter()
            while runs < 2 or (time.perf_counter() - began < per_cell and runs < 200):
                session.run_batch(x)
                runs += 1
            took = time.perf_counter() - began
            rows.append({"precision": "fp16 autotuned", "batch": batch, "view": f"{width}x{height}",
                         "images_per_s": round(runs * batch / took, 1), "ms_per_batch": round(1000 * took / runs, 1),
                         "first_run_s": round(first, 2), "runs": runs})
            log(f"net fp16 autotuned batch {batch}: {rows[-1]['images_per_s']} images/s (set-up {first:.1f} s)")
            del session
        finally:
            torch.backends.cudnn.benchmark = False
            torch.cuda.empty_cache()
    return rows


# --- agreement with fp32 -------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def section_agree(found, device: str, photos: Sequence[pathlib.Path], seconds: float) -> dict:
    """Each precision's masks against onnxruntime's fp32 on the CPU, at the engine's view."""
    from engine.models import providers
    from engine.models.families import family as family_of, matte_output

    fam = family_of(found.family)
    reference = found.candidate("fp32-cpu")
    ort = providers.inference_session(reference.file, providers.session_options(), providers.provider_list(providers.CPU))
    ort_out, coarse = matte_output(ort, fam)
    graph = torch_file(found)
    sessions = {p: open_torch(graph, device, p) for p in precisions(device)}
    ious: dict[str, list[float]] = {p: [] for p in sessions}
    deadline = time.monotonic() + seconds
    used = []
    for path in photos:
        if time.monotonic() > deadline:
            break
        with Image.open(path) as opened:
            rgb = opened.convert("RGB")
        shape = fam.input_shape(*rgb.size, fam.size, keep_aspect=True)
        tensor = fam.preprocess(rgb, shape)
        (raw,) = ort.run([ort_out], {ort.get_inputs()[0].name: tensor})
        ref = fam.postprocess(raw, shape if coarse else None) > 0.5
        for precision, session in sessions.items():
            out = fam.postprocess(session.run_batch(tensor), shape) > 0.5
            ious[precision].append(_iou(out, ref))
        used.append(f"{path.parent.parent.name}/{path.name}")
    result = {"photos": len(used), "bound": BOUND_IOU, "names": used}
    for precision, values in ious.items():
        if values:
            result[precision] = {"mean_iou": round(float(np.mean(values)), 5), "min_iou": round(float(min(values)), 5),
                                 "passes": float(np.mean(values)) >= BOUND_IOU}
            log(f"agree {precision}: mean IoU {result[precision]['mean_iou']} min {result[precision]['min_iou']} "
                f"on {len(values)} photos")
    return result


# --- the engine in process -----------------------------------------------------------------------


def _drive_calls(call: Callable[[bytes], None], photos: Sequence[bytes], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    def client() -> None:
        while time.perf_counter() < deadline:
            photo = photos[next(counter) % len(photos)]
            sent = time.perf_counter()
            try:
                call(photo)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    return _cell(latencies, failures, took, concurrency)


def _cell(latencies: list[float], failures: list[str], took: float, concurrency: int) -> dict:
    return {"concurrency": concurrency, "completed": len(latencies), "failed": len(failures),
            "seconds": round(took, 1), "images_per_min": round(60 * len(latencies) / took) if took else 0,
            "p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
            "p99_s": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
            "error": failures[0] if failures else ""}


def section_engine(found, device: str, photos_1mp: Sequence[bytes], seconds: float, concurrency: Sequence[int],
                   variant: str) -> list[dict]:
    """Engine.remove from `clients` threads of this one process: the batcher fed by one process,
    and the CPU seconds each image costs (all threads), which bound what the cores can serve."""
    from engine.config import EngineConfig
    from engine.pipeline import Engine
    from engine.types import RemovalOptions

    workers = max(concurrency)
    config = EngineConfig(cache_dir=found.path.parent.parent, variant=variant, concurrent_inferences=workers,
                          batch_max=32 if device == "cuda" else 2)
    began = time.perf_counter()
    engine = Engine.from_manifest(found, config)
    engine.warm_up()
    if device == "cuda":  # the other shapes and batch sizes (on a CPU: minutes, and not what is checked)
        engine.open_lanes()
    log(f"engine: {engine.segmenter.candidate.name} on {engine.segmenter.provider}, ready in "
        f"{time.perf_counter() - began:.1f} s")
    options = RemovalOptions()
    rows = []
    for clients in concurrency:
        batcher = engine.segmenter.batcher
        before = len(batcher.batches) if batcher else 0
        cpu = time.process_time()
        row = _drive_calls(lambda photo: engine.remove(photo, options), photos_1mp, clients, seconds / len(concurrency))
        if row["completed"]:
            row["cpu_s_per_image"] = round((time.process_time() - cpu) / row["completed"], 3)
        if batcher:
            sizes = batcher.batches[before:]
            row["mean_batch"] = round(statistics.mean(sizes), 1) if sizes else 0
        row["candidate"] = engine.segmenter.candidate.name
        rows.append(row)
        log(f"engine {clients} clients: {row['images_per_min']} images/min, p50 {row['p50_s']} s, p99 {row['p99_s']} s, "
            f"{row.get('cpu_s_per_image')} CPU s/image, mean batch {row.get('mean_batch')}")
    if engine.segmenter.batcher:
        engine.segmenter.batcher.close()
    return rows


# --- the REST path -------------------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi's utilisation and memory every half second, while a cell runs."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._process = None
        self._thread = None

    @contextlib.contextmanager
    def window(self) -> Iterator["GpuSampler"]:
        self.samples = []
        try:
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self._process = None
        if self._process is not None:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        try:
            yield self
        finally:
            if self._process is not None:
                self._process.terminate()
                self._process.wait(timeout=10)

    def _read(self) -> None:
        for line in self._process.stdout:
            with contextlib.suppress(ValueError):
                util, memory = (float(v) for v in line.split(",")[:2])
                self.samples.append((util, memory))

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"gpu_util_mean_pct": round(statistics.mean(u for u, _ in self.samples)),
                "gpu_mem_max_mib": round(max(m for _, m in self.samples))}


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes and their threads so far (/proc)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def section_rest(device: str, photos: dict[int, list[bytes]], seconds: float, processes: int, workers: int,
                 concurrency: Sequence[int], variant: str, workdir: pathlib.Path) -> dict:
    import requests

    from bench.speed import BENCH_KEY
    from decimal import Decimal

    from service.launcher import Stack, free_port
    from service.storage import open_storage

    database_url = f"sqlite:///{workdir / 'clearbg.db'}"
    storage = open_storage(database_url)
    account = storage.create_account("bench-gpu", payg=Decimal(1_000_000_000), rate_limit_per_minute=100_000_000)
    storage.add_api_key(account.id, BENCH_KEY)
    storage.close()
    env = dict(os.environ, CLEARBG_DATABASE_URL=database_url, CLEARBG_DEV_API_KEY="", PYTHONUNBUFFERED="1",
               CLEARBG_ENGINE_WORKERS=str(workers), CLEARBG_MODEL_VARIANT=variant,
               CLEARBG_MAX_QUEUE=str(4 * max(concurrency)), CLEARBG_BATCH_MAX=str(32 if device == "cuda" else 1),
               CLEARBG_MATTE_CACHE_MB="0")  # every call runs the net, as distinct photos would
    more = tuple(free_port() for _ in range(processes - 1))
    stack = Stack(http_port=free_port(), grpc_port=free_port(), env=env, out=open(workdir / "stack.log", "w"),
                  more_grpc_ports=more)
    began = time.perf_counter()
    stack.start()
    result: dict = {"processes": processes, "workers": workers, "variant": variant, "cells": []}
    try:
        stack.wait_healthy(180)
        result["healthy_after_s"] = round(time.perf_counter() - began, 1)
        # measured from the steady state: each server warms its other shapes once it serves
        logged = workdir / "stack.log"
        while logged.read_text().count("inference_lanes_open") < processes and time.perf_counter() - began < 240:
            time.sleep(0.5)
        result["warm_after_s"] = round(time.perf_counter() - began, 1)
        result["serving"] = [line.split("[server", 1)[1][:300] for line in logged.read_text().splitlines()
                             if '"event": "serving"' in line]  # each server's variant and provider
        log(f"rest: {processes} servers x {workers} workers healthy after {result['healthy_after_s']} s, "
            f"warm after {result['warm_after_s']} s")
        pids = [c.process.pid for c in stack.children]
        url = stack.rest_url + "/v1.0/removebg"
        local = threading.local()

        def call(photo: bytes) -> None:
            http = getattr(local, "http", None) or requests.Session()
            local.http = http
            response = http.post(url, headers={"X-Api-Key": BENCH_KEY},
                                 files={"image_file": ("photo.jpg", photo, "image/jpeg")}, data={"size": "auto"}, timeout=600)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

        cells = [(1, c) for c in concurrency] + [(mp, concurrency[len(concurrency) // 2]) for mp in photos if mp != 1]
        sampler = GpuSampler()
        for number, (mp, clients) in enumerate(cells):
            left = seconds - (time.perf_counter() - began)
            if left < 5:
                result["cells"].append({"megapixels": mp, "concurrency": clients, "skipped": "out of time"})
                continue
            span = left / (len(cells) - number)  # what the start left, shared by the cells to come
            # the first seconds of a cell fill the queues: only the rest is counted
            _drive_calls(call, photos[mp], clients, min(3.0, span / 4))
            cpu = _cpu_seconds(pids)
            with sampler.window():
                row = _drive_calls(call, photos[mp], clients, span * 3 / 4)
            row.update(megapixels=mp, **sampler.summary())
            if row["completed"]:  # the servers' and Envoy's CPU per image (the load generator's not counted)
                row["cpu_s_per_image"] = round((_cpu_seconds(pids) - cpu) / row["completed"], 3)
            result["cells"].append(row)
            log(f"rest {mp} MP, {clients} clients: {row['images_per_min']} images/min, p50 {row['p50_s']} s, "
                f"p99 {row['p99_s']} s, GPU {row.get('gpu_util_mean_pct', '-')} %")
    finally:
        stack.stop()
    result["log_tail"] = (workdir / "stack.log").read_text()[-3000:]
    return result


# --- report ----------------------------------------------------------------------------------------


def machine(device: str) -> str:
    cores = os.cpu_count()
    cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = ""
    if device == "cuda":
        import torch

        gpu = f", {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{cpu}, {cores} cores{gpu}, Python {platform.python_version()}"


def render(results: dict) -> str:
    lines = [f"# GPU path (bench/gpu.py), {results['when']}", "", f"Machine: {results['machine']}",
             f"Command: `{results['command']}`", ""]
    if results.get("net"):
        lines += ["## Net alone", "", "| precision | view | batch | images/s | ms/batch | first run s | peak GPU MiB |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['precision']} | {r['view']} | {r['batch']} | {r['images_per_s']} | {r['ms_per_batch']} | "
                  f"{r['first_run_s']} | {r.get('peak_gpu_mib', '-')} |"
                  for r in results["net"]]
        lines.append("")
    agree = results.get("agree")
    if agree:
        lines += [f"## Masks against onnxruntime fp32 (CPU), {agree['photos']} quality photos, bound {agree['bound']}", "",
                  "| precision | mean IoU | min IoU | within bound |", "|---|---|---|---|"]
        lines += [f"| {p} | {agree[p]['mean_iou']} | {agree[p]['min_iou']} | {'yes' if agree[p]['passes'] else 'NO'} |"
                  for p in ("fp32", "fp16", "bf16") if p in agree]
        lines.append("")
    if results.get("engine"):
        lines += ["## Engine in process, 1 MP", "",
                  "| candidate | clients | images/min | p50 s | p99 s | CPU s/image | mean batch | failed |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['candidate']} | {r['concurrency']} | {r['images_per_min']} | {r['p50_s']} | {r['p99_s']} | "
                  f"{r.get('cpu_s_per_image', '-')} | {r.get('mean_batch', '-')} | {r['failed']} |" for r in results["engine"]]
        lines.append("")
    rest = results.get("rest")
    if rest and rest.get("cells"):
        models = sorted({m for line in rest.get("serving", []) for m in re.findall(r'"variant": "([^"]+)"', line)})
        lines += [f"## REST (Envoy + {rest['processes']} servers x {rest['workers']} workers, variant {rest['variant']}: "
                  f"{', '.join(models) or 'model not logged'})", "",
                  "| MP | clients | images/min | p50 s | p99 s | CPU s/image | GPU util % | GPU MiB | failed |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rest["cells"]:
            if "skipped" in r:
                lines.append(f"| {r['megapixels']} | {r['concurrency']} | skipped: {r['skipped']} | | | | | | |")
            else:
                lines.append(f"| {r['megapixels']} | {r['concurrency']} | {r['images_per_min']} | {r['p50_s']} | {r['p99_s']} | "
                             f"{r.get('cpu_s_per_image', '-')} | {r.get('gpu_util_mean_pct', '-')} | {r.get('gpu_mem_max_mib', '-')} | {r['failed']} |")
        lines.append("")
    for name, error in results.get("errors", {}).items():
        lines.append(f"- {name}: FAILED: {error}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all sections together")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--quality", type=pathlib.Path, default=QUALITY)
    parser.add_argument("--agree-photos", type=int, default=None, help="at most this many quality photos")
    parser.add_argument("--processes", type=int, default=None, help="REST: gRPC server processes (default cores / 2)")
    parser.add_argument("--workers", type=int, default=None, help="REST: engine workers per process")
    parser.add_argument("--concurrency", default=None, help="REST and engine: clients, comma-separated")
    parser.add_argument("--sizes", default="1,12", help="REST photo sizes in MP (1 always)")
    parser.add_argument("--variant", default="auto",
                        help="engine and REST: the manifest's choice (auto) or a candidate, e.g. torch-cuda-bf16")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench-results")
    ns = parser.parse_args(argv)
    sections = [s.strip() for s in ns.sections.split(",") if s.strip()]
    cuda = ns.device == "cuda"
    cores = os.cpu_count() or 1
    concurrency = [int(v) for v in ns.concurrency.split(",")] if ns.concurrency else ([16, 48, 96] if cuda else [1, 2])
    processes = ns.processes or (max(1, cores // 2) if cuda else 1)
    workers = ns.workers or (max(2, 2 * max(concurrency) // processes) if cuda else 2)
    # a CPU check runs the torch path it checks, not the faster onnxruntime one the manifest picks
    variant = ns.variant if cuda or ns.variant != "auto" else "torch-cpu-fp32"
    budget = Budget(ns.budget)
    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(ns.device),
                     "command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]), "errors": {}}
    found = manifest_here()
    results["manifest"] = {"chosen": found.chosen, "candidates": [c.to_json() for c in found.candidates]}
    log(f"manifest: chosen {found.chosen}; candidates {', '.join(c.name for c in found.candidates)}")
    ns.out.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-gpu-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (ns.out / "gpu.json").write_text(json.dumps(results, indent=1, default=str))
        (ns.out / "gpu.md").write_text(render(results))

    for section in sections:
        seconds = budget.share(section, sections[sections.index(section):])
        if seconds < 5:
            results["errors"][section] = f"skipped: {budget.left():.0f} s left of the budget"
            continue
        log(f"section {section}: {seconds:.0f} s")
        try:
            if section == "net":
                results["net"] = section_net(found, ns.device, seconds, (1, 8, 32) if cuda else (1, 2))
            elif section == "agree":
                photos = quality_photos(ns.quality, ns.agree_photos or (None if cuda else 2))
                results["agree"] = section_agree(found, ns.device, photos, seconds)
            elif section == "engine":
                from bench.speed import make_photos

                results["engine"] = section_engine(found, ns.device, make_photos([1], ns.quality)[1], seconds,
                                                   concurrency, variant)
            elif section == "rest":
                from bench.speed import make_photos

                sizes = sorted({1, *(int(v) for v in ns.sizes.split(","))}) if cuda else [1]
                results["rest"] = section_rest(ns.device, make_photos(sizes, ns.quality), seconds, processes, workers,
                                               concurrency, variant, workdir)
        except Exception as exc:  # noqa: BLE001 - one section's failure must not lose the others' figures
            import traceback

            results["errors"][section] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        save()
    save()
    print(render(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
