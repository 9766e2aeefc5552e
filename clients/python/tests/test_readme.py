"""The README's examples, run as written against the real service: every ```python block as a
script and every ```sh block line by line, in a folder holding the photo.jpg and photos/ they
name, with CLEARBG_API_KEY / CLEARBG_BASE_URL / CLEARBG_GRPC_TARGET set as the README says
(```console blocks are shown, not run: installs, exports, --watch)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
from PIL import Image

from conftest import synthetic_photo

pytestmark = pytest.mark.e2e

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(python|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list:
    return [code for language, code in BLOCK.findall(README.read_text()) if language == kind]


@pytest.fixture
def workdir(stack, tmp_path):
    account_id, key = stack.account("100", free_calls=10)
    (tmp_path / "photo.jpg").write_bytes(synthetic_photo(1))
    (tmp_path / "photos").mkdir()
    for number in range(3):
        (tmp_path / "photos" / f"p{number}.jpg").write_bytes(synthetic_photo(10 + number))
    env = dict(
        os.environ, CLEARBG_API_KEY=key, CLEARBG_BASE_URL=stack.rest_url, CLEARBG_GRPC_TARGET=stack.grpc_target,
        PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return tmp_path, env, account_id


def test_the_readme_has_the_examples_this_test_runs():
    python, sh = blocks("python"), blocks("sh")
    assert len(python) >= 7 and len(sh) == 1
    assert "client.remove_background(\"photo.jpg\", size=\"auto\")" in python[0]


def test_every_python_example_runs(workdir, stack):
    folder, env, account_id = workdir
    outputs = []
    for number, code in enumerate(blocks("python")):
        script = folder / f"example_{number}.py"
        script.write_text(code)
        run = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"example {number}:\n{code}\n{run.stderr}"
        outputs.append(run.stdout)
    first = Image.open(folder / "photo-no-bg.png")
    assert first.mode == "RGBA" and first.size == (400, 300)
    assert outputs[0].split()[:2] == ["400", "300"]  # width, height
    assert Image.open(folder / "product.jpg").format == "JPEG"
    assert any(line.startswith("400 invalid_size ") for out in outputs for line in out.splitlines())
    assert "True True" in "".join(outputs)  # the replay, charged once
    assert (folder / "async-0.png").is_file() and (folder / "async-1.png").is_file()


def test_every_shell_example_runs(workdir):
    folder, env, _ = workdir
    for line in blocks("sh")[0].splitlines():
        run = subprocess.run(line, shell=True, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
    assert (folder / "photo-clearbg.png").is_file()
    assert sorted(p.name for p in (folder / "results").iterdir()) == ["p0.png", "p1.png", "p2.png"]
