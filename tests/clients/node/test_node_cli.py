"""The `clearbg` command from `npm install -g` of clearbg-cli's tarball, against the real stack.

- 30 photos (6, five times each), --concurrency 4, in a pseudo-terminal: the progress bar (count,
  rate, ETA), 30 real cut-outs, the summary; again with --skip-existing: nothing sent, nothing
  charged.
- Credits running out mid-way (8 credits, 12 photos): 8 saved and charged once each, 4
  reported as 402 insufficient_credits, exit 1; topped up, --skip-existing does only the 4.
- A key limited to 30 megapixel-images a minute, its units spent, 9 photos: all done, no 429 shown, and (from
  the SDK's debug log) every wait is the Retry-After the server sent, shared by all workers.
- The README's examples, run as written.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import pty
import re
import select
import struct
import subprocess
import termios
import time
from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest
import requests
from PIL import Image

from tests.clients.node.node_tools import CLIENTS, photo_folder
from tests.clients.sdk_tools import sdk_env

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_S = 600
SUMMARY = re.compile(r"^done (\d+), failed (\d+), skipped (\d+), credits charged (\d+)$", re.MULTILINE)


def run(argv: list, env: dict, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def shown(done) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}"


def json_lines(stdout: str) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in stdout.splitlines()]
    return records[:-1], records[-1]["summary"]


def run_in_terminal(argv: list, env: dict, cwd: pathlib.Path, columns: int = 100) -> tuple[int, str]:
    """Runs argv with stdin, stdout and stderr on a pseudo-terminal; returns (status, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen([str(a) for a in argv], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has gone
                break
            if not chunk:
                break
            output += chunk
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return status, output.decode("utf-8", "replace")


def real_cutout(path: pathlib.Path) -> None:
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGBA", (path, image.format, image.mode)
    alpha = np.asarray(image.getchannel("A"))
    assert (alpha == 0).mean() > 0.005 and (alpha == 255).mean() > 0.005, f"{path.name}: not a real matte"


def test_30_photos_in_a_terminal_then_skip_existing_charges_nothing(sdk_stack, accounts, clearbg_bin, photos, tmp_path):
    key = accounts.make("cli-30", subscription=Decimal(100))
    # Six photos, each five times: what is tested is the CLI's batch, not the net.
    folder = photo_folder(tmp_path / "photos", photos[:6], count=30)
    env = sdk_env(sdk_stack, key)
    status, output = run_in_terminal(
        [clearbg_bin, "remove", folder, "-o", tmp_path / "out", "--concurrency", "4", "--size", "small"], env, tmp_path
    )
    assert status == 0, output[-3000:]
    frames = [frame.replace("\x1b[K", "").strip() for frame in output.split("\r")]
    bar = re.compile(r"^\[[=> ]+\]  (\d+)/30  (\d+)%  (--/s|[\d.]+/(?:s|min))  ETA (--:--|\d+:\d\d)  failed 0")
    drawn = [m for m in map(bar.match, frames) if m]
    assert drawn, f"no progress bar in:\n{output[-3000:]}"
    counts = [int(m.group(1)) for m in drawn]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 30, counts
    midway = [m for m in drawn if 0 < int(m.group(1)) < 30]
    assert midway, counts
    assert all(re.fullmatch(r"[\d.]+/(s|min)", m.group(3)) and re.fullmatch(r"\d+:\d\d", m.group(4)) for m in midway), [
        m.group(0) for m in midway
    ]
    assert drawn[-1].group(2) == "100" and drawn[-1].group(4) == "0:00"
    assert SUMMARY.search(output.replace("\r", "\n")).groups() == ("30", "0", "0", "30"), output[-500:]

    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == sorted(f"{link.stem}.png" for link in folder.iterdir())
    for path in outputs[:6]:  # one of each photo
        real_cutout(path)
    assert accounts.balance(key) == Decimal(70)

    again = run([clearbg_bin, "remove", folder, "-o", tmp_path / "out", "--skip-existing", "--json"], env, tmp_path)
    assert again.returncode == 0, shown(again)
    records, summary = json_lines(again.stdout)
    assert summary == {"done": 0, "failed": 0, "skipped": 30, "credits_charged": 0}
    assert {r["status"] for r in records} == {"skipped"} and len(records) == 30
    assert accounts.balance(key) == Decimal(70), "a skipped photo is not sent, so not charged"


def test_credits_running_out_midway(sdk_stack, accounts, clearbg_bin, photos, tmp_path):
    key = accounts.make("cli-8-credits", subscription=Decimal(8))
    folder = photo_folder(tmp_path / "photos", photos[:3], count=12)
    out = tmp_path / "out"
    env = sdk_env(sdk_stack, key)
    argv = [clearbg_bin, "remove", folder, "-o", out, "--concurrency", "4", "--size", "small", "--json"]
    done = run(argv, env, tmp_path)
    assert done.returncode == 1, shown(done)
    records, summary = json_lines(done.stdout)
    assert summary == {"done": 8, "failed": 4, "skipped": 0, "credits_charged": 8}, shown(done)
    paid = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(paid) == 8 and len(failed) == 4
    for r in failed:
        assert r["error"]["status"] == 402 and r["error"]["code"] == "insufficient_credits", r
        assert r["output"] is None and r["credits_charged"] == 0
    for r in paid:
        assert r["credits_charged"] == 1
        assert pathlib.Path(r["output"]).is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(pathlib.Path(r["output"]).name for r in paid)
    # Charged once per saved result, never twice: the ledger's charges net of refunds.
    rows = accounts.charges(key)
    assert sum(1 for row in rows if row.kind == "charge") - sum(1 for row in rows if row.kind == "refund") == 8
    assert accounts.balance(key) == Decimal(0)

    accounts.top_up(key, 4)
    rerun = run(argv[:-1] + ["--skip-existing", "--json"], env, tmp_path)
    assert rerun.returncode == 0, shown(rerun)
    records, summary = json_lines(rerun.stdout)
    assert summary == {"done": 4, "failed": 0, "skipped": 8, "credits_charged": 4}
    assert {r["file"] for r in records if r["status"] == "done"} == {r["file"] for r in failed}
    assert len(list(out.iterdir())) == 12
    assert accounts.balance(key) == Decimal(0)


DEBUG = re.compile(r"^\[clearbg (\S+)\] POST /v1\.0/removebg \[([0-9a-f-]+)\] (.*)$")


def empty_rate_limit(rest_url: str, key: str, most: int) -> None:
    """Uploads that are not images until the key's bucket is empty: each answered 400 at once and
    free, but one unit of the key's rate limit (service/removal.py: refused before its size is
    known), and once a unit is not there the 400 says so with Retry-After. Spent until then
    rather than counted, since units come back while they are sent (a loaded slow machine took
    seconds over 27)."""
    for _ in range(most):
        answer = requests.post(rest_url + "/v1.0/removebg", headers={"X-Api-Key": key},
                               files={"image_file": ("x.jpg", b"not an image", "image/jpeg")}, timeout=60)
        assert answer.status_code == 400, answer.text
        if "Retry-After" in answer.headers:
            assert answer.headers["X-RateLimit-Remaining"] == "0", dict(answer.headers)
            return
    raise AssertionError(f"the bucket still not empty after {most} uploads")


def test_rate_limited_run_waits_out_retry_after_and_shows_no_429(sdk_stack, accounts, clearbg_bin, photos, tmp_path):
    # 30 a minute, one unit each 2 s: the run waits ~18 s. 9 files of 3 photos: the limit counts
    # calls, and the matte cache answers the repeats.
    key = accounts.make("cli-limited", subscription=Decimal(100), rate_limit_per_minute=30)
    folder = photo_folder(tmp_path / "photos", photos[:3], count=9)
    env = sdk_env(sdk_stack, key, CLEARBG_LOG="debug")
    # The bucket empty: the 4 workers' first requests meet the limit on any machine (with a full
    # bucket a slow machine served 15 photos without reaching it; with 27 units spent one by one,
    # those that came back meanwhile let a loaded AVX2 EPYC's 9 calls through).
    empty_rate_limit(sdk_stack.rest_url, key, most=60)
    started = time.monotonic()
    done = run([clearbg_bin, "remove", folder, "-o", tmp_path / "out", "--concurrency", "4", "--size", "small"], env, tmp_path)
    took = time.monotonic() - started
    assert done.returncode == 0, shown(done)
    # What the user sees: the summary and nothing else (the debug log is opt-in).
    assert done.stdout == "done 9, failed 0, skipped 0, credits charged 9\n"
    user_lines = [line for line in done.stderr.splitlines() if not line.startswith("[clearbg ")]
    assert user_lines == [], user_lines
    assert len(list((tmp_path / "out").iterdir())) == 9

    events = []
    for line in done.stderr.splitlines():
        m = DEBUG.match(line)
        if m:
            events.append((datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp(), m.group(2), m.group(3)))
    refusals = [(i, t, key_, int(re.search(r"Retry-After (\d+)$", text).group(1)))
                for i, (t, key_, text) in enumerate(events) if ": 429 rate_limit_exceeded" in text]
    # One each 2 s from an empty bucket: the run had to wait, and did.
    assert refusals, "the limit was never reached"
    assert took >= 6 * 2 - 2, took
    for i, t, call, retry_after in refusals:
        assert 1 <= retry_after <= 60
        # That call's own wait is the Retry-After the server sent...
        wait = next(text for _, k, text in events[i + 1:] if k == call and text.startswith("retrying in"))
        assert wait == f"retrying in {retry_after}.000 s after RateLimitError", wait
        # ...and no call of the run (any worker) sent anything before it was over.
        for t_next, k, text in events[i + 1:]:
            if re.match(r"attempt \d+ of \d+$", text):
                assert t_next >= t + retry_after - 0.005, (k, text, t_next - t, retry_after)
    print(f"\n9 photos at 30/min: {len(refusals)} answers 429 absorbed, {took:.1f} s")


def readme_examples(readme: pathlib.Path) -> dict[str, str]:
    return dict(re.findall(r"<!-- example: (\S+) -->\s*```sh\n(.*?)```", readme.read_text(), re.DOTALL))


def test_readme_examples_run_as_written(sdk_stack, accounts, clearbg_bin, photos, tmp_path):
    examples = readme_examples(CLIENTS / "cli" / "README.md")
    assert len(examples) >= 4, list(examples)
    (tmp_path / "photo.jpg").symlink_to(photos[0])
    photo_folder(tmp_path / "photos", photos[1:4])
    key = accounts.make("cli-readme", subscription=Decimal(10), free_calls=10)
    env = sdk_env(sdk_stack, key)
    env["PATH"] = f"{clearbg_bin.parent}{os.pathsep}{env['PATH']}"
    printed = {}
    for name, script in examples.items():
        done = run(["bash", "-euo", "pipefail", "-c", script], env, tmp_path)
        assert done.returncode == 0, f"README example {name}:\n{script}\n{shown(done)}"
        printed[name] = done.stdout
    real_cutout(tmp_path / "photo-clearbg.png")
    assert sorted(p.name for p in (tmp_path / "cutouts").iterdir()) == sorted(f"{p.stem}.png" for p in photos[1:4])
    assert SUMMARY.search(printed["folder"]).groups() == ("3", "0", "0", "3")
    _, summary = json_lines(printed["skip"])
    assert summary == {"done": 0, "failed": 0, "skipped": 3, "credits_charged": 0}
    assert re.match(r"^credits\s+6 \(subscription 6, payg 0, enterprise 0\)\nfree calls\s+10\nsizes\s+all\n$", printed["account"])
