"""The `clearbg` command (the installed console script) against the real service:

- a folder of 30 photos with --concurrency 4 on a terminal (a pseudo-terminal): 30 results, the
  progress bar with count, rate and ETA, the summary; a second run with --skip-existing charges
  nothing;
- credits running out mid-way (8 credits, 12 photos): the 8 paid results saved, the other 4
  reported as 402 insufficient_credits, exit status 1, nothing charged twice;
- a key limited to 30 megapixel-images a minute with 3 units left, 9 photos: every photo done, no 429 shown,
  and (seen by a recording proxy) every worker waiting out each Retry-After.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from PIL import Image

from recording_proxy import RecordingProxy

pytestmark = pytest.mark.e2e

CLEARBG = str(pathlib.Path(sys.executable).parent / "clearbg")


def run_cli(*args: str, key: str, url: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLEARBG, *args, "--api-key", key, "--base-url", url], capture_output=True, text=True, timeout=timeout,
    )


def run_on_a_terminal(*args: str, key: str, url: str, timeout: float = 600):
    """The command with its stderr on a pseudo-terminal: (exit status, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [CLEARBG, *args, "--api-key", key, "--base-url", url],
        stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    terminal = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not data:
                break
            terminal += data
        elif process.poll() is not None:
            break
    os.close(master)
    out = process.stdout.read().decode()
    process.wait(30)
    return process.returncode, out, terminal.decode("utf-8", "replace")


def records(out: str):
    *files, summary = (json.loads(line) for line in out.splitlines())
    return files, summary["summary"]


def test_a_folder_of_30_photos_on_a_terminal_then_skip_existing_charges_nothing(stack, make_photos, tmp_path):
    account_id, key = stack.account("100")
    make_photos(tmp_path / "photos", 30)
    outdir = tmp_path / "out"
    code, out, terminal = run_on_a_terminal(
        "remove", str(tmp_path / "photos"), "-o", str(outdir), "--concurrency", "4", "--size", "small",
        key=key, url=stack.rest_url,
    )
    assert code == 0, terminal[-2000:]
    assert out == "done 30, failed 0, skipped 0, credits charged 30\n"
    results = sorted(outdir.glob("*.png"))
    assert [p.name for p in results] == [f"photo-{i:02d}.png" for i in range(30)]
    for path in results[:3]:
        image = Image.open(path)
        assert image.mode == "RGBA" and image.size == (400, 300)
    # The bar: redrawn in place, with the count, share, a rate, an ETA and the failures so far.
    frames = [frame for frame in re.split(r"\r", terminal) if frame.startswith("[")]
    assert len(frames) >= 5, terminal[-2000:]
    assert any(re.search(r"\] +([1-9]|1\d|2\d)/30 +\d+% +\d+\.\d/(s|min) +ETA \d+:\d\d +failed 0", f) for f in frames), frames
    assert re.search(r"\] +30/30 +100% +\d+\.\d/(s|min) +ETA 0:00 +failed 0", frames[-1]), frames[-1]
    assert stack.charges(account_id) == 30

    again = run_cli("remove", str(tmp_path / "photos"), "-o", str(outdir), "--size", "small", "--skip-existing",
                    "--json", key=key, url=stack.rest_url)
    assert again.returncode == 0, again.stderr
    files, summary = records(again.stdout)
    assert summary == {"done": 0, "failed": 0, "skipped": 30, "credits_charged": 0}
    assert {f["status"] for f in files} == {"skipped"} and len(files) == 30
    assert stack.charges(account_id) == 30 and stack.balance(account_id) == 70


def test_credits_running_out_mid_way_keep_the_paid_results_and_report_402(stack, make_photos, tmp_path):
    account_id, key = stack.account("8")
    make_photos(tmp_path / "photos", 12)
    outdir = tmp_path / "out"
    run = run_cli("remove", str(tmp_path / "photos"), "-o", str(outdir), "--concurrency", "4", "--size", "small",
                  "--json", key=key, url=stack.rest_url)
    assert run.returncode == 1, run.stderr
    files, summary = records(run.stdout)
    assert summary == {"done": 8, "failed": 4, "skipped": 0, "credits_charged": 8}
    done = [f for f in files if f["status"] == "done"]
    failed = [f for f in files if f["status"] == "failed"]
    assert len(done) == 8 and len(failed) == 4 and len({f["file"] for f in files}) == 12
    assert all(f["error"]["status"] == 402 and f["error"]["code"] == "insufficient_credits" for f in failed)
    assert all(f["output"] is None and f["credits_charged"] == 0 for f in failed)
    assert sorted(p.name for p in outdir.glob("*.png")) == sorted(pathlib.Path(f["output"]).name for f in done)
    assert all(pathlib.Path(f["output"]).stat().st_size > 0 and f["credits_charged"] == 1 for f in done)
    assert stack.charges(account_id) == 8 and stack.balance(account_id) == 0  # each paid once

    again = run_cli("remove", str(tmp_path / "photos"), "-o", str(outdir), "--size", "small", "--skip-existing",
                    key=key, url=stack.rest_url)
    assert again.returncode == 1
    assert again.stdout == "done 0, failed 4, skipped 8, credits charged 0\n"
    assert again.stderr.count("402 insufficient_credits") == 4
    assert stack.charges(account_id) == 8


def test_a_rate_limited_run_finishes_every_photo_waiting_out_each_retry_after(stack, make_photos, tmp_path):
    # 30 a minute, one unit each 2 s: the run waits ~12 s (at 10 a minute and 15 photos it waited
    # 72 s to show the same thing; 9 photos show it with 6 fewer inferences).
    account_id, key = stack.account("100", rate_limit=30)
    make_photos(tmp_path / "photos", 9)
    # 3 of the 30 units left: the 4 workers' first requests already meet the limit, on any machine
    # (with a full bucket a slow machine served 15 photos without ever reaching it).
    stack.spend_rate_limit(key, 27)
    proxy = RecordingProxy(stack.rest_url)
    try:
        run = run_cli("remove", str(tmp_path / "photos"), "--concurrency", "4", "--size", "small",
                      key=key, url=proxy.url)
    finally:
        proxy.close()
    assert run.returncode == 0, run.stderr
    assert run.stdout == "done 9, failed 0, skipped 0, credits charged 9\n"
    assert "429" not in run.stderr and "rate_limit" not in run.stderr and run.stderr == ""
    assert len(list((tmp_path / "photos").glob("*-clearbg.png"))) == 9
    exchanges = sorted(proxy.exchanges, key=lambda e: e.began)
    limited = [e for e in exchanges if e.status == 429]
    assert limited, "the run was never limited: the test proves nothing"
    assert all(e.status in (200, 429) for e in exchanges)
    for refusal in limited:
        wait = float(refusal.retry_after)
        assert 1 <= wait <= 60
        # Its own retry came after Retry-After had passed ...
        retry = next(e for e in exchanges if e.idempotency_key == refusal.idempotency_key and e.began > refusal.answered)
        assert retry.began >= refusal.answered + wait - 0.05, (retry.began - refusal.answered, wait)
        # ... and so did every other worker's next request (one shared pause); 0.5 s for those
        # already on their way when the 429 came back.
        early = [e.began - refusal.answered for e in exchanges if refusal.answered + 0.5 < e.began < refusal.answered + wait - 0.05]
        assert early == [], (early, wait)
    assert stack.charges(account_id) == 9
