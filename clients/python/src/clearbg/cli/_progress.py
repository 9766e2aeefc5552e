"""The progress bar drawn on a terminal: count, share, rate, ETA and failures so far."""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, TextIO


@dataclass
class Counts:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0


def clock(seconds: float) -> str:
    s = int(math.ceil(seconds))
    hours, minutes, secs = s // 3600, (s % 3600) // 60, s % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_bar(counts: Counts, elapsed_s: float, columns: int) -> str:
    """`[=========>          ]  12/30  40%  2.1/s  ETA 0:09  failed 1`, fitted to `columns`.
    The rate counts from the first request and leaves out skipped files (they cost no time);
    the ETA is for the files still to send."""
    finished = counts.done + counts.failed + counts.skipped
    sent = counts.done + counts.failed
    share = 1.0 if counts.total == 0 else finished / counts.total
    per_second = sent / elapsed_s if sent and elapsed_s > 0 else 0.0
    if per_second == 0:
        rate = "--/s"
    elif per_second >= 1:
        rate = f"{per_second:.1f}/s"
    else:
        rate = f"{per_second * 60:.1f}/min"
    left = counts.total - finished
    eta = "0:00" if left == 0 else "--:--" if per_second == 0 else clock(left / per_second)
    tail = f"  {finished}/{counts.total}  {int(share * 100)}%  {rate}  ETA {eta}  failed {counts.failed}"
    width = max(10, min(40, columns - len(tail) - 3))
    filled = min(width, int(share * width))
    bar = "=" * filled + (">" + " " * (width - filled - 1) if filled < width else "")
    return f"[{bar}]{tail}"


class ProgressBar:
    """Redraws the bar in place on a terminal stream (once a second and on every change);
    lines printed through it go above the bar."""

    def __init__(self, stream: TextIO, counts: Callable[[], Counts]):
        self.stream = stream
        self.counts = counts
        self._started: Optional[float] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, daemon=True)
        self.draw()
        self._timer.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.draw()

    def start(self) -> None:
        """The first request went out: the rate counts from here."""
        with self._lock:
            if self._started is None:
                self._started = time.monotonic()

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return 80

    def _line(self) -> str:
        elapsed = 0.0 if self._started is None else time.monotonic() - self._started
        return render_bar(self.counts(), elapsed, self._columns())

    def draw(self) -> None:
        with self._lock:
            self.stream.write(f"\r{self._line()}\x1b[K")
            self.stream.flush()

    def print(self, line: str) -> None:
        with self._lock:
            self.stream.write(f"\r\x1b[K{line}\n\r{self._line()}\x1b[K")
            self.stream.flush()

    def finish(self) -> None:
        self._stop.set()
        self._timer.join(2)
        self.draw()
        with self._lock:
            self.stream.write("\n")
            self.stream.flush()
