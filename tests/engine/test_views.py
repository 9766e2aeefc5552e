"""What the net sees (issue 15): wide and tall photos also squashed into the net's square, the
two mattes joined by a per-pixel max; near-square photos once, with their aspect kept.

The rule is checked with a recording stand-in for the segmenter (unit); a small subject in a
21:9 frame is checked with the real model, made as bench/quality/generated.py makes its
composites.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from engine.models.families import ISNet
from engine.pipeline import SQUARE_VIEW_FROM, Engine
from engine.types import RemovalOptions

ALPHA = RemovalOptions(channels="alpha", output_format="png")


class Recording:
    """A segmenter that takes any shape (as the prepared variants do): records the view sizes
    it is shown and finds a centred square blob only in the squashed square view."""

    size = 1024
    fixed_shape = None

    def __init__(self):
        self.seen: list[tuple[int, int]] = []

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        return ISNet().input_shape(width, height, self.size, keep_aspect=True)

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        width, height = image.size
        matte = np.zeros((height, width), np.float32)
        if width == height:
            matte[height // 2 - 40 : height // 2 + 40, width // 2 - 40 : width // 2 + 40] = 1.0
        return matte


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "PNG")
    return out.getvalue()


def alpha_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.mark.parametrize("size", [(1920, 1080), (2520, 1080), (1080, 1920), (1500, 1000)])  # 16:9, 21:9, 9:16, 3:2
def test_wide_and_tall_photos_are_also_seen_squashed_and_joined_by_max(size):
    segmenter = Recording()
    result = Engine(segmenter, refine_edges=False).remove(png(*size), ALPHA)
    assert segmenter.seen == [segmenter.input_shape(*size), (1024, 1024)]
    alpha = alpha_of(result.data)
    assert alpha[size[1] // 2, size[0] // 2] == 255  # the square view's subject, in the photo's frame
    assert alpha[5, 5] == 0


@pytest.mark.parametrize("size", [(1600, 1200), (1200, 1600), (1000, 1000), (1300, 1000)])
def test_near_square_photos_are_seen_once_with_their_aspect(size):
    assert max(size) / min(size) < SQUARE_VIEW_FROM
    segmenter = Recording()
    Engine(segmenter, refine_edges=False).remove(png(*size), ALPHA)
    assert segmenter.seen == [segmenter.input_shape(*size)]


def test_the_second_view_can_be_turned_off():
    segmenter = Recording()
    result = Engine(segmenter, refine_edges=False, square_view_from=math.inf).remove(png(1920, 1080), ALPHA)
    assert segmenter.seen == [(1024, 576)]
    assert alpha_of(result.data).max() == 0  # the aspect-kept view alone found nothing


def test_a_small_subject_in_a_21_9_frame_is_kept(engine, grabcut):
    """grabcut50's sheep at ~3 % of a 1120x480 frame, on a flat grey-green ground with a soft
    gradient: the engine as configured keeps it (IoU against the exact truth)."""
    data, truth, _ = grabcut("sheep")
    photo = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
    subject = photo[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    mask = truth[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = math.sqrt(0.03 * 1120 * 480 / mask.sum())
    size = (round(mask.shape[1] * scale), round(mask.shape[0] * scale))
    subject = np.asarray(Image.fromarray(subject).resize(size, Image.Resampling.BILINEAR))
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
    ramp = np.linspace(0, 1, 1120, dtype=np.float32)[None, :, None]
    frame = np.round((1 - ramp) * np.array([118, 132, 104]) + ramp * np.array([150, 156, 128]))
    frame = np.repeat(frame, 480, axis=0).astype(np.uint8)
    expected = np.zeros((480, 1120), bool)
    x, y = 1120 - size[0] - 60, 480 - size[1] - 30  # far right, low: off the squashed view's centre
    frame[y : y + size[1], x : x + size[0]][mask] = subject[mask]
    expected[y : y + size[1], x : x + size[0]] = mask
    out = io.BytesIO()
    Image.fromarray(frame).save(out, "PNG")
    alpha = alpha_of(engine.remove(out.getvalue(), ALPHA).data) >= 128
    iou = np.count_nonzero(alpha & expected) / np.count_nonzero(alpha | expected)
    print(f"IoU {iou:.3f}")
    assert iou >= 0.7
