"""engine/kernels against plain numpy formulas on random data: the compiled loops do the
arithmetic the docstrings state, over exactly the pixels under the listed cells."""

import numpy as np

from engine import kernels


def bilinear_reference(field, rows, cols, scale):
    h, w = field.shape[:2]
    y = np.clip((rows + 0.5) / scale - 0.5, 0, h - 1)
    x = np.clip((cols + 0.5) / scale - 0.5, 0, w - 1)
    y0, x0 = y.astype(int), x.astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[:, None], (x - x0)[:, None]
    top = field[y0, x0] + (field[y0, x1] - field[y0, x0]) * fx
    bottom = field[y1, x0] + (field[y1, x1] - field[y1, x0]) * fx
    return top + (bottom - top) * fy


def test_apply_coefficients_matches_the_formula_on_band_pixels_only():
    rng = np.random.default_rng(1)
    scale, top, left = 3, 6, 3
    band = rng.random((20, 25)) < 0.3
    coefficients = rng.normal(0, 0.5, (20, 25, 4)).astype(np.float32)
    rgb = rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)  # the grid covers less than the picture
    out = np.full((70, 80), 7, np.uint8)
    kernels.apply_coefficients(out, rgb, coefficients, band, scale, top, left)

    cells = np.repeat(np.repeat(band, scale, 0), scale, 1)
    mask = np.zeros((70, 80), bool)
    mask[top:top + cells.shape[0], left:left + cells.shape[1]] = cells[: 70 - top, : 80 - left]
    rows, cols = np.nonzero(mask)
    k = bilinear_reference(coefficients.astype(np.float64), rows - top, cols - left, scale)
    expected = np.clip(np.floor(((k[:, :3] * rgb[rows, cols] / 255).sum(1) + k[:, 3]) * 255 + 0.5), 0, 255)
    assert np.abs(out[rows, cols].astype(int) - expected).max() <= 1  # float32 rounding at .5
    assert (out[~mask] == 7).all()


def test_unmix_colours_matches_the_formula_and_skips_clear_pixels():
    rng = np.random.default_rng(2)
    scale, separate, floor = 2, 0.3, 1e-8
    zone = rng.random((15, 15)) < 0.4
    image = rng.random((15, 15, 3)).astype(np.float32)
    fg = rng.random((15, 15, 4)).astype(np.float32)
    bg = rng.random((15, 15, 4)).astype(np.float32)
    alpha = rng.integers(0, 256, (30, 29), dtype=np.uint8)
    alpha[::5] = 0
    pixels = rng.integers(0, 256, (30, 29, 3), dtype=np.uint8)
    before = pixels.copy()
    kernels.unmix_colours(pixels, alpha, image, fg, bg, zone, scale, separate, floor)

    cells = np.repeat(np.repeat(zone, scale, 0), scale, 1)[:30, :29] & (alpha > 0)
    r, c = np.nonzero(cells)
    i, j = r // scale, c // scale
    f = (fg[i, j, :3] + floor * image[i, j]) / (fg[i, j, 3:] + floor)
    b = (bg[i, j, :3] + floor * image[i, j]) / (bg[i, j, 3:] + floor)
    a = alpha[r, c, None] / 255
    observed = before[r, c] / 255
    span = f - b
    distance = (span * span).sum(1, keepdims=True)
    implied = np.clip(((observed - b) * span).sum(1, keepdims=True) / np.maximum(distance, 1e-4), 0, 1)
    fused = f + a * (observed - a * f - (1 - a) * b)
    fused += np.clip(np.sqrt(distance) / separate, 0, 1) * (observed + (1 - implied) * span - fused)
    expected = np.floor(np.clip(fused, 0, 1) * 255 + 0.5)
    assert np.abs(pixels[r, c].astype(int) - expected).max() <= 1
    untouched = ~cells
    assert np.array_equal(pixels[untouched], before[untouched])
