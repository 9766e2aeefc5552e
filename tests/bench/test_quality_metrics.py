"""The quality benchmark's metrics on tiny arrays whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality import metrics


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.float32)
    mask[top : top + side, left : left + side] = 1.0
    return mask


def test_iou_of_two_overlapping_squares():
    # 4x4 squares offset by (2, 2): intersection 2x2 = 4, union 16 + 16 - 4 = 28.
    assert metrics.iou(square(10, 0, 0, 4), square(10, 2, 2, 4)) == pytest.approx(4 / 28)


def test_iou_leaves_out_invalid_pixels():
    valid = np.ones((10, 10), dtype=bool)
    valid[:2, :] = False  # pred keeps rows 2-3 (8 px), truth 16 px, overlap 4: 4 / 20
    assert metrics.iou(square(10, 0, 0, 4), square(10, 2, 2, 4), valid) == pytest.approx(0.2)


def test_iou_cuts_at_one_half_and_counts_empty_as_perfect():
    truth = np.array([[1.0, 1.0, 0.0, 0.0]])
    assert metrics.iou(np.array([[0.5, 0.49, 0.0, 0.0]]), truth) == pytest.approx(0.5)
    assert metrics.iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_sad_mae_mse_of_known_differences():
    truth = np.zeros((10, 10), dtype=np.float32)
    truth[0, :3] = 1.0  # 3 pixels off by 1
    truth[1, :4] = 0.5  # 4 pixels off by 0.5
    pred = np.zeros_like(truth)
    assert metrics.sad(pred, truth) == pytest.approx(5 / 1000)  # thousands
    assert metrics.mae(pred, truth) == pytest.approx(5 / 100)
    assert metrics.mse(pred, truth) == pytest.approx((3 * 1.0 + 4 * 0.25) / 100)
    valid = np.ones_like(truth, dtype=bool)
    valid[0, 0] = False
    assert metrics.sad(pred, truth, valid) == pytest.approx(4 / 1000)
    assert metrics.mae(pred, truth, valid) == pytest.approx(4 / 99)


def test_metrics_refuse_mattes_of_different_sizes():
    with pytest.raises(ValueError):
        metrics.mae(np.zeros((2, 2)), np.zeros((2, 3)))


def test_gradient_kernel_matches_the_matting_code():
    hx, hy = metrics.gaussian_derivative_kernels(1.4)
    # halfsize = ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01))) = ceil(1.4 * 2.588) = 4
    assert hx.shape == (9, 9)
    assert np.sum(hx * hx) == pytest.approx(1.0)
    assert np.allclose(hx, -hx[:, ::-1]) and np.allclose(hx, hx[::-1, :])  # odd in x, even in y
    assert np.array_equal(hy, hx.T)


def _ramp_response(sigma: float, slope: float) -> float:
    """Gradient magnitude of f(x) = slope * x through the 9x9 kernel, from its definition by
    scalar loops: conv(f)(x) = -sum_k k * H(k) * slope, H(k) the kernel's column sums."""
    half = 4
    g = [math.exp(-u * u / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi)) for u in range(-half, half + 1)]
    dg = [-u * g[i] / sigma**2 for i, u in enumerate(range(-half, half + 1))]
    norm = math.sqrt(sum((g[i] * dg[j]) ** 2 for i in range(9) for j in range(9)))
    column = [sum(g) * dg[j] / norm for j in range(9)]
    return abs(-sum(k * column[j] for j, k in enumerate(range(-half, half + 1))) * slope)


def test_gradient_error_of_a_ramp_against_flat():
    size, slope = 30, 0.02
    ramp = np.tile(np.arange(size, dtype=np.float64) * slope, (size, 1))
    valid = np.zeros((size, size), dtype=bool)
    valid[5:-5, 5:-5] = True  # away from the replicated borders
    expected = valid.sum() * _ramp_response(1.4, slope) ** 2 / 1000
    assert metrics.gradient_error(np.zeros_like(ramp), ramp, valid) == pytest.approx(expected, rel=1e-9)
    # Orientation does not matter, and identical mattes score zero.
    assert metrics.gradient_error(np.zeros_like(ramp), ramp.T, valid.T) == pytest.approx(expected, rel=1e-9)
    assert metrics.gradient_error(ramp, ramp) == 0.0


def test_boundary_map_of_a_square():
    # DAVIS's seg2bmap: a 4x4 square at (3, 3) in 10x10 marks the outside column and row just
    # above/left of it (5 + 5 - 1 = 9 px) and its own right column and bottom row (4 + 4 - 1 = 7).
    edges = metrics.boundary_map(square(10, 3, 3, 4) > 0)
    assert edges.sum() == 16
    assert edges[2, 2:7].all() and edges[2:7, 2].all() and edges[3:7, 6].all() and edges[6, 3:7].all()


def test_boundary_f_identical_shifted_and_partly_matched():
    half = np.zeros((10, 20), dtype=np.float32)
    half[:, :10] = 1.0  # boundary: column 9
    assert metrics.boundary_f(half, half) == 1.0
    shifted = np.zeros_like(half)
    shifted[:, :13] = 1.0  # boundary: column 12, 3 px away
    assert metrics.boundary_f(shifted, half, tolerance=3) == 1.0
    assert metrics.boundary_f(shifted, half, tolerance=2) == 0.0
    # Top half shifted by 3: pred edges 13 (column 12 rows 0-4, row 4 columns 9-11, column 9
    # rows 5-9), 7 within 1 px of the truth; truth edges 10, 7 within 1 px: F = 98 / 161.
    step = half.copy()
    step[:5, :13] = 1.0
    assert metrics.boundary_f(step, half, tolerance=1) == pytest.approx(98 / 161)
    assert metrics.boundary_f(np.zeros_like(half), half) == 0.0
    assert metrics.boundary_f(np.zeros_like(half), np.zeros_like(half)) == 1.0


def test_boundary_tolerance_is_a_fraction_of_the_diagonal():
    assert metrics.boundary_tolerance_px((480, 640)) == 7  # ceil(0.008 * 800)
    assert metrics.boundary_tolerance_px((480, 640), 3) == 3


def test_score_has_every_metric():
    truth = square(12, 2, 2, 6)
    perfect = metrics.score(truth, truth)
    assert perfect == {"IoU": 1.0, "MAE": 0.0, "SAD": 0.0, "MSE": 0.0, "Grad": 0.0, "BF": 1.0}
    worse = metrics.score(square(12, 4, 4, 6), truth)
    assert worse["IoU"] < 1.0 and worse["MAE"] > 0.0 and worse["BF"] < 1.0
