"""Shared fixtures for the engine tests: the real model (loaded once) and the research photos.

The photos are read in place from ../shared/quality (research-licensed: never copied here).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

QUALITY = pathlib.Path(__file__).resolve().parents[3] / "shared" / "quality"


@pytest.fixture(scope="session")
def engine():
    from engine.models.fetch import ensure_checkpoint
    from engine.pipeline import Engine

    return Engine(ensure_checkpoint(), threads=2)


@pytest.fixture(scope="session")
def grabcut():
    """Loads a grabcut50 photo: (bytes of the file, bool ground truth, bool pixels to ignore)."""
    root = QUALITY / "grabcut50"
    if not root.is_dir():
        pytest.skip(f"research photos not found at {root}")

    def load(stem: str) -> tuple[bytes, np.ndarray, np.ndarray]:
        image = next(root.glob(f"images/{stem}.*"))
        truth = np.asarray(Image.open(root / "masks" / f"{stem}.png").convert("L")) > 127
        ignore_path = root / "ignore" / f"{stem}.png"
        ignore = (
            np.asarray(Image.open(ignore_path).convert("L")) > 127 if ignore_path.exists() else np.zeros_like(truth)
        )
        return image.read_bytes(), truth, ignore

    return load

