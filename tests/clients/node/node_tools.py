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


def photo_folder(folder: pathlib.Path, photos: list[pathlib.Path], names: list[str] | None = None) -> pathlib.Path:
    """A folder of links to the shared photos (never copies), under their own names or `names`."""
    folder.mkdir(parents=True)
    for photo, name in zip(photos, names or [photo.name for photo in photos], strict=True):
        (folder / name).symlink_to(photo)
    return folder
