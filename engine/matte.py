"""From the net's small matte to 8-bit alpha at any output size, and the foreground box.

The matte is resampled in float32 straight from the net's resolution to the requested pixels
(one resampling, no 8-bit staircase), in horizontal strips so a 50 MP output never holds a
50 MP float array.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from engine.types import Box

# "Foreground" for the box and for crop: alpha above ~5 %, so a faint halo does not widen it.
FOREGROUND_THRESHOLD = 12
_STRIP_ROWS = 256


def upsample(
    matte: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """float32 HxW matte in [0, 1] -> uint8 alpha of `size` (w, h).

    `box` (x0, y0, x1, y1, in matte pixels, fractional allowed) selects the part of the matte
    that fills the output, as Pillow's `resize(box=...)`; the filter still reads the pixels just
    outside it, so pieces rendered separately join without a seam.
    """
    width, height = size
    alpha = np.empty((height, width), dtype=np.uint8)
    if width == 0 or height == 0:
        return alpha
    matte = np.ascontiguousarray(matte, dtype=np.float32)
    whole = (0.0, 0.0, float(matte.shape[1]), float(matte.shape[0]))
    if (box is None or tuple(map(float, box)) == whole) and width >= matte.shape[1] and height >= matte.shape[0]:
        # The common case, the whole matte enlarged: OpenCV's bilinear (the same half-pixel
        # centres as Pillow's when enlarging, float weights) is ~8x faster at 12 MP. The float
        # picture is one temporary of 4 bytes a pixel; the strips below avoid it for the rest.
        values = cv2.resize(matte, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.convertScaleAbs(values, alpha, 255.0)
    source = Image.fromarray(matte, "F")
    x0, y0, x1, y1 = box if box is not None else whole
    rows_per_px = (y1 - y0) / height
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(height, top + _STRIP_ROWS)
        strip = source.resize(
            (width, bottom - top),
            Image.Resampling.BILINEAR,
            box=(x0, y0 + top * rows_per_px, x1, y0 + bottom * rows_per_px),
        )
        values = np.asarray(strip, dtype=np.float32)
        values = values * np.float32(255.0) + np.float32(0.5)
        np.clip(values, 0.0, 255.0, out=values)
        alpha[top:bottom] = values.astype(np.uint8)
    return alpha


def foreground_box(alpha: np.ndarray, threshold: int = FOREGROUND_THRESHOLD) -> Box:
    """Bounding box of alpha above `threshold`; an empty matte gives a 0-size box at the origin."""
    rows = np.flatnonzero((alpha > threshold).any(axis=1))
    if rows.size == 0:
        return Box(top=0, left=0, width=0, height=0)
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero((alpha[top:bottom] > threshold).any(axis=0))
    left, right = int(cols[0]), int(cols[-1]) + 1
    return Box(top=top, left=left, width=right - left, height=bottom - top)


def coarse_box(matte: np.ndarray, threshold: int = FOREGROUND_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) in matte pixels holding every pixel that can exceed `threshold` once resampled.

    Bilinear resampling mixes neighbours with non-negative weights, so a resampled pixel above
    the threshold always has a matte pixel above it close by; the caller pads by the filter's
    reach. None when nothing is foreground.
    """
    box = foreground_box(matte * np.float32(255.0), threshold)
    if box.width == 0:
        return None
    return box.left, box.top, box.left + box.width, box.top + box.height


# A region of a view's matte above this level is one candidate subject (as clean_matte's blobs).
_JOIN_LEVEL = 0.1
# A hole is clear when the view's mean matte over it is under this. Swept on the tuned part
# (bench/quality/tune.py, Engine(clear_hole_under=...)).
CLEAR_HOLE = 0.1


def join_views(kept: np.ndarray, second: np.ndarray, how: str, sure: float = 0.0,
               clear_under: float = CLEAR_HOLE) -> np.ndarray:
    """The aspect-kept view's matte joined with a further view's (the squashed square, a tile),
    both float32 HxW in [0, 1] on the same grid; returns a new array.

    "max": per pixel, the larger. "max-open": the same, but where a view sees clear through the
    subject (a hole it encloses, clear_holes) the hole stays as that view has it: a gap under a
    car's wing that one view fills must not be filled by the max. "components": the kept matte,
    plus each region of the second that the kept one has no solid part of (a subject only the
    second view found), taken whole; where both found the subject the kept view's edge stays
    (the squashed view's is resampled unevenly, and its max fattened edges). With `sure`, such a
    region comes only when at least that share of it is >= 0.9 (over a pile of texture the net
    finds grey mush). `clear_under`: max-open's clear-hole level (clear_holes).
    """
    if how == "max":
        return np.maximum(kept, second)
    if how == "max-open":
        out = np.maximum(kept, second)
        for view in (kept, second):
            for window, mine in clear_holes(view, clear_under):
                out[window][mine] = view[window][mine]
        return out
    if how != "components":
        raise ValueError(f"unknown join {how!r}")
    count, blobs = cv2.connectedComponents((second > _JOIN_LEVEL).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    out = kept.copy()
    if count <= 1:
        return out
    overlap = np.bincount(blobs[kept >= 0.5], minlength=count)
    new = overlap == 0
    if sure > 0:
        new &= np.bincount(blobs[second >= 0.9], minlength=count) >= sure * np.bincount(blobs.ravel(), minlength=count)
    new[0] = False
    if new.any():
        where = new[blobs]
        out[where] = np.maximum(kept[where], second[where])
    return out


Hole = tuple[tuple[slice, slice], np.ndarray]  # a window of the grid, and the hole's pixels in it

# Up to this many holes each comes as its own window (a few holes cost their own area); beyond it,
# all as one mask over the grid: a mesh (alphamatting's GT25: ~800 holes) or a speckled matte
# would pay more in per-hole work than one pass over the grid costs.
_WINDOWED = 256


def holes_of(solid: np.ndarray, smaller_than: float = math.inf, values: np.ndarray | None = None,
             mean_from: float = -math.inf, mean_under: float = math.inf) -> list[Hole]:
    """The holes of `solid` (bool HxW): regions outside it, 4-connected (the dual of an
    8-connected subject), enclosed (not touching the frame's border), with fewer than
    `smaller_than` pixels and, given `values` (HxW), a mean of them in [mean_from, mean_under).
    Up to _WINDOWED of them each as its bounding window and its pixels there; more, as one window
    over the grid holding all of them."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (~solid).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    x, y, w, h, area = (stats[:, i] for i in range(5))
    enclosed = (x > 0) & (y > 0) & (x + w < solid.shape[1]) & (y + h < solid.shape[0]) & (area < smaller_than)
    enclosed[0] = False  # label 0 is `solid` itself
    ids = np.flatnonzero(enclosed)
    if ids.size > _WINDOWED:
        if values is not None:
            means = np.bincount(labels.ravel(), weights=values.ravel(), minlength=count)[ids] / area[ids]
            ids = ids[(means >= mean_from) & (means < mean_under)]
        if ids.size > _WINDOWED:
            chosen = np.zeros(count, dtype=bool)
            chosen[ids] = True
            return [((slice(None), slice(None)), chosen[labels])]
    holes = []
    for k in ids:
        window = (slice(y[k], y[k] + h[k]), slice(x[k], x[k] + w[k]))
        mine = labels[window] == k
        if values is None or mean_from <= values[window][mine].mean() < mean_under:
            holes.append((window, mine))
    return holes


def clear_holes(matte: np.ndarray, under: float = CLEAR_HOLE) -> list[Hole]:
    """Where the matte sees through the subject: its holes (holes_of its solid part, >= 0.5)
    whose mean matte is under `under`."""
    return holes_of(matte >= 0.5, values=matte, mean_under=under)


def views_agreement(kept: np.ndarray, second: np.ndarray) -> float:
    """IoU of two views' solid areas (>= 0.5) on the same grid; 1.0 when neither has any (that
    both found nothing is the found-nothing rule's case)."""
    a, b = kept >= 0.5, second >= 0.5
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def drop_small_additions(kept: np.ndarray, joined: np.ndarray, fraction: float) -> np.ndarray:
    """`joined` (join_views of `kept` and further views) without the regions that only the further
    views found (no solid part in `kept`) and whose solid area is under `fraction` of the frame:
    a tile sees a crack or a pebble as a subject of its own. Returns `joined` when nothing goes."""
    if fraction <= 0:
        return joined
    count, blobs = cv2.connectedComponents((joined > _JOIN_LEVEL).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if count <= 1:
        return joined
    overlap = np.bincount(blobs[kept >= 0.5], minlength=count)
    solid = np.bincount(blobs[joined >= 0.5], minlength=count)
    drop = (overlap == 0) & (solid < fraction * joined.size)
    drop[0] = False
    if not drop.any():
        return joined
    where = drop[blobs]
    out = joined.copy()
    out[where] = kept[where]
    return out


# The net found something when some of its matte reaches this (as a candidate subject above).
FOUND_LEVEL = _JOIN_LEVEL


def stretch_found(matte: np.ndarray) -> np.ndarray:
    """The matte scaled from its minimum to its maximum, as IS-Net's own postprocess (and rembg's)
    does for every matte; `matte` itself when nothing in it reaches FOUND_LEVEL (noise over a
    background, not a find). For an answer that would otherwise be empty."""
    top = float(matte.max())
    if top < FOUND_LEVEL:
        return matte
    low = float(matte.min())
    return (matte - low) * np.float32(1.0 / (top - low))
