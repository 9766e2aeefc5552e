"""Soak: an hour of mixed calls at about the server's capacity, and the server's memory over it.

    python -m bench.soak [--minutes 60] [--warmup-minutes 10] [--sample-s 30] [--clients N]

Starts the real service (Envoy + one gRPC server, fresh SQLite, an account the run cannot
exhaust: bench/speed.py's start_ours) and keeps engine workers + 1 clients calling it, so the
engine always has work and a short queue: capacity, not overload (a 503 `overloaded` is waited
out as its Retry-After says). The calls are a fixed mix (seeded, the same every run): photos of
0.25, 1 and 4 MP; sizes small to full; PNG, JPG, WebP and ZIP; JSON answers; background colours
and crops; and errors: a cut-short JPEG (refused after its credit was reserved, so refunded), a
file that is no image, an invalid parameter, a wrong key.

Every --sample-s seconds it prints the server process's RSS with the calls so far. At the end:
the growth of the server's RSS from the warm-up's end (median of the samples in the window
after --warmup-minutes) to the run's end (median of the last window): under 5 % is the target,
the exit status says whether it was met. Written to bench-results/soak.md too. A run shorter
than three warm-ups (a smoke run) takes its warm-up as a third of the run.
"""

from __future__ import annotations

import argparse
import collections
import io
import pathlib
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import requests
from PIL import Image

from bench.speed import BENCH_KEY, ROOT, machine, make_photos, revision, rss_bytes, start_ours

TARGET_GROWTH = 0.05


@dataclass(frozen=True)
class Call:
    """One kind of call in the mix: its photo, form fields, and whether it should succeed."""

    name: str
    photo: str  # a key of the photos dict
    fields: tuple[tuple[str, str], ...]
    weight: int
    json: bool = False
    key: str = BENCH_KEY


MIX = (
    Call("1mp-auto-png", "1mp", (("size", "auto"),), 20),
    Call("1mp-medium-jpg-colour", "1mp", (("size", "medium"), ("format", "jpg"), ("bg_color", "3366aa")), 12),
    Call("1mp-hd-webp", "1mp", (("size", "hd"), ("format", "webp")), 10),
    Call("1mp-zip", "1mp", (("size", "medium"), ("format", "zip")), 6),
    Call("4mp-full-jpg", "4mp", (("size", "full"), ("format", "jpg")), 8),
    Call("small-crop-png", "small", (("size", "small"), ("crop", "true")), 14),
    Call("small-json", "small", (("size", "small"),), 8, json=True),
    Call("error-cut-short", "cut", (("size", "small"),), 8),
    Call("error-not-an-image", "text", (("size", "small"),), 5),
    Call("error-bad-parameter", "small", (("size", "enormous"),), 5),
    Call("error-wrong-key", "small", (("size", "small"),), 4, key="cbg_not-a-key"),
)


def photos() -> dict[str, bytes]:
    made = make_photos([1, 4])
    one, four = made[1][0], made[4][0]
    with Image.open(io.BytesIO(one)) as image:
        small = image.convert("RGB").resize((image.width // 2, image.height // 2))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=90)
    return {"1mp": one, "4mp": four, "small": out.getvalue(), "cut": one[: len(one) // 2], "text": b"not an image at all\n" * 50}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.unexpected: collections.Counter[str] = collections.Counter()
        self.calls = 0

    def add(self, call: Call, response: requests.Response) -> None:
        expected_ok = not call.name.startswith("error-")
        code = "200" if response.status_code == 200 else f"{response.status_code}"
        with self.lock:
            self.calls += 1
            self.by_kind[code] += 1
            if (response.status_code == 200) != expected_ok or response.status_code >= 500:
                self.unexpected[f"{call.name} -> {code}"] += 1


def client(url: str, shots: dict[str, bytes], tally: Tally, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    http = requests.Session()
    weights = [c.weight for c in MIX]
    while not stop.is_set():
        call = rng.choices(MIX, weights)[0]
        headers = {"X-Api-Key": call.key}
        if call.json:
            headers["Accept"] = "application/json"
        while True:
            response = http.post(url + "/v1.0/removebg", headers=headers, data=dict(call.fields),
                                 files={"image_file": ("photo.jpg", shots[call.photo], "image/jpeg")}, timeout=600)
            if response.status_code != 503 or stop.is_set():
                break
            time.sleep(int(response.headers.get("retry-after", "1")))  # capacity, not overload
        tally.add(call, response)


def growth(samples: list[tuple[float, int]], warmup_s: float, window_s: float) -> tuple[float, float, float]:
    """(baseline RSS, final RSS, growth): medians of the window after the warm-up and the last one."""
    base = [rss for t, rss in samples if warmup_s <= t <= warmup_s + window_s]
    end_t = samples[-1][0]
    final = [rss for t, rss in samples if t >= end_t - window_s]
    if not base or not final:
        raise SystemExit("too few samples for a growth figure: run longer or sample more often")
    baseline, last = statistics.median(base), statistics.median(final)
    return baseline, last, (last - baseline) / baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=0, help="default: the server's engine workers + 1")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench-results" / "soak.md")
    ns = parser.parse_args(argv)
    duration = ns.minutes * 60
    warmup = min(ns.warmup_minutes * 60, duration / 3)
    window = max(ns.sample_s * 3, min(120.0, duration / 6))

    from service.config import Settings

    clients = ns.clients or Settings.from_environ().engine_workers + 1
    shots = photos()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="clearbg-soak-"))
    ours = start_ours(workdir, lambda line: print(line, flush=True))
    server_pid = ours.pids[0]  # the gRPC server (the Stack starts it before Envoy)
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=client, args=(ours.url, shots, tally, stop, n), daemon=True) for n in range(clients)]
    samples: list[tuple[float, int]] = []
    print(f"soak: {ns.minutes:g} min, {clients} clients, warm-up {warmup / 60:.1f} min, RSS every {ns.sample_s:g} s", flush=True)
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        while (elapsed := time.monotonic() - started) < duration:
            rss = rss_bytes(server_pid)
            samples.append((elapsed, rss))
            with tally.lock:
                print(f"  t={elapsed / 60:6.1f} min  server RSS {rss / 2**20:7.1f} MiB  calls {tally.calls:6d}  "
                      f"{dict(sorted(tally.by_kind.items()))}", flush=True)
            time.sleep(min(ns.sample_s, max(0.0, duration - elapsed)))
        samples.append((time.monotonic() - started, rss_bytes(server_pid)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(660)
        ours.stop()
    baseline, final, grew = growth(samples, warmup, window)
    met = grew < TARGET_GROWTH
    summary = (
        f"server RSS {baseline / 2**20:.1f} MiB after the {warmup / 60:.1f}-min warm-up -> {final / 2**20:.1f} MiB at "
        f"{samples[-1][0] / 60:.1f} min: {grew * 100:+.2f} % (target < {TARGET_GROWTH * 100:.0f} %: "
        f"{'met' if met else 'NOT met'}); {tally.calls} calls {dict(sorted(tally.by_kind.items()))}, "
        f"unexpected answers: {dict(tally.unexpected) or 'none'}"
    )
    print("soak: " + summary, flush=True)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(
        "# Soak (bench/soak.py)\n\n"
        f"`python -m bench.soak --minutes {ns.minutes:g}` on {machine()}, revision {revision()}, "
        f"{clients} clients.\n\n{summary}\n\n| minute | server RSS MiB |\n|---|---|\n"
        + "".join(f"| {t / 60:.1f} | {rss / 2**20:.1f} |\n" for t, rss in samples)
    )
    return 0 if met and not tally.unexpected else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
