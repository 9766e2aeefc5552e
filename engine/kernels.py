"""The edge steps' per-pixel loops over the uncertain band, compiled (numba).

In numpy each band pixel went through ~40 whole-array passes (gathers, a bilinear sample, the
arithmetic, a scatter, each with its temporaries): at 12 MP, ~0.5 M band pixels cost the guided
filter's application ~25 ms and the colour correction ~25 ms on two cores. One compiled loop per
step reads each pixel once and writes it once (a few ms), and walks the band by its working
cells, so no list of pixel coordinates is ever built.

Compiled once per machine and cached (numba's own cache: engine/__pycache__, or NUMBA_CACHE_DIR
where the operator sets it): a process that finds the cache loads the machine code in well under
a second. The loops release the GIL
and are split into row strips on a thread pool of ours rather than numba's `parallel=True`: its
default threading layer aborts when two server threads enter a parallel loop at once.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_POOL = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="edge") if _CORES > 1 else None


def in_strips(kernel, rows: int, *args) -> None:
    """kernel(*args, start, stop) over cell rows [0, rows), in strips on every core at once
    (four per core: the band is not spread evenly over the rows)."""
    strips = 4 * _CORES
    if _POOL is None or rows < 2 * strips:
        kernel(*args, 0, rows)
        return
    bounds = [rows * k // strips for k in range(strips + 1)]
    for done in [_POOL.submit(kernel, *args, a, b) for a, b in zip(bounds, bounds[1:])]:
        done.result()


def apply_coefficients(out: np.ndarray, rgb: np.ndarray, coefficients: np.ndarray, band: np.ndarray,
                       scale: int, top: int, left: int) -> None:
    """See _apply_coefficients; on every core."""
    in_strips(_apply_coefficients, band.shape[0], out, rgb, coefficients, band, scale, top, left)


def unmix_colours(pixels: np.ndarray, alpha: np.ndarray, image: np.ndarray, fg: np.ndarray, bg: np.ndarray,
                  zone: np.ndarray, scale: int, separate: float, floor: float) -> None:
    """See _unmix_colours; on every core."""
    in_strips(_unmix_colours, zone.shape[0], pixels, alpha, image, fg, bg, zone, scale, separate, floor)


@numba.njit(cache=True, nogil=True, inline="always")
def _neighbours(pixel: int, inv: float, cells: int) -> tuple[int, int, float]:
    """The two working cells around a full pixel's centre along one axis, and the second's weight."""
    position = min(max((pixel + 0.5) * inv - 0.5, 0.0), cells - 1.0)
    first = int(position)
    return first, min(first + 1, cells - 1), position - first


# Explicit signatures, any memory layout ("A"): one compiled version, made (or loaded from the
# cache) when this module is imported, whatever views the callers pass.
@numba.njit("void(uint8[:, :], uint8[:, :, :], float32[:, :, :], boolean[:, :], int64, int64, int64, int64, int64)",
            cache=True, nogil=True, fastmath=True)
def _apply_coefficients(
    out: np.ndarray, rgb: np.ndarray, coefficients: np.ndarray, band: np.ndarray, scale: int, top: int, left: int,
    start: int, stop: int,
) -> None:
    """out[y, x] = A · rgb[y, x] / 255 + b (as 8 bits) for every full pixel under a band cell.

    `coefficients` (h x w x 4: A, b) and `band` (h x w) are on the working grid, one cell per
    `scale` x `scale` full pixels, their cell (0, 0) at full pixel (top, left); A and b are
    sampled bilinearly at each pixel's centre (the fast guided filter). Cell rows [start, stop).
    """
    h, w = band.shape
    height, width = out.shape
    inv = 1.0 / scale
    for i in range(start, stop):
        for j in range(w):
            if not band[i, j]:
                continue
            for dy in range(scale):
                y = top + i * scale + dy
                if y >= height:
                    break
                y0, y1, wy = _neighbours(i * scale + dy, inv, h)
                for dx in range(scale):
                    x = left + j * scale + dx
                    if x >= width:
                        break
                    x0, x1, wx = _neighbours(j * scale + dx, inv, w)
                    value = 0.0
                    for k in range(4):
                        upper = coefficients[y0, x0, k] + (coefficients[y0, x1, k] - coefficients[y0, x0, k]) * wx
                        lower = coefficients[y1, x0, k] + (coefficients[y1, x1, k] - coefficients[y1, x0, k]) * wx
                        c = upper + (lower - upper) * wy
                        value += c * (rgb[y, x, k] * (1.0 / 255.0)) if k < 3 else c
                    out[y, x] = np.uint8(min(max(value * 255.0 + 0.5, 0.0), 255.0))


@numba.njit("void(uint8[:, :, :], uint8[:, :], float32[:, :, :], float32[:, :, :], float32[:, :, :], boolean[:, :],"
            " int64, float64, float64, int64, int64)", cache=True, nogil=True, fastmath=True)
def _unmix_colours(
    pixels: np.ndarray, alpha: np.ndarray, image: np.ndarray, fg: np.ndarray, bg: np.ndarray, zone: np.ndarray,
    scale: int, separate: float, floor: float, start: int, stop: int,
) -> None:
    """Recolours, in place, every visible pixel under a `zone` cell to its foreground colour.

    On the working grid: `image` (the colour, h x w x 3), `fg` and `bg` (blur fusion's weighted
    colour sums and weight sums, h x w x 4) and `zone`. Per cell, F̂ and B̂ = sum / weight (the
    cell's own colour where a window holds no weight: `floor`); they are blurred over many cells,
    so each pixel takes its own cell's. Per pixel: blur fusion's correction
    F̂ + a·(I - a·F̂ - (1 - a)·B̂), blended towards the photo un-mixed by the alpha its colour
    implies between B̂ and F̂, as far as the two colours are `separate` apart (engine/foreground
    explains both). Cell rows [start, stop).
    """
    h, w = zone.shape
    height, width = alpha.shape
    for i in range(start, stop):
        for j in range(w):
            if not zone[i, j]:
                continue
            fw = 1.0 / (fg[i, j, 3] + floor)
            bw = 1.0 / (bg[i, j, 3] + floor)
            f0 = (fg[i, j, 0] + floor * image[i, j, 0]) * fw
            f1 = (fg[i, j, 1] + floor * image[i, j, 1]) * fw
            f2 = (fg[i, j, 2] + floor * image[i, j, 2]) * fw
            b0 = (bg[i, j, 0] + floor * image[i, j, 0]) * bw
            b1 = (bg[i, j, 1] + floor * image[i, j, 1]) * bw
            b2 = (bg[i, j, 2] + floor * image[i, j, 2]) * bw
            s0, s1, s2 = f0 - b0, f1 - b1, f2 - b2
            distance = s0 * s0 + s1 * s1 + s2 * s2
            trust = min(max(np.sqrt(distance) / separate, 0.0), 1.0)
            inverse = 1.0 / max(distance, 1e-4)
            for y in range(i * scale, min((i + 1) * scale, height)):
                for x in range(j * scale, min((j + 1) * scale, width)):
                    if alpha[y, x] == 0:
                        continue
                    a = alpha[y, x] * (1.0 / 255.0)
                    i0 = pixels[y, x, 0] * (1.0 / 255.0)
                    i1 = pixels[y, x, 1] * (1.0 / 255.0)
                    i2 = pixels[y, x, 2] * (1.0 / 255.0)
                    implied = min(max(((i0 - b0) * s0 + (i1 - b1) * s1 + (i2 - b2) * s2) * inverse, 0.0), 1.0)
                    for k in range(3):
                        observed = i0 if k == 0 else (i1 if k == 1 else i2)
                        f = f0 if k == 0 else (f1 if k == 1 else f2)
                        b = b0 if k == 0 else (b1 if k == 1 else b2)
                        fused = f + a * (observed - a * f - (1.0 - a) * b)
                        unmixed = observed + (1.0 - implied) * (f - b)
                        fused += trust * (unmixed - fused)
                        pixels[y, x, k] = np.uint8(min(max(fused, 0.0), 1.0) * 255.0 + 0.5)


@numba.njit("void(uint8[:, :], float32[:, :], float32[:, :, :], float32[:, :], float32[:, :],"
            " float64, float64, float64, float64)", cache=True, nogil=True, fastmath=True)
def blend_texture(out: np.ndarray, alpha: np.ndarray, sums: np.ndarray, unsure: np.ndarray, blurred: np.ndarray,
                  top: float, floor: float, inv_unsure: float, mid_from: float) -> None:
    """refine.smooth_texture's per-pixel step, in place on `out` (uint8, same shape as the rest):
    alpha moved towards `blurred` by the product of three weights. `sums` holds the windowed
    gradient energy, x and y gradients and mid-grey share. Coherence = |summed gradient|² /
    energy, weight 1 at or under 0.4·top, 0 from `top` (none where energy <= floor). Unsure: the
    windowed share of unsure net pixels, min(share · inv_unsure, 1). Mid: the mid-grey share, 0
    up to `mid_from`, 1 from 0.4 above it. One pass: the numpy version's dozen whole-array
    passes cost ~0.1 s at 12 MP."""
    height, width = out.shape
    spread = 1.0 / (0.6 * top)
    for y in range(height):
        for x in range(width):
            energy = sums[y, x, 0]
            mid = sums[y, x, 3]
            if energy <= floor or unsure[y, x] <= 0.0 or mid <= mid_from:
                continue
            coherence = (sums[y, x, 1] * sums[y, x, 1] + sums[y, x, 2] * sums[y, x, 2]) / energy
            weight = (min(max((top - coherence) * spread, 0.0), 1.0) * min(unsure[y, x] * inv_unsure, 1.0)
                      * min((mid - mid_from) * 2.5, 1.0))
            if weight > 0.0:
                value = alpha[y, x] + (blurred[y, x] - alpha[y, x]) * weight
                out[y, x] = np.uint8(min(max(value * 255.0 + 0.5, 0.0), 255.0))
