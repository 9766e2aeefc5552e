"""The Node SDK `clearbg` installed from its packed tarball, against the real stack.

- clients/node/e2e/sdk.e2e.mjs (node --test) runs where the tarball was installed: the picture's
  PNG header and every result field against the headers the server sent, uploads of every kind,
  formats, the server's errors as their classes. Its answers are decoded here with Pillow: a real
  matte (some alpha 0, some 255) whose box is X-Foreground-*.
- The README's examples run unchanged (import and require) in the same folder.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
from decimal import Decimal

import numpy as np
import pytest
from PIL import Image

from tests.clients.node.node_tools import CLIENTS
from tests.clients.sdk_tools import real_matte, sdk_env
from tests.e2e.api_calls import PERSON, REAL_MATTE_IOU, alpha_box, iou, truth_mask

pytestmark = pytest.mark.e2e

NODE_TIMEOUT_S = 600


def node(*args: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["node", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)


def shown(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-8000:]}\n--- stderr ---\n{done.stderr[-4000:]}"


def test_sdk_e2e_suite_from_the_installed_tarball(sdk_stack, accounts, sdk_app, quality, tmp_path):
    key = accounts.make("node-sdk", subscription=Decimal(20), free_calls=30)
    poor = accounts.make("node-sdk-poor")
    out = tmp_path / "answers"
    out.mkdir()
    suite = sdk_app / "sdk.e2e.mjs"
    shutil.copy(CLIENTS / "node" / "e2e" / "sdk.e2e.mjs", suite)
    env = sdk_env(sdk_stack, key, CLEARBG_E2E_POOR_KEY=poor, CLEARBG_E2E_PHOTO=str(quality / PERSON), CLEARBG_E2E_OUT=str(out))
    done = node("--test", suite.name, cwd=sdk_app, env=env)
    assert done.returncode == 0, shown(done)
    assert re.search(r"^# pass 5$", done.stdout, re.MULTILINE), shown(done)

    # The saved answers, decoded: the picture the fields describe.
    for name in ("path", "buffer"):
        fields = json.loads((out / f"{name}.json").read_text())
        image = Image.open(out / f"{name}.bin")
        assert image.format == "PNG"
        assert image.size == (fields["width"], fields["height"])
        alpha = real_matte(image)
        top, left, width, height = alpha_box(alpha)
        assert fields["foreground"] == {"top": top, "left": left, "width": width, "height": height}
        # The subject itself, against the photo's hand-made mask (0.93 when this was written).
        assert iou(alpha > 127, truth_mask(quality, image.size)) > REAL_MATTE_IOU
    # The photo is 321x481, under size=small's 0.25 MP: not rescaled.
    assert json.loads((out / "path.json").read_text())["width"] == 321
    blue = Image.open(out / "blue.bin")
    assert blue.format == "JPEG" and blue.mode == "RGB"
    corner = np.asarray(blue)[:8, :8].reshape(-1, 3).mean(axis=0)
    assert np.abs(corner - (0x81, 0xD4, 0xFA)).max() < 12, corner  # bgColor #81d4fa behind the subject

    # What the suite charged: one small call (the previews and refused calls are free).
    assert accounts.balance(key) == Decimal(19)
    assert accounts.balance(poor) == Decimal(0)


def readme_examples(readme: pathlib.Path) -> dict[str, str]:
    """The blocks the README marks `<!-- example: NAME -->`, in order."""
    found = re.findall(r"<!-- example: (\S+) -->\s*```(?:js|javascript)\n(.*?)```", readme.read_text(), re.DOTALL)
    return dict(found)


def test_readme_examples_run_unchanged_where_the_tarball_is_installed(sdk_stack, accounts, sdk_app, quality):
    examples = readme_examples(CLIENTS / "node" / "README.md")
    assert list(examples)[:2] == ["first.mjs", "first.cjs"], list(examples)
    folder = sdk_app / "readme"
    folder.mkdir()
    (folder / "photo.jpg").symlink_to(quality / PERSON)
    key = accounts.make("node-readme", subscription=Decimal(10), free_calls=10)
    env = sdk_env(sdk_stack, key)
    printed = {}
    for name, code in examples.items():
        (folder / name).write_text(code)
        done = node(name, cwd=folder, env=env)
        assert done.returncode == 0, f"README example {name}:\n{code}\n{shown(done)}"
        printed[name] = done.stdout

    # The first example's picture and what it printed about it.
    image = Image.open(folder / "result.png")
    real_matte(image)
    assert printed["first.mjs"].strip() == f"{image.width}x{image.height} person, charged 1 credit, 9 left"
    cjs = Image.open(folder / "result-cjs.png")
    assert cjs.size == image.size
    real_matte(cjs)
    assert printed["first.cjs"].strip() == f"{cjs.width} {cjs.height} 1"
    for name, expected in {
        "options.mjs": r"^on-blue\.jpg: image/jpeg, \d+x\d+$",
        "errors.mjs": r"^400 invalid_bg_color: .+ \(request [0-9a-f-]{16,}\)$",
        "account.mjs": r"^\d+ credits left, \d+ free previews$",
    }.items():
        assert re.match(expected, printed[name].strip()), (name, printed[name])
    assert Image.open(folder / "on-blue.jpg").format == "JPEG"
    assert os.path.getsize(folder / "result.png") > 0
