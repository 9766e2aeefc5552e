"""bench/quality/generated.py: exact truth, the stated sizes and frames, reproducible, and nothing
of a held-out photo in a tuned image. On a tiny made-up quality folder (fast)."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
from PIL import Image

from bench.quality import datasets, generated, splits


def _photo(rng: np.random.Generator, box: tuple[int, int, int, int], soft: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 480x320 textured photo and its truth: a box-shaped subject (soft-edged for `soft`)."""
    photo = rng.integers(0, 255, (320, 480, 3), dtype=np.uint8)
    truth = np.zeros((320, 480), np.uint8)
    x0, y0, x1, y1 = box
    truth[y0:y1, x0:x1] = 255
    if soft:
        truth[y0:y1, x0 : x0 + 4] = 128
    return photo, truth


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
    """grabcut50 and alphamatting14 look-alikes, 6 photos each, the subject off to one side."""
    root = tmp_path_factory.mktemp("quality")
    rng = np.random.default_rng(0)
    for name, soft in (("grabcut50", False), ("alphamatting14", True)):
        base = root / name
        for sub in ("images", "masks"):
            (base / sub).mkdir(parents=True)
        with (base / "meta.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["stem", "image", "mask", "category", "subject"])
            for i in range(6):
                photo, truth = _photo(rng, (380, 60 + i, 460, 300), soft)  # touches no side
                Image.fromarray(photo).save(base / "images" / f"p{i}.png")
                Image.fromarray(truth).save(base / "masks" / f"p{i}.png")
                writer.writerow([f"p{i}", f"images/p{i}.png", f"masks/p{i}.png", "object", "box"])
    return root


def test_empty_window_is_empty_and_of_the_aspect():
    alpha = np.zeros((200, 300), np.float32)
    alpha[:, 200:] = 1.0
    x0, y0, x1, y1 = generated.empty_window(alpha, 16 / 9, margin=8)
    assert x1 <= 192 and (x1 - x0) / (y1 - y0) == pytest.approx(16 / 9, abs=0.02)
    assert x1 - x0 >= 190  # the largest: the whole free part's width, less the margin
    assert generated.empty_window(np.ones((50, 50), np.float32), 1.0) is None


def test_composite_truth_is_exact_and_covers_the_fraction():
    rng = random.Random(0)
    colour = np.full((40, 30, 3), 200, np.float32)
    alpha = np.full((40, 30), 255, np.uint8)
    alpha[:, :5] = 100  # a soft side
    background = np.full((480, 854, 3), 20, np.uint8)
    photo, truth, covered = generated.composite((colour, alpha, (False, False, False, True)), background, 0.05, rng)
    assert photo.shape == (480, 854, 3) and truth.shape == (480, 854)
    assert covered == pytest.approx(0.05, rel=0.05)
    a = truth.astype(np.float32) / 255
    expected = np.round(a * 200 + (1 - a) * 20)
    assert np.abs(photo[..., 0] - expected).max() <= 1  # photo = a·F + (1 - a)·B with the truth's a
    assert truth[-1].any() and not truth[0].any()  # a subject the photo cut at the bottom sits on the bottom


def test_centred_crop_has_the_aspect_and_holds_the_subject():
    alpha = np.zeros((321, 481), np.float32)
    alpha[100:200, 380:440] = 1.0
    x0, y0, x1, y1 = generated.centred_crop(alpha, 9 / 16)
    assert y1 - y0 == 321 and (x1 - x0) == round(321 * 9 / 16)
    assert alpha[y0:y1, x0:x1].sum() == alpha.sum()


@pytest.fixture(scope="module", autouse=True)
def _fewer_composites():
    """A fifth of the composites (each set's properties hold image by image; three builds of the
    full counts took ~100 s of a loaded suite)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generated, "COUNTS", {**generated.COUNTS, "composites-grabcut": 6, "composites-alpha": 4})
        patch.setattr(generated, "TUNED_EXTRA", {"composites-grabcut": 6, "composites-alpha": 4})
        yield


@pytest.fixture(scope="module")
def built(quality, tmp_path_factory):
    """The sets made once from the look-alikes, as build makes them by default (tuned extras
    included); the tests that need another build make it beside."""
    return generated.build(quality, tmp_path_factory.mktemp("generated") / "sets", log=lambda m: None)


def test_sets_are_reproducible_sized_and_split_by_their_source(quality, built, tmp_path):
    first = built
    second = generated.build(quality, tmp_path / "b", log=lambda m: None)
    for name in generated.SETS:
        samples = datasets.load(first, name)
        extra = generated.TUNED_EXTRA.get(name, 0)
        assert len(samples) == 2 * generated.COUNTS[name] + extra or name.startswith("crops")
        assert sum(s.part == splits.TUNED for s in samples) - sum(s.part == splits.HELD_OUT for s in samples) \
            == extra or name.startswith("crops")
        source_parts = {s.stem: s.part for s in datasets.load(quality, generated.SOURCE[name])}
        for sample in samples:
            assert (first / name / "images" / sample.image.name).read_bytes() == \
                (second / name / "images" / sample.image.name).read_bytes()
            source = sample.stem.split("-")[1]
            assert source_parts[source] == sample.part  # made from a photo of its own part
            with Image.open(sample.image) as image:
                size = image.size
            assert np.asarray(Image.open(sample.mask)).shape == size[::-1]
            if name.startswith("composites"):
                assert size in generated.FRAMES.values()
                share = sample.truth().sum() / (size[0] * size[1])
                assert generated.FRACTION[0] * 0.9 <= share <= generated.FRACTION[1] * 1.05
            else:
                assert max(size) / min(size) == pytest.approx(16 / 9, abs=0.02)
    held = {(name, s.stem) for name in datasets.SETS for s in datasets.load(quality, name, parts=(splits.HELD_OUT,))}
    for name in ("composites-grabcut", "composites-alpha"):
        for row in csv.DictReader((first / name / "meta.csv").read_text().splitlines()):
            background = tuple(row["notes"].split(" on ")[1].split(" ")[0].split("/"))
            assert (background in held) == (row["part"] == splits.HELD_OUT)  # backgrounds of its part too


def test_tuned_extras_leave_every_earlier_image_as_it_was(quality, built, tmp_path, monkeypatch):
    with_extra = built
    monkeypatch.setattr(generated, "TUNED_EXTRA", {})
    without = generated.build(quality, tmp_path / "none", log=lambda m: None)
    for name in ("composites-grabcut", "composites-alpha"):
        before = {s.stem: s for s in datasets.load(without, name)}
        after = {s.stem: s for s in datasets.load(with_extra, name)}
        assert set(before) < set(after)
        assert all(after[stem].part == splits.TUNED for stem in set(after) - set(before))
        for stem, sample in before.items():
            assert sample.image.read_bytes() == after[stem].image.read_bytes()
            assert sample.mask.read_bytes() == after[stem].mask.read_bytes()


def test_the_sets_land_whole_or_not_at_all(quality, tmp_path, monkeypatch):
    monkeypatch.setattr(generated, "SETS", ("crops-grabcut",))  # one set: the cheapest to make
    out = tmp_path / "stale"
    (out / "crops-grabcut").mkdir(parents=True)
    (out / "crops-grabcut" / "half.png").write_bytes(b"")  # a run that stopped part-way
    assert generated.build(quality, out, log=lambda m: None) == out
    assert (out / ".complete").is_file() and not (out / "crops-grabcut" / "half.png").exists()
    assert len(datasets.load(out, "crops-grabcut")) > 0

    other = tmp_path / "raced"
    write_set = generated.write_set

    def finished_first(base, items):  # another run renames its own sets into place meanwhile
        write_set(base, items)
        other.mkdir()
        (other / ".complete").write_text("")

    monkeypatch.setattr(generated, "write_set", finished_first)
    assert generated.build(quality, other, log=lambda m: None) == other
    assert [p.name for p in other.iterdir()] == [".complete"]  # theirs kept, not mixed with ours
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raced", "stale"]  # no staging left
