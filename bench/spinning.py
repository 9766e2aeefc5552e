"""ONNX Runtime's intra-op threads spinning (its default) against sleeping (the engine's setting).

    python -m bench.spinning [--runs 8] [--variants int8-cpu,fp32-cpu]

For each CPU-provider candidate of this machine's model manifest, the net at 1024x768 (a 4:3
photo's input) in four layouts, each timed with spinning on and off, interleaved:
- alone: one session on every core, one run after another (a lone request);
- lanes: the engine's two sessions side by side in one process (engine/models/lanes.py: the
  wide one on every core, a one-thread lane beside it), one Python thread driving each;
- 2 and 4 processes: as many servers on the machine, one session on every core each (the test
  suite's workers, a second service beside this one).
Per layout: wall time for `runs` inferences per session, ms per inference over all of them, and
off/on (under 1: sleeping is faster). Written to bench-results/spinning.md and printed.
OpenVINO runs its own thread pool, which this setting does not reach.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import pathlib
import sys
import threading
import time

import numpy as np

from engine.config import DEFAULT_CHECKPOINT
from engine.models import manifest, providers
from modelprep.fetch import cache_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (1, 3, 768, 1024)


def _session(path: str, threads: int, spin: bool, arena: bool):
    session = providers.inference_session(path, providers.session_options(threads, arena, spin), [providers.CPU])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random(SHAPE, np.float32)}
    session.run(None, feed)  # warm-up: the first run plans memory
    return session, feed


def _timed(session, feed, runs: int) -> None:
    for _ in range(runs):
        session.run(None, feed)


def _in_threads(path: str, threads: list[int], spin: bool, arena: bool, runs: int) -> float:
    """Sessions of `threads` threads each in this process, run at once from one thread each."""
    opened = [_session(path, t, spin, arena) for t in threads]
    workers = [threading.Thread(target=_timed, args=(s, f, runs)) for s, f in opened]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def _child(path: str, threads: int, spin: bool, arena: bool, runs: int, ready, go) -> None:
    session, feed = _session(path, threads, spin, arena)
    ready.release()
    go.wait()
    _timed(session, feed, runs)


def _in_processes(path: str, count: int, threads: int, spin: bool, arena: bool, runs: int) -> float:
    context = multiprocessing.get_context("spawn")
    ready, go = context.Semaphore(0), context.Event()
    children = [context.Process(target=_child, args=(path, threads, spin, arena, runs, ready, go)) for _ in range(count)]
    for child in children:
        child.start()
    for _ in children:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    for child in children:
        child.join()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spinning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8, help="timed inferences per session and layout")
    parser.add_argument("--variants", default=None, help="comma-separated CPU-provider candidates (default: all)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)

    model = manifest.load(cache_dir(), DEFAULT_CHECKPOINT)
    cores = providers.default_threads()
    machine = manifest.machine_identity()
    wanted = args.variants.split(",") if args.variants else None
    candidates = [c for c in model.candidates if c.provider == providers.CPU and (wanted is None or c.name in wanted)]
    if not candidates:
        parser.error(f"no CPU-provider candidate among {[c.name for c in model.candidates]}")
    layouts = [
        ("alone", 1, lambda path, spin, arena: _in_threads(path, [cores], spin, arena, args.runs)),
        (f"lanes ({cores} + 1 threads, one process)", 2,
         lambda path, spin, arena: _in_threads(path, [cores, 1], spin, arena, args.runs)),
        ("2 processes", 2, lambda path, spin, arena: _in_processes(path, 2, cores, spin, arena, args.runs)),
        ("4 processes", 4, lambda path, spin, arena: _in_processes(path, 4, cores, spin, arena, args.runs)),
    ]
    lines = [
        f"# Intra-op spinning, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m bench.spinning --runs {args.runs}`; {machine['cpu']} ({', '.join(machine['flags'])}), {cores} cores, "
        f"load average before {' '.join(f'{x:.2f}' for x in os.getloadavg())}; the net at {SHAPE[3]}x{SHAPE[2]}, "
        f"{args.runs} runs per session.",
        "",
        "| variant | layout | spinning: wall s | ms / inference | sleeping: wall s | ms / inference | off / on |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)  # then each row as it is measured
    for candidate in candidates:
        for name, sessions, run in layouts:
            walls = {}
            for spin in (True, False, True, False):  # interleaved: drift in the machine's load hits both
                walls.setdefault(spin, []).append(run(str(candidate.file), spin, candidate.arena))
            on, off = min(walls[True]), min(walls[False])
            per = sessions * args.runs
            lines.append(f"| {candidate.name} | {name} | {on:.2f} | {1000 * on / per:.0f} | {off:.2f} | "
                         f"{1000 * off / per:.0f} | {off / on:.2f} |")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spinning.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
