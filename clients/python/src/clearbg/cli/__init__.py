"""The `clearbg` command: background removal for files and folders, and the account's balance.

    clearbg remove PATH... [-o OUTDIR] [--size S] [--format F] [--concurrency N] [--json] ...
    clearbg account [--json]

The key and the server come from --api-key / --base-url, else CLEARBG_API_KEY / CLEARBG_BASE_URL.
Exit status: 0 all done, 1 some file failed, 2 usage error (130: interrupted).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from clearbg._client import ClearBG
from clearbg._retry import Gate, Stopped
from clearbg._version import __version__
from clearbg.cli._files import (
    FORMAT_EXTENSIONS,
    Job,
    Layout,
    UsageError,
    collect_jobs,
    existing_output,
    list_folder,
    output_path,
    write_output,
)
from clearbg.cli._progress import Counts, ProgressBar
from clearbg.errors import APIConnectionError, APIError, APITimeoutError, ClearBGError

# Enough retries that a run limited to a few images a minute still completes.
DEFAULT_MAX_RETRIES = 10
DEFAULT_CONCURRENCY = 4
# The picture options: the command line's names -> remove_background's keywords.
PICTURE_OPTIONS = (
    ("size", "size"), ("type", "type"), ("type-level", "type_level"), ("format", "format"),
    ("bg-color", "bg_color"), ("bg-image-url", "bg_image_url"), ("bg-image-file", "bg_image_file"),
    ("channels", "channels"), ("crop-margin", "crop_margin"), ("scale", "scale"), ("position", "position"),
    ("roi", "roi"),
)
PICTURE_FLAGS = (("crop", "crop"), ("add-shadow", "add_shadow"))
EXIT_INTERRUPTED = 130


def _watch_interval_s() -> float:
    """How often --watch lists the folders again; a new file is taken once its size held still
    for one interval."""
    try:
        return max(0.05, float(os.environ.get("CLEARBG_WATCH_INTERVAL_MS", "1000")) / 1000)
    except ValueError:
        return 1.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit is 2 too, but via SystemExit
        raise UsageError(message)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-key", help="default: CLEARBG_API_KEY")
    parser.add_argument("--base-url", help="default: CLEARBG_BASE_URL, else https://api.clearbg.ai")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (one line per file for remove)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clearbg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"clearbg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    remove = commands.add_parser("remove", help="remove the background of photos and folders of photos")
    remove.add_argument("paths", nargs="+", metavar="PATH", help="photos or folders of photos")
    remove.add_argument("-o", "--output", metavar="OUTDIR", help="write results here (default: beside each photo as <name>-clearbg.<ext>)")
    for name, _ in PICTURE_OPTIONS:
        remove.add_argument(f"--{name}", metavar=name.split("-")[-1].upper())
    for name, _ in PICTURE_FLAGS:
        remove.add_argument(f"--{name}", action="store_true")
    remove.add_argument("-r", "--recursive", action="store_true", help="also photos in subfolders")
    remove.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N", help="calls at once (4)")
    remove.add_argument("--skip-existing", action="store_true", help="skip photos whose output exists (no request, no charge)")
    remove.add_argument("--watch", action="store_true", help="then keep processing new photos dropped into the folders, until Ctrl-C")
    remove.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES, metavar="N", help="retries per photo (10)")
    remove.add_argument("--timeout", type=float, metavar="SECONDS", help="per attempt (300)")
    _connection(remove)
    account = commands.add_parser("account", help="the account's credits and free calls")
    _connection(account)
    return parser


def _client(args: argparse.Namespace, **settings: Any) -> ClearBG:
    key = args.api_key or os.environ.get("CLEARBG_API_KEY")
    if not key:
        raise UsageError("no API key: pass --api-key or set CLEARBG_API_KEY")
    try:
        return ClearBG(key, base_url=args.base_url or None, **settings)
    except (ClearBGError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _number(value: Decimal) -> Any:
    """Credits in JSON: a number, whole when it is whole."""
    return int(value) if value == value.to_integral_value() else float(value)


def _text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def describe(error: BaseException) -> Tuple[str, Dict[str, Any]]:
    """One line for the user and the JSON `error` object, for any failure of one file."""
    if isinstance(error, APIError):
        code = error.code or f"http_{error.status}"
        suffix = f" (request id {error.request_id})" if error.request_id else ""
        return (
            f"{error.status} {code}: {error.detail}{suffix}",
            {"status": error.status, "code": code, "title": error.title, "detail": error.detail},
        )
    if isinstance(error, APIConnectionError):
        code = "timeout" if isinstance(error, APITimeoutError) else "connection_error"
        return f"{code}: {error}", {"status": None, "code": code, "title": "No answer", "detail": str(error)}
    code = type(error).__name__.lower()
    return f"{code}: {error}", {"status": None, "code": code, "title": "Local error", "detail": str(error)}


def account_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    with _client(args) as client:
        try:
            info = client.account()
        except ClearBGError as exc:
            stderr.write(f"clearbg: {describe(exc)[0]}\n")
            return 1
    c = info.credits
    if args.json:
        credits = {name: _number(getattr(c, name)) for name in ("total", "subscription", "payg", "enterprise")}
        stdout.write(json.dumps({"credits": credits, "free_calls": info.free_calls, "sizes": info.sizes}) + "\n")
    else:
        stdout.write(
            f"credits     {_text(c.total)} (subscription {_text(c.subscription)}, payg {_text(c.payg)}, "
            f"enterprise {_text(c.enterprise)})\nfree calls  {info.free_calls}\nsizes       {info.sizes}\n"
        )
    return 0


class Arrivals:
    """--watch: the photos that appeared in the folders since the last look, each once it is
    complete, i.e. its size held still between two looks (a file still being copied is not)."""

    def __init__(self, folders: Sequence[str], layout: Layout, known: Sequence[Job]):
        self.folders = list(folders)
        self.layout = layout
        self.seen = {job.source for job in known}
        self.sizes: Dict[str, int] = {}

    def poll(self) -> List[Job]:
        ready = []
        for folder in self.folders:
            for job in list_folder(folder, self.layout):
                if job.source in self.seen:
                    continue
                try:
                    size = os.path.getsize(job.source)
                except OSError:
                    continue
                if size > 0 and self.sizes.get(job.source) == size:
                    self.seen.add(job.source)
                    del self.sizes[job.source]
                    ready.append(job)
                else:
                    self.sizes[job.source] = size
        return ready


class Run:
    """One `clearbg remove`: a queue of photos, N workers sharing one client (and so one
    Retry-After pause), --watch adding to the queue until interrupted."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO):
        fmt = args.format
        if fmt is not None and fmt != "auto" and fmt not in FORMAT_EXTENSIONS:
            raise UsageError(f"--format must be one of png, jpg, webp, zip, auto; got {fmt!r}")
        if args.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if args.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")
        if args.timeout is not None and not args.timeout > 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if args.bg_image_file is not None and not os.path.isfile(args.bg_image_file):
            raise UsageError(f"no such file: --bg-image-file {args.bg_image_file}")
        self.args = args
        self.format = fmt
        self.layout = Layout(args.output, args.recursive, fmt)
        self.jobs = collect_jobs(args.paths, self.layout)
        self.folders = [path for path in args.paths if os.path.isdir(path)]
        if args.watch and not self.folders:
            raise UsageError("--watch needs a folder to watch")
        self.client = _client(args, max_retries=args.max_retries, timeout=args.timeout)
        self.gate = self.client._gate = Gate()  # the workers' shared pause; stopped by Ctrl-C
        self.params = {key: getattr(args, name.replace("-", "_")) for name, key in PICTURE_OPTIONS}
        self.params.update({key: True for name, key in PICTURE_FLAGS if getattr(args, name.replace("-", "_"))})
        self.params = {key: value for key, value in self.params.items() if value is not None}
        self.stdout, self.stderr = stdout, stderr
        self.json = args.json
        self.counts = Counts()
        self.charged = Decimal(0)
        self.lock = threading.Lock()
        self.queue: "queue.Queue[Optional[Job]]" = queue.Queue()
        self.stopping = threading.Event()
        tty = not self.json and hasattr(stderr, "isatty") and stderr.isatty()
        self.bar = ProgressBar(stderr, lambda: self.counts) if tty else None

    def emit(self, record: Dict[str, Any]) -> None:
        if self.json:
            with self.lock:
                self.stdout.write(json.dumps(record) + "\n")
                self.stdout.flush()

    def report(self, line: str) -> None:
        if self.bar is not None:
            self.bar.print(line)
        else:
            with self.lock:
                self.stderr.write(line + "\n")
                self.stderr.flush()

    def add(self, job: Job) -> None:
        with self.lock:
            self.counts.total += 1
        self.queue.put(job)

    def process(self, job: Job) -> None:
        record: Dict[str, Any] = {
            "file": job.file, "output": None, "status": "", "credits_charged": 0, "credits_remaining": None,
            "width": None, "height": None, "type": None,
        }
        skipped_by = existing_output(job, self.format) if self.args.skip_existing else None
        if skipped_by is not None:
            with self.lock:
                self.counts.skipped += 1
            self.emit({**record, "output": skipped_by, "status": "skipped"})
            return
        if self.bar is not None:
            self.bar.start()
        try:
            try:
                result = self.client.remove_background(job.source, **self.params)
            except Stopped:  # Ctrl-C while it waited to try again: left, like photos not started
                return
            with self.lock:  # charged as soon as the answer came, even if writing fails below
                self.charged += result.credits_charged
            record.update(credits_charged=_number(result.credits_charged), credits_remaining=_number(result.credits_remaining))
            output = output_path(job, self.format, result.content_type)
            write_output(output, result.content)
        except (ClearBGError, OSError) as exc:
            line, error = describe(exc)
            with self.lock:
                self.counts.failed += 1
            self.emit({**record, "status": "failed", "error": error})
            if not self.json:
                self.report(f"failed: {job.file}: {line}")
            return
        with self.lock:
            self.counts.done += 1
        self.emit({**record, "output": output, "status": "done", "width": result.width, "height": result.height, "type": result.type})

    def worker(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if not self.stopping.is_set():
                self.process(job)
            if self.bar is not None:
                self.bar.draw()

    def watch(self) -> None:
        arrivals = Arrivals(self.folders, self.layout, self.jobs)
        interval = _watch_interval_s()
        while not self.stopping.wait(interval):
            for job in arrivals.poll():
                self.add(job)

    def run(self) -> int:
        for job in self.jobs:
            self.add(job)
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.args.concurrency)]
        for thread in workers:
            thread.start()
        watcher = threading.Thread(target=self.watch, daemon=True) if self.args.watch else None
        interrupted = False
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if _main_thread() else None
        try:
            if watcher is not None:
                watcher.start()
                while True:  # until Ctrl-C
                    time.sleep(0.2)
            for _ in workers:
                self.queue.put(None)
            _wait_for(workers)
        except KeyboardInterrupt:
            interrupted = True
            # Photos not started stay for the next run, and so do those waiting to try again (a
            # Retry-After or a backoff: nothing was charged); answers on their way are kept.
            self.stopping.set()
            self.gate.stop()
            for _ in workers:
                self.queue.put(None)
            try:
                _wait_for(workers)
            except KeyboardInterrupt:
                pass  # a second Ctrl-C: leave at once
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if self.bar is not None:
                self.bar.finish()
            self.client.close()
        self.summary()
        if self.counts.failed:
            return 1
        return EXIT_INTERRUPTED if interrupted and not self.args.watch else 0

    def summary(self) -> None:
        c = self.counts
        if self.json:
            self.emit({"summary": {"done": c.done, "failed": c.failed, "skipped": c.skipped, "credits_charged": _number(self.charged)}})
        else:
            self.stdout.write(f"done {c.done}, failed {c.failed}, skipped {c.skipped}, credits charged {_text(self.charged)}\n")
            self.stdout.flush()


def _wait_for(threads: List[threading.Thread]) -> None:
    """Until every thread has ended, interruptible by Ctrl-C. Not Thread.join: a KeyboardInterrupt
    inside join can leave a thread that is still running reported as ended (CPython 3.11), and
    the run then left with answers on their way unwritten."""
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.1)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Runs the command line; returns the exit status (the console script exits with it)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            parser.print_help(out)
            return 2
        if args.command == "account":
            return account_command(args, out, err)
        return Run(args, out, err).run()
    except UsageError as exc:
        err.write(f"clearbg: {exc}\nRun 'clearbg --help' for usage.\n")
        return 2
