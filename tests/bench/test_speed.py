"""bench/speed.py's own arithmetic: load bounds, percentiles, memory of a process tree, the table."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

from PIL import Image

from bench.speed import Cell, drive, render_table, tree_rss


class _Answer:
    def __init__(self, status: int, content: bytes = b"", text: str = ""):
        self.status_code, self.content, self.text = status, content, text


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (3, 2)).save(out, "PNG")
    return out.getvalue()


def test_drive_stops_at_max_requests_and_counts_failures():
    calls = []

    def send(http, photo):
        calls.append(photo)
        return _Answer(200, _png()) if len(calls) % 3 else _Answer(503, text="overloaded")

    cell = drive(send, [b"a", b"b"], concurrency=2, duration=60.0, max_requests=9)
    assert len(calls) == 9 and set(calls) == {b"a", b"b"}
    assert (cell.completed, cell.failed) == (6, 3)
    assert cell.output == (3, 2) and "503" in cell.error
    assert cell.per_minute > 0 and len(cell.latencies) == 6


def test_drive_stops_at_the_deadline_but_each_client_sends_once():
    def send(http, photo):
        time.sleep(0.05)
        return _Answer(200, _png())

    cell = drive(send, [b"x"], concurrency=3, duration=0.0, max_requests=100)
    assert cell.completed == 3


def test_percentiles_and_empty_cell():
    cell = Cell(completed=4, seconds=60.0, latencies=[1.0, 2.0, 3.0, 4.0])
    assert cell.per_minute == 4.0
    assert cell.percentile(50) == 2.5
    assert Cell().per_minute == 0.0


def test_tree_rss_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "b = b'x' * 200_000_000; import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and tree_rss([child.pid]) < 150_000_000:
            time.sleep(0.1)
        assert tree_rss([os.getpid()]) >= tree_rss([child.pid]) >= 150_000_000
    finally:
        child.kill()
        child.wait()


def test_table_has_ratios():
    ours = Cell(completed=30, seconds=60.0, latencies=[2.0], peak_rss=500_000_000, output=(1000, 1000))
    theirs = Cell(completed=10, seconds=60.0, latencies=[6.0], peak_rss=2_000_000_000, output=(1000, 1000))
    table = render_table({(1, 1): {"ours": ours, "rembg": theirs}})
    row = table.splitlines()[-1]
    assert "3.00x" in row and "0.25" in row and "| 1 | 1 |" in row
