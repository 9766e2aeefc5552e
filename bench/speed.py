"""Speed through the full REST path, ours against rembg's own server, over the same model file.

    python -m bench.speed [--quick] [--sizes 1,4,12,25] [--concurrency 1,2,4]
                          [--duration 40] [--max-requests 24] [--no-rembg] [--no-network]

Starts the real service (Envoy + the gRPC server, service.launcher.Stack, fresh SQLite, an
account with credits and a rate limit the benchmark cannot reach) and, in the same run,
`rembg s` from the benchmark venv (bench/quality/methods.py creates it; rembg[cpu,cli] adds its
HTTP server) with the `dis_custom` session on the very model file our engine starts from. Both
get the same JPEG photos at 1, 4, 12 and 25 MP (grabcut50 photos upscaled with mild grain,
made once under the cache dir, never in the repo), at concurrency 1, 2 and 4, one server at a
time, each cell bounded by --duration seconds and --max-requests requests (in-flight calls
finish; a cell runs at least one request per client). Per cell: images a minute, p50 and p99
latency, and the peak RSS of the server's process tree (ours: the gRPC server + Envoy; rembg:
its process), sampled every 50 ms. Then the network alone per variant (bench/speed_network.py:
latency ratios and mask agreement with fp32 on ../shared/quality). The table is printed and
written to bench-results/speed.md; the machine's load average is recorded with it, since the
CPU is shared (only figures from one run compare).

Our request: POST /v1.0/removebg, image_file + size=auto (full resolution for a paying key);
the format is the API's default (auto: PNG for a cut-out), which the API caps at 10 MP, so
12 and 25 MP photos come back at 10 MP. rembg's: POST /api/remove, file + model=dis_custom +
extras={"model_path": ...}: a PNG at the photo's size.
"""

from __future__ import annotations

import argparse
import io
import contextlib
import dataclasses
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import requests
from PIL import Image

from service.launcher import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUALITY = ROOT.parent / "shared" / "quality"
PHOTOS = ("grabcut50/images/person1.jpg", "grabcut50/images/llama.png", "grabcut50/images/teddy.jpg")
PHOTO_RECIPE = 1  # bump when the way benchmark photos are made changes
BENCH_KEY = "bench-speed-key-0123456789abcdef"
START_TIMEOUT_S = 120.0
SAMPLE_EVERY_S = 0.05


# --- photos ------------------------------------------------------------------------------------


def make_photos(megapixels: Sequence[int], quality: pathlib.Path = QUALITY) -> dict[int, list[bytes]]:
    """megapixels -> JPEG bytes of each benchmark photo at that size (made once, cached).

    Upscaled photos are smoother than a camera's, which would flatter every encoder; grain of
    sigma 3 puts back sensor-like detail (the same seed every time, so runs compare).
    """
    from modelprep.fetch import cache_dir

    folder = cache_dir() / "bench" / f"speed-photos-r{PHOTO_RECIPE}"
    folder.mkdir(parents=True, exist_ok=True)
    found: dict[int, list[bytes]] = {}
    for mp in megapixels:
        found[mp] = []
        for number, relative in enumerate(PHOTOS):
            target = folder / f"{pathlib.Path(relative).stem}-{mp}mp.jpg"
            if not target.is_file():
                with Image.open(quality / relative) as opened:
                    source = opened.convert("RGB")
                width = round((mp * 1e6 * source.width / source.height) ** 0.5)
                height = round(mp * 1e6 / width)
                pixels = np.asarray(source.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)
                pixels += np.random.default_rng(number).normal(0.0, 3.0, pixels.shape).astype(np.float32)
                tmp = target.with_suffix(".part")
                Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).save(tmp, "JPEG", quality=90)
                os.replace(tmp, target)
            found[mp].append(target.read_bytes())
    return found


# --- process memory ----------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for task in pathlib.Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pending.extend(int(child) for child in task.read_text().split())
    return tree


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_rss(pids: Sequence[int]) -> int:
    return sum(rss_bytes(p) for root in pids for p in process_tree(root))


class PeakSampler:
    """Samples the RSS of some process trees in a thread; `window()` gives the peak within it."""

    def __init__(self, pids: Sequence[int], every: float = SAMPLE_EVERY_S):
        self.pids, self.every = list(pids), every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pids))
            self._stop.wait(self.every)

    @contextlib.contextmanager
    def window(self) -> Iterator["PeakSampler"]:
        self.peak = tree_rss(self.pids)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, tree_rss(self.pids))


# --- load ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    """One server at one size and concurrency."""

    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list)
    peak_rss: int = 0
    output: tuple[int, int] | None = None
    load: float = 0.0
    error: str = ""

    @property
    def per_minute(self) -> float:
        return 60.0 * self.completed / self.seconds if self.seconds else 0.0

    def add(self, other: "Cell") -> None:
        """Another round of the same cell: counts, time and latencies add up, peaks take the max."""
        self.completed += other.completed
        self.failed += other.failed
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.peak_rss = max(self.peak_rss, other.peak_rss)
        self.output = other.output or self.output
        self.load = max(self.load, other.load)
        self.error = self.error or other.error

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


Send = Callable[[requests.Session, bytes], requests.Response]


def drive(send: Send, photos: Sequence[bytes], concurrency: int, duration: float, max_requests: int) -> Cell:
    """`concurrency` clients sending photos in turn until `duration` or `max_requests` is reached
    (at least one request each); requests in flight finish and count."""
    cell = Cell()
    lock = threading.Lock()
    issued = 0
    started = time.perf_counter()
    deadline = started + duration
    cap = max(max_requests, concurrency)

    def client(number: int) -> None:
        nonlocal issued
        with requests.Session() as http:
            first = True
            while True:
                with lock:
                    if issued >= cap or (not first and time.perf_counter() >= deadline):
                        return
                    photo = photos[issued % len(photos)]
                    issued += 1
                first = False
                sent = time.perf_counter()
                try:
                    response = send(http, photo)
                    ok = response.status_code == 200
                    detail = "" if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                    size = Image.open(io.BytesIO(response.content)).size if ok else None
                except (requests.RequestException, OSError) as exc:
                    ok, detail, size = False, f"{type(exc).__name__}: {exc}", None
                took = time.perf_counter() - sent
                with lock:
                    if ok:
                        cell.completed += 1
                        cell.latencies.append(took)
                        cell.output = size
                    else:
                        cell.failed += 1
                        cell.error = cell.error or detail

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cell.seconds = time.perf_counter() - started
    cell.load = os.getloadavg()[0]
    return cell


# --- the servers -------------------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    name: str
    pids: list[int]
    send: Send
    stop: Callable[[], None]
    started_s: float = 0.0
    note: str = ""
    url: str = ""  # the REST base URL (ours)


def start_ours(workdir: pathlib.Path, log) -> Server:
    """Envoy + the gRPC server (the launcher's Stack), an account the benchmark cannot exhaust."""
    from decimal import Decimal

    from service.launcher import Stack, wait_for_log
    from service.storage import open_storage

    database_url = f"sqlite:///{workdir / 'clearbg.db'}"
    storage = open_storage(database_url)
    account = storage.create_account("bench-speed", payg=Decimal(1_000_000), rate_limit_per_minute=1_000_000)
    storage.add_api_key(account.id, BENCH_KEY)
    storage.close()
    # The matte cache off: every call of the same photo runs the net, as distinct photos would.
    env = dict(os.environ, CLEARBG_DATABASE_URL=database_url, CLEARBG_DEV_API_KEY="", PYTHONUNBUFFERED="1",
               CLEARBG_MATTE_CACHE_MB="0")
    stack = Stack(http_port=free_port(), grpc_port=free_port(), env=env, out=open(workdir / "stack.log", "w"))
    began = time.perf_counter()
    stack.start()
    try:
        stack.wait_healthy(START_TIMEOUT_S)
    except Exception:
        stack.stop()
        raise
    started_s = time.perf_counter() - began
    # Measured from its steady state: the server sets up its further inference lanes after it
    # reports healthy (seconds of CPU work, service/server.py), not during the first cells.
    if not wait_for_log(workdir / "stack.log", r"inference_lanes_open", START_TIMEOUT_S):
        stack.stop()
        raise RuntimeError(f"our server never opened its inference lanes: {(workdir / 'stack.log').read_text()[-2000:]}")
    url = stack.rest_url + "/v1.0/removebg"

    def send(http: requests.Session, photo: bytes) -> requests.Response:
        return http.post(url, headers={"X-Api-Key": BENCH_KEY}, files={"image_file": ("photo.jpg", photo, "image/jpeg")},
                         data={"size": "auto"}, timeout=600)

    log(f"ours: healthy {started_s:.2f} s after start (Envoy + gRPC server, model cached) at {stack.rest_url}")
    return Server("ours", [c.process.pid for c in stack.children], send, stack.stop, started_s, url=stack.rest_url)


def start_rembg(model: pathlib.Path, workdir: pathlib.Path, log) -> Server:
    """`rembg s` as shipped (no UI), its dis_custom session reading our model file."""
    from bench.quality.methods import ensure_rembg_venv

    python = ensure_rembg_venv(log, requirement="rembg[cpu,cli]")
    port = free_port()
    # rembg accepts a model_path only inside its home directory: the model's own folder.
    env = dict(os.environ, REMBG_HOME=str(model.parent))
    env.pop("U2NET_HOME", None)
    out = open(workdir / "rembg.log", "w")
    process = subprocess.Popen(
        [str(python.parent / "rembg"), "s", "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--log_level", "warning"],
        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        out.close()

    began = time.perf_counter()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"rembg s exited with {process.returncode}: {(workdir / 'rembg.log').read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200:
                break
        if time.perf_counter() - began > START_TIMEOUT_S:
            stop()
            raise RuntimeError("rembg s did not answer in time")
        time.sleep(0.2)
    url = f"http://127.0.0.1:{port}/api/remove"
    extras = json.dumps({"model_path": str(model)})
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('rembg'))"],
                             capture_output=True, text=True).stdout.strip()

    def send(http: requests.Session, photo: bytes) -> requests.Response:
        return http.post(url, params={"extras": extras}, files={"file": ("photo.jpg", photo, "image/jpeg")},
                         data={"model": "dis_custom"}, timeout=600)

    log(f"rembg {version}: listening at {url}")
    return Server("rembg", [process.pid], send, stop, time.perf_counter() - began, note=f"rembg {version}")


# --- report ----------------------------------------------------------------------------------


def _mb(value: int) -> str:
    return f"{value / 1e6:,.0f}"


def _size(cell: Cell | None) -> str:
    return f"{cell.output[0] * cell.output[1] / 1e6:.1f}" if cell and cell.output else "-"


def render_table(results: dict[tuple[int, int], dict[str, Cell]]) -> str:
    """Markdown: a row per (MP, concurrency), ours and rembg side by side, and the ratios."""
    lines = [
        "| MP | conc | ours img/min | p50 s | p99 s | peak MB | out MP | rembg img/min | p50 s | p99 s | peak MB | out MP "
        "| speed ours/rembg | memory ours/rembg | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (mp, conc), cells in sorted(results.items()):
        ours, theirs = cells.get("ours"), cells.get("rembg")
        row = [str(mp), str(conc)]
        for cell in (ours, theirs):
            if cell is None:
                row += ["-"] * 5
                continue
            fails = f" ({cell.failed} failed)" if cell.failed else ""
            row += [f"{cell.per_minute:.1f}{fails}", f"{cell.percentile(50):.2f}", f"{cell.percentile(99):.2f}",
                    _mb(cell.peak_rss), _size(cell)]
        if ours and theirs and theirs.per_minute and theirs.peak_rss:
            row += [f"{ours.per_minute / theirs.per_minute:.2f}x", f"{ours.peak_rss / theirs.peak_rss:.2f}"]
        else:
            row += ["-", "-"]
        loads = [f"{c.load:.1f}" for c in (ours, theirs) if c is not None]
        row.append("/".join(loads))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def revision() -> str:
    """The commit measured, and which tracked engine/service files differ from it (if any)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if line[3:].startswith(("engine/", "service/", "gateway/"))]
    return git("rev-parse", "--short", "HEAD") + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {cores} cores available, {memory:.0f} GiB, {platform.system()} {platform.release()}"


# --- main ------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_ints, default=[1, 4, 12, 25], help="megapixels, comma-separated")
    parser.add_argument("--concurrency", type=_ints, default=[1, 2, 4])
    parser.add_argument("--duration", type=float, default=40.0, help="seconds per cell (in-flight calls finish)")
    parser.add_argument("--max-requests", type=int, default=24, help="requests per cell at most")
    parser.add_argument("--rounds", type=int, default=2, help="each cell split in rounds alternating the servers")
    parser.add_argument("--quick", action="store_true", help="1 and 12 MP, concurrency 1 and 4, short cells")
    parser.add_argument("--no-rembg", action="store_true", help="ours only")
    parser.add_argument("--no-network", action="store_true", help="skip the network-alone part")
    parser.add_argument("--network-args", default="", help="extra arguments for bench/speed_network.py")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench-results" / "speed.md")
    ns = parser.parse_args(argv)
    if ns.quick:
        ns.sizes, ns.concurrency, ns.duration, ns.max_requests = [1, 12], [1, 4], 15.0, 8
        ns.network_args = ns.network_args or "--limit 5 --runs 3"

    from engine.models import manifest, providers
    from service.config import Settings

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    command = "python -m bench.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    settings = Settings.from_environ()
    found = manifest.load(settings.cache_dir, manifest.model_id(settings.model, settings.model_path), model_path=settings.model_path)
    forced = providers.provider_name(settings.execution_provider) if settings.execution_provider else None
    chosen = found.preference(settings.model_variant, forced)[0]
    model, variant, provider = pathlib.Path(found.source["path"]), chosen.file, chosen.provider
    load_before = os.getloadavg()
    code = revision()  # what is measured: taken before the run, as other work may land meanwhile
    photos = make_photos(ns.sizes)
    log(f"model {model.name}; our engine runs {variant.name} on {provider}; load average {load_before[0]:.1f}")

    results: dict[tuple[int, int], dict[str, Cell]] = {}
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="clearbg-bench-speed-") as scratch:
        workdir = pathlib.Path(scratch)
        try:
            servers.append(start_ours(workdir, log))
            if not ns.no_rembg:
                servers.append(start_rembg(model, workdir, log))
            for mp in ns.sizes:
                for server in servers:  # warm each server at this size (rembg makes its session here)
                    server.send(requests.Session(), photos[mp][0]).raise_for_status()
                for conc in ns.concurrency:
                    # Rounds alternate the servers, so a change in the shared machine's load
                    # during a cell falls on both of them alike.
                    for number in range(ns.rounds):
                        for server in servers:
                            sampler = PeakSampler(server.pids)
                            with sampler.window():
                                part = drive(server.send, photos[mp], conc, ns.duration / ns.rounds,
                                             -(-ns.max_requests // ns.rounds))
                            part.peak_rss = sampler.peak
                            results.setdefault((mp, conc), {}).setdefault(server.name, Cell()).add(part)
                    for server in servers:
                        cell = results[(mp, conc)][server.name]
                        log(f"{mp:>2} MP x{conc} {server.name:5}: {cell.per_minute:6.1f} img/min, "
                            f"p50 {cell.percentile(50):.2f} s, p99 {cell.percentile(99):.2f} s, "
                            f"peak {_mb(cell.peak_rss)} MB, {cell.completed} ok, {cell.failed} failed "
                            f"{cell.error[:120]} (load {cell.load:.1f})")
        finally:
            for server in servers:
                server.stop()

    network = ""
    if not ns.no_network:
        log("network alone per variant (bench/speed_network.py)...")
        run = subprocess.run([sys.executable, str(ROOT / "bench" / "speed_network.py"), *ns.network_args.split()],
                             capture_output=True, text=True, cwd=ROOT)
        network = run.stdout + (f"\n(failed: {run.stderr[-1500:]})" if run.returncode else "")
    load_after = os.getloadavg()

    ours = servers[0]
    table = render_table(results)
    report = "\n".join([
        "# Speed: the REST path, ours vs rembg (bench/speed.py)",
        "",
        f"Command: `{command.strip()}` (`make bench-speed`), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"- Code: {code}.",
        f"- Machine: {machine()}. Load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, "
        f"after {'/'.join(f'{v:.1f}' for v in load_after)} (a shared machine: compare figures within this run only).",
        f"- Model: {model.name}; ours runs the {variant.name} variant on {provider}; "
        f"{servers[1].note if len(servers) > 1 else 'rembg not run'} runs dis_custom on the same file.",
        f"- Our stack (Envoy + gRPC server) went from start to healthy in {ours.started_s:.2f} s with the model cached.",
        f"- Cells: at most {ns.duration:g} s or {ns.max_requests} requests each per server, in {ns.rounds} rounds "
        f"alternating the servers; load: the highest 1-minute load average at the end of a round; photos {', '.join(PHOTOS)} "
        "upscaled with grain to each size, JPEG q90. Peak MB: RSS of the server's process tree "
        "(ours: gRPC server + Envoy), sampled every 50 ms. out MP: the answer's size (the API caps PNG at 10 MP). "
        "p99 of so few requests is close to the slowest one.",
        "",
        table,
        "",
    ])
    if network:
        report += "\n## The network alone, per variant (bench/speed_network.py)\n\n```\n" + network.strip() + "\n```\n"
    print(report)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(report)
    log(f"written to {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
