"""Helpers the Node clients' tests import (not a conftest, like tests/e2e/api_calls.py)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest

from tests.e2e.conftest import RunningStack

ROOT = pathlib.Path(__file__).resolve().parents[3]
CLIENTS = ROOT / "clients"
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


@dataclass
class Accounts:
    """Accounts in the stack's database: make() creates one and returns its key."""

    make: Callable[..., str]
    storage: object

    def balance(self, key: str) -> Decimal:
        account, _ = self.storage.find_key(key)
        return account.total

    def top_up(self, key: str, credits: int) -> None:
        account, _ = self.storage.find_key(key)
        self.storage.add_credits(account.id, f"test-top-up-{key[-6:]}", subscription=Decimal(credits))

    def charges(self, key: str) -> list:
        """The account's ledger rows of kind charge and refund."""
        account, _ = self.storage.find_key(key)
        return [row for row in self.storage.ledger(account.id) if row.kind in ("charge", "refund")]


def node_env(stack: RunningStack, key: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLEARBG_")}
    env.update(CLEARBG_BASE_URL=stack.rest_url, CLEARBG_API_KEY=key, **extra)
    return env


def photo_folder(folder: pathlib.Path, photos: list[pathlib.Path]) -> pathlib.Path:
    """A folder of links to the shared photos (never copies)."""
    folder.mkdir(parents=True)
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    return folder
