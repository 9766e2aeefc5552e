"""The dashboard (issue 17) in Debian's headless Chromium, against the real Envoy, server and
model: tests/e2e/browser/dashboard.test.mjs (playwright-core, axe-core) does the browsing, step
by step; this test starts the stack, runs it with node, and checks what it left behind (the
downloaded cut-out, and that no API key it made reached a log).

Screenshots of each page land in the test's tmp dir (printed), e.g.
/tmp/pytest-of-root/pytest-N/test_dashboard_in_headless_chr0/browser/screenshots/.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from api_calls import PERSON, REAL_MATTE_IOU, iou, truth_mask

pytestmark = pytest.mark.e2e

BROWSER_TESTS = pathlib.Path(__file__).resolve().parent / "browser"
CHROMIUM = "/usr/bin/chromium"
# The whole browser run, as a bound on a hang: it takes a minute or two on a busy 2-core machine.
RUN_TIMEOUT_S = 900


def _require_browser() -> str:
    node = shutil.which("node")
    if node is None or not (BROWSER_TESTS / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node and tests/e2e/browser/node_modules are needed: run `make browser-deps` (make test does)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (apt-get install chromium)")
    return node


def test_dashboard_in_headless_chromium(stack_factory, tmp_path, quality):
    node = _require_browser()
    out = tmp_path / "browser"
    out.mkdir()
    with stack_factory(CLEARBG_SIGN_UP="open") as running:
        printed = re.search(r"Development dashboard user: (\S+)\s+password: (\S+)", running.log.read_text())
        assert printed, "the server printed no development user"
        made = subprocess.run(
            [sys.executable, "-m", "service.admin", "--json", "--database-url", running.database_url,
             "create-user", "carol@example.com", "--base-url", running.rest_url],
            capture_output=True, text=True, timeout=60, check=True,
        )
        link = json.loads(made.stdout)["sign_in_link"]
        env = dict(
            os.environ,
            BASE_URL=running.rest_url,
            DEV_EMAIL=printed.group(1),
            DEV_PASSWORD=printed.group(2),
            LINK_EMAIL="carol@example.com",
            SIGN_IN_LINK=link,
            PHOTO=str(quality / PERSON),
            OUT_DIR=str(out),
            CHROMIUM=CHROMIUM,
        )
        run = subprocess.run(
            [node, str(BROWSER_TESTS / "dashboard.test.mjs")], cwd=BROWSER_TESTS, env=env,
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )
        print(run.stdout)
        print(f"screenshots: {out / 'screenshots'}")
        assert run.returncode == 0, f"{run.stdout[-8000:]}\n--- stderr ---\n{run.stderr[-4000:]}"
        log = running.log.read_text()

    keys = (out / "keys.txt").read_text().split()
    assert len(keys) >= 3
    leaked = [key[:12] for key in keys if key in log]
    assert not leaked, f"API keys made in the dashboard appear in the server's or Envoy's log: {leaked}"

    shots = (out / "screenshots.txt").read_text().split()
    assert len(shots) >= 9 and all(pathlib.Path(p).stat().st_size > 10_000 for p in shots)

    # The cut-out downloaded from "Try it": a PNG whose matte is the person, with soft edges.
    cutout = Image.open(out / "cutout.png")
    assert cutout.format == "PNG" and cutout.mode == "RGBA"
    alpha = np.asarray(cutout.getchannel("A"))
    assert (alpha == 0).mean() > 0.3 and (alpha == 255).mean() > 0.1
    assert ((alpha > 0) & (alpha < 255)).any(), "a hard matte: no soft edge at all"
    truth = truth_mask(quality, cutout.size)
    assert iou(alpha > 127, truth) >= REAL_MATTE_IOU
