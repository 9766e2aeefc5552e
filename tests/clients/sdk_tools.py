"""Helpers the SDKs' end-to-end tests import (not a conftest, like tests/e2e/api_calls.py): accounts
in the stack's database, the environment an SDK's program runs with, the recording proxy between
an SDK and the stack, and the check that a picture holds a real matte."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from PIL import Image

from tests.e2e.conftest import RunningStack

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "clients"


def _recording_proxy():
    """clients/python/tests/recording_proxy.py (stdlib only), loaded by path: the Python SDK's tests
    run from a venv of their own, so the one proxy lives there."""
    name = "clearbg_recording_proxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CLIENTS / "python" / "tests" / "recording_proxy.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


RecordingProxy = _recording_proxy().RecordingProxy
Exchange = _recording_proxy().Exchange


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


def sdk_env(stack: RunningStack, key: str, base_url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without its CLEARBG_* settings, plus the stack's address (or
    `base_url`, e.g. a recording proxy in front of it) and the key."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLEARBG_")}
    env.update(CLEARBG_BASE_URL=base_url or stack.rest_url, CLEARBG_API_KEY=key, **extra)
    return env


def real_matte(image: Image.Image) -> np.ndarray:
    """The RGBA picture's alpha, checked to be a cut-out: some of it transparent, some opaque."""
    assert image.mode == "RGBA", image.mode
    alpha = np.asarray(image.getchannel("A"))
    transparent, opaque = (alpha == 0).mean(), (alpha == 255).mean()
    assert transparent > 0.05 and opaque > 0.05, f"not a real matte: {transparent:.1%} at 0, {opaque:.1%} at 255"
    return alpha
