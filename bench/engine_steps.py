"""Prints the engine's speed and memory on this machine (figures, not pass/fail).

    python -m bench.engine_steps [--threads 2] [--runs 3] [--photo PATH] [--concurrency N]

Inference alone at the net's resolution, then whole `remove()` calls (decode, inference, matte,
compose, encode) for a ~1 MP and a ~12 MP JPEG made from one photo, then the peak RSS, and
optionally the throughput and memory of N threads sharing one Engine.
"""

from __future__ import annotations

import argparse
import io
import pathlib
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from engine import allocator
from engine.decode import decode, pixels_of
from engine.pipeline import Engine
from engine.types import RemovalOptions
from service.config import Settings

DEFAULT_PHOTO = pathlib.Path(__file__).resolve().parents[2] / "shared/quality/grabcut50/images/person1.jpg"


def _timed(call, runs: int) -> str:
    """Median wall time, and the CPU time beside it: on a busy shared machine the wall time
    inflates, while CPU seconds / threads stays close to what an idle machine would show."""
    walls, cpus = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return f"{statistics.median(walls):.3f} s wall, {statistics.median(cpus):.3f} s CPU"


def _jpeg_of(photo: Image.Image, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    photo.resize(size, Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photo", type=pathlib.Path, default=DEFAULT_PHOTO)
    parser.add_argument("--concurrency", type=int, default=1, help="then N threads sharing the engine")
    ns = parser.parse_args(argv)
    allocator.tune()  # as the server does (python -m service)

    start = time.perf_counter()
    # The matte cache off: the steps are timed by running each of them again on the same photo.
    engine = Engine.from_config(
        Settings.from_environ().engine_config(threads=ns.threads, concurrent_inferences=1, matte_cache_mb=0)
    )
    engine.warm_up()
    print(f"load + warm-up: {time.perf_counter() - start:.2f} s (threads={ns.threads})")

    photo = decode(ns.photo.read_bytes()) if ns.photo.is_file() else Image.effect_mandelbrot((600, 450), (-2, -1.2, 1, 1.2), 100).convert("RGB")
    net = engine.segmenter.size
    square = photo.resize((net, net))
    print(f"inference at {net}x{net}: {_timed(lambda: engine.segmenter.matte(square), ns.runs)} (median of {ns.runs})")
    # What the net sees of a 12 MP 4:3 photo (its aspect kept, where the variant allows).
    view = photo.resize(engine.segmenter.input_shape(4000, 3000))
    if view.size != square.size:
        print(f"inference at {view.width}x{view.height}: {_timed(lambda: engine.segmenter.matte(view), ns.runs)}")
    _edge_share(engine, photo, view, ns.runs)

    for label, size in (("1 MP", (1155, 866)), ("12 MP", (4000, 3000))):
        data = _jpeg_of(photo, size)
        for fmt in ("png", "jpg"):
            options = RemovalOptions(output_format=fmt)
            result = engine.remove(data, options)
            timing = _timed(lambda: engine.remove(data, options), ns.runs)
            print(f"remove() {label} {size[0]}x{size[1]} -> {fmt} {result.width}x{result.height}: "
                  f"{timing}, {len(result.data) / 1e6:.2f} MB")

    print(f"peak RSS: {_peak_rss_mb():.0f} MB")

    if ns.concurrency > 1:
        data = _jpeg_of(photo, (4000, 3000))
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=ns.concurrency) as pool:
            list(pool.map(lambda _: engine.remove(data, RemovalOptions()), range(ns.concurrency * 2)))
        seconds = time.perf_counter() - start
        print(f"{ns.concurrency * 2} x remove() 12 MP -> png, {ns.concurrency} threads: {seconds:.2f} s "
              f"({ns.concurrency * 2 / seconds * 60:.0f}/min); peak RSS {_peak_rss_mb():.0f} MB")


def _edge_share(engine: Engine, photo: Image.Image, view: Image.Image, runs: int) -> None:
    """Issue 5's budget: the edge work on a 12 MP photo against the network's inference on that
    photo (`view`: what the net sees of it), CPU and wall time in the same process (both use
    every core). First each step alone (engine/refine,
    engine/foreground), then what it adds to a whole remove() (12 MP JPEG -> PNG): the same call
    with the refinement and the foreground colour switched off, timed alternately."""
    from engine import compose, foreground, refine
    from engine.matte import upsample

    colour = photo.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    matte = engine.segmenter.matte(view)
    alpha = upsample(matte, colour.size)
    pixels = pixels_of(colour)
    guide = refine.working_colour(pixels)
    refined = refine.refine_alpha(pixels, alpha, guide)
    # As Engine.remove runs them on the output-size colour array, the working-grid colour made
    # once for both; the foreground step recolours the array in place, so each of its runs gets
    # a fresh copy, made outside the clock.
    fresh: list = []
    steps = {
        "clean_matte": lambda: refine.clean_matte(matte),
        "working_colour": lambda: refine.working_colour(pixels),
        "refine_alpha": lambda: refine.refine_alpha(pixels, alpha, guide),
        "estimate_foreground": lambda: foreground.estimate_foreground(fresh.pop(), refined, guide),
    }

    def median_time(call, clock) -> float:
        times = []
        for _ in range(runs):
            if not fresh:
                fresh[:] = [pixels.copy() for _ in range(runs)]
            start = clock()
            call()
            times.append(clock() - start)
        return statistics.median(times)

    network = {"CPU": median_time(lambda: engine.segmenter.matte(view), time.process_time),
               "wall": median_time(lambda: engine.segmenter.matte(view), time.perf_counter)}
    for clock_name, clock in (("CPU", time.process_time), ("wall", time.perf_counter)):
        costs = {name: median_time(step, clock) for name, step in steps.items()}
        total = sum(costs.values())
        print(f"edge work at 12 MP ({clock_name} s): " + ", ".join(f"{k} {v:.3f}" for k, v in costs.items())
              + f"; total {total:.3f} vs network {network[clock_name]:.3f}"
              + f" = {total / network[clock_name]:.0%}")

    data = _jpeg_of(photo, (4000, 3000))
    options = RemovalOptions(output_format="png", max_output_pixels=None, foreground_type="other")
    settings = {"with": (True, engine.estimate_foreground), "without": (False, compose.keep_source_colour)}
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(runs):
        for name, (refine_edges, estimator) in settings.items():
            engine.refine_edges, engine.estimate_foreground = refine_edges, estimator
            start = time.perf_counter()
            engine.remove(data, options)
            times[name].append(time.perf_counter() - start)
    engine.refine_edges, engine.estimate_foreground = settings["with"]
    added = statistics.median(times["with"]) - statistics.median(times["without"])
    print(f"remove() 12 MP -> png, edge work on/off (wall s): {statistics.median(times['with']):.3f} / "
          f"{statistics.median(times['without']):.3f}: adds {added:.3f} = {added / network['wall']:.0%} of the network")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
