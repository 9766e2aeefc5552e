"""The foreground's own colour under soft alpha, so no background colour or darkness bleeds into
the edge (issue 5).

A photo's edge pixel is a mix I = a·F + (1 - a)·B of the subject's colour F and the background's
B; a cut-out that keeps I shows the old background in every strand of hair. This recovers F by
blur fusion (after Forte & Pitié 2021, "Approximate Fast Foreground Colour Estimation"): local
means F̂, B̂ of the pure foreground and background colours, then per pixel the correction
F̂ + a·(I - a·F̂ - (1 - a)·B̂), blended with the photo un-mixed by the alpha its own colour
implies between B̂ and F̂ (robust where the net's alpha is wrong).

The means are taken on the alpha's bounded working grid (engine/refine) and the correction is
applied at full resolution near the soft pixels only, so the cost stays bounded on a 12 MP photo.
Plugs into Engine(estimate_foreground=...) (compose.ForegroundEstimator).
"""

from __future__ import annotations

import cv2
import numpy as np

from engine import kernels
from engine.refine import _boxes, box_reduce, grow, work_scale, working_colour

# One blur-fusion pass, its radius a fraction of the working image's longer side, means weighted
# by alpha**_POWER and (1 - alpha)**_POWER rather than alpha: nearly pure pixels then outweigh the
# many mixed ones of a hair band, and the net's alpha, often too high over thin strands, does not
# drag background colour into F̂. Forte & Pitié's second, narrow pass averages the corrected
# colours, which carry that alpha's errors: without it, and with power 16 rather than 1, the
# synthetic colour check (bench/quality/synthetic.py) went 36.5 -> 7.4 levels with the true alpha
# and, black on white with the pipeline's alpha, 68.3 -> 40.1.
_WIDE = 0.1
_POWER = 16
_FLOOR = np.float32(1e-8)
# A weight this small counts for nothing beside _FLOOR even summed over a whole window.
_NEGLIGIBLE = 1e-20
# Opaque pixels this many working pixels from a soft one are un-mixed too.
_ZONE = 3
# Foreground and background colours this far apart (RGB in [0, 1]) are fully trusted to un-mix.
_SEPARATE = 0.3


def _power(x: np.ndarray) -> np.ndarray:
    """x**_POWER by repeated squaring (numpy's float power is ~10x slower than four products),
    weights under _NEGLIGIBLE set to 0: 0.004**16 is a denormal float, and arithmetic on those
    runs many times slower (blur fusion at 12 MP: 30 ms instead of 5, by what the thread's
    floating-point flags happened to be)."""
    assert _POWER & (_POWER - 1) == 0, "_POWER must be a power of two"
    out = x * x
    for _ in range(_POWER.bit_length() - 2):
        np.multiply(out, out, out=out)
    return cv2.threshold(out, _NEGLIGIBLE, 0, cv2.THRESH_TOZERO)[1]


def blur_fusion(image: np.ndarray, alpha: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Local sums for the smooth foreground and background colour fields F̂, B̂ (HxWx4 float32
    each: the weighted colour sums, then the weights' sum), colour weighted by alpha**_POWER for
    F̂ and by (1 - alpha)**_POWER for B̂; F = F̂ + a·(I - a·F̂ - (1 - a)·B̂) at any pixel.

    The division F̂ = sum / weight runs per visited cell in engine/kernels, where a window with
    (almost) no weight takes the cell's own colour (a weight of _FLOOR on it): no colour made up
    from nothing.
    """
    weighted = []
    for weight in (_power(alpha), _power(1 - alpha)):
        # [colour x weight, weight] in OpenCV's channel passes (numpy's strided writes: 7x slower).
        both = cv2.cvtColor(cv2.multiply(image, cv2.cvtColor(weight, cv2.COLOR_GRAY2RGB)), cv2.COLOR_RGB2RGBA)
        both[..., 3] = weight
        weighted.append(both)
    fg, bg = _boxes(weighted, radius)
    return fg, bg


def estimate_foreground(pixels: np.ndarray, alpha: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
    """uint8 HxWx3 canvas + its uint8 alpha -> the canvas with soft pixels recoloured to the
    foreground's estimated colour (opaque and fully transparent pixels keep the photo's own).

    The array is recoloured in place and returned (the caller's colour is the result). `guide`:
    refine.working_colour(pixels), if the caller has it. The means are taken on the alpha's
    working grid: on a 640² photo a 2x coarser grid doubled the colour check's error (9.6 ->
    19.5 levels).
    """
    height, width = alpha.shape
    scale = work_scale(width, height)
    image = working_colour(pixels) if guide is None else guide
    matte = box_reduce(alpha, scale)
    soft = (matte > 0) & (matte < 1)
    if not soft.any():
        return pixels
    longest = max(image.shape[:2])
    fg, bg = blur_fusion(image, matte, max(2, round(_WIDE * longest)))
    # The soft pixels, and the opaque ones next to them (the net's alpha is often 1 over the
    # inner part of a strand that still shows the background): found within the working cells
    # at most _ZONE away from a soft one, walked cell by cell (no full-size mask).
    zone = grow(soft, _ZONE if scale == 1 else 1)
    kernels.unmix_colours(pixels, np.ascontiguousarray(alpha), image, fg, bg, zone, scale, _SEPARATE, _FLOOR)
    return pixels
