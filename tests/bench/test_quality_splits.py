"""bench/quality/splits.py and datasets.load's parts: a fixed, balanced, reproducible split."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from bench.quality import datasets, splits

QUALITY = pathlib.Path(__file__).resolve().parents[3] / "shared" / "quality"


def test_split_is_fixed_balanced_and_per_set():
    stems = [f"photo{i}" for i in range(11)]
    first = splits.split("a", stems)
    assert first == splits.split("a", list(reversed(stems)))  # order of listing does not matter
    assert list(first.values()).count(splits.TUNED) == 6  # half, rounded up
    assert list(first.values()).count(splits.HELD_OUT) == 5
    # Another set's name orders the stems differently: not the same photos in each part.
    assert splits.split("b", stems) != first


def test_the_real_sets_split_in_halves():
    for name, size in (("grabcut50", 50), ("alphamatting14", 14)):
        samples = datasets.load(QUALITY, name)
        parts = [s.part for s in samples]
        assert len(samples) == size
        assert parts.count(splits.TUNED) == size // 2 and parts.count(splits.HELD_OUT) == size // 2
        held = datasets.load(QUALITY, name, parts=(splits.HELD_OUT,))
        assert {s.stem for s in held} == {s.stem for s in samples if s.part == splits.HELD_OUT}
        assert len(datasets.load(QUALITY, name, limit=2)) == 4  # two of each part


def test_a_part_column_overrides_the_hash(tmp_path):
    base = tmp_path / "made"
    (base / "masks").mkdir(parents=True)
    (base / "meta.csv").write_text(
        "stem,image,mask,category,subject,part\n"
        "x,images/x.png,masks/x.png,animal,cat,held-out\n"
        "y,images/y.png,masks/y.png,animal,cat,held-out\n"
    )
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(base / "masks" / "x.png")
    assert [s.part for s in datasets.load(tmp_path, "made")] == [splits.HELD_OUT, splits.HELD_OUT]
    assert datasets.load(tmp_path, "made", parts=(splits.TUNED,)) == []
