"""Helpers the Node clients' tests import (not a conftest, like tests/e2e/api_calls.py)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.clients.sdk_tools import CLIENTS

NPM_TIMEOUT_S = 600


def npm(*args: str, cwd: pathlib.Path) -> str:
    """Runs npm; a failure shows its output."""
    npm_path = shutil.which("npm")
    if npm_path is None:
        pytest.fail("npm is not installed: the Node clients' tests need Node 18+ and npm")
    done = subprocess.run(
        [npm_path, *args, "--no-audit", "--no-fund"], cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Packages:
    sdk: pathlib.Path  # clearbg-<version>.tgz
    cli: pathlib.Path  # clearbg-cli-<version>.tgz


def photo_folder(folder: pathlib.Path, photos: list[pathlib.Path], count: int | None = None) -> pathlib.Path:
    """A folder of links to the shared photos (never copies), under their own names; with
    `count`, that many links cycling through `photos`, each under a name of its own: a batch of
    files for the CLI whose repeats the server's matte cache answers, so the net runs once a photo."""
    folder.mkdir(parents=True)
    if count is None:
        links = [(photo, photo.name) for photo in photos]
    else:
        links = [(photos[n % len(photos)], f"{n:02d}-{photos[n % len(photos)].name}") for n in range(count)]
    for photo, name in links:
        (folder / name).symlink_to(photo)
    return folder
