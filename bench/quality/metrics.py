"""Matte quality metrics, each on a predicted and a true alpha in [0, 1] (float arrays, H x W).

`valid` (bool, same shape; None = every pixel) leaves pixels out of scoring: grabcut50's
unlabelled boundary band. The definitions follow the published evaluation code so the figures
can be read next to papers:

- IoU at 0.5: both mattes cut at alpha >= 0.5.
- MAE, MSE: per-pixel mean absolute / squared alpha error.
- SAD: the sum of absolute alpha errors, in thousands (the matting literature's unit).
- Gradient error: alphamatting.com / Rhemann et al. (and the Deep Image Matting port): gradient
  magnitude through first-derivative-of-Gaussian filters, sigma 1.4, kernel normalised to unit
  energy, replicated borders; the squared difference of magnitudes summed, in thousands.
- Boundary F: DAVIS's `f_measure` (after BSDS): one-pixel boundary maps of the two binary masks,
  each matched to the other within a disk of 0.8 % of the image diagonal. It scores every pixel:
  grabcut50's unlabelled band is 1-3 px wide, well inside that tolerance.

Only numpy: the service's venv has no scipy, and these filters are a few lines each.
"""

from __future__ import annotations

import math

import numpy as np

GRADIENT_SIGMA = 1.4
BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal, as DAVIS


def _masked(values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return values if valid is None else values[valid]


def _check(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in size")


def iou(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None, threshold: float = 0.5) -> float:
    """Intersection over union of the two masks cut at `threshold`; 1.0 when both are empty."""
    _check(pred, truth)
    p = _masked(pred >= threshold, valid)
    t = _masked(truth >= threshold, valid)
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def mae(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    _check(pred, truth)
    return float(np.mean(np.abs(_masked(pred - truth, valid))))


def mse(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    _check(pred, truth)
    return float(np.mean(np.square(_masked(pred - truth, valid))))


def sad(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Sum of absolute differences, in thousands."""
    _check(pred, truth)
    return float(np.sum(np.abs(_masked(pred - truth, valid)))) / 1000.0


def gaussian_derivative_kernels(sigma: float = GRADIENT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) kernels of the matting code's `gaussgradient`: G(y)·G'(x), unit energy."""
    epsilon = 1e-2
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dgauss = -u * gauss / sigma**2
    hx = np.outer(gauss, dgauss)  # rows: y (smoothing), columns: x (derivative)
    hx /= math.sqrt(float(np.sum(hx * hx)))
    return hx, hx.T


def convolve_replicate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D convolution (kernel flipped, as MATLAB's imfilter 'conv') with replicated borders."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(image.astype(np.float64), ((ph, ph), (pw, pw)), mode="edge")
    flipped = kernel[::-1, ::-1]
    h, w = image.shape
    out = np.zeros((h, w), dtype=np.float64)
    for dy in range(kh):
        for dx in range(kw):
            weight = flipped[dy, dx]
            if weight != 0.0:
                out += weight * padded[dy : dy + h, dx : dx + w]
    return out


def gradient_magnitude(alpha: np.ndarray, sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    hx, hy = gaussian_derivative_kernels(sigma)
    return np.hypot(convolve_replicate(alpha, hx), convolve_replicate(alpha, hy))


def gradient_error(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None,
                   sigma: float = GRADIENT_SIGMA) -> float:
    """Summed squared difference of Gaussian-gradient magnitudes, in thousands."""
    _check(pred, truth)
    diff = gradient_magnitude(pred, sigma) - gradient_magnitude(truth, sigma)
    return float(np.sum(_masked(diff * diff, valid))) / 1000.0


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask, as DAVIS's `seg2bmap` at the mask's own size: a pixel
    is on the boundary when its right, lower or lower-right neighbour differs."""
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    edges = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    edges[-1, :] = seg[-1, :] ^ east[-1, :]
    edges[:, -1] = seg[:, -1] ^ south[:, -1]
    edges[-1, -1] = False
    return edges


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk (x² + y² <= r², as skimage's `disk`)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros((h, w), dtype=bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def boundary_tolerance_px(shape: tuple[int, ...], tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """DAVIS: a fraction of the diagonal, rounded up; a value >= 1 is taken as pixels."""
    return int(tolerance) if tolerance >= 1 else math.ceil(tolerance * math.hypot(shape[0], shape[1]))


def boundary_f(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5,
               tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """Boundary F-measure of the masks cut at `threshold` (DAVIS `db_eval_boundary`)."""
    _check(pred, truth)
    radius = boundary_tolerance_px(pred.shape, tolerance)
    pred_edges = boundary_map(pred >= threshold)
    truth_edges = boundary_map(truth >= threshold)
    n_pred, n_truth = np.count_nonzero(pred_edges), np.count_nonzero(truth_edges)
    if n_pred == 0 and n_truth == 0:
        return 1.0
    if n_pred == 0 or n_truth == 0:
        return 0.0
    precision = np.count_nonzero(pred_edges & dilate_disk(truth_edges, radius)) / n_pred
    recall = np.count_nonzero(truth_edges & dilate_disk(pred_edges, radius)) / n_truth
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


# name -> (function, higher is better, how the table shows it)
METRICS = {
    "IoU": (lambda p, t, v: iou(p, t, v), True, "IoU at 0.5"),
    "MAE": (lambda p, t, v: mae(p, t, v), False, "mean |alpha error|, alpha in [0, 1]"),
    "SAD": (lambda p, t, v: sad(p, t, v), False, "sum of |alpha error|, thousands"),
    "MSE": (lambda p, t, v: mse(p, t, v) * 1000.0, False, "mean squared alpha error, x10^-3"),
    "Grad": (lambda p, t, v: gradient_error(p, t, v), False, "gradient error (sigma 1.4), thousands"),
    "BF": (lambda p, t, v: boundary_f(p, t), True, "boundary F, tolerance 0.8 % of the diagonal"),
}


def score(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of METRICS for one image."""
    return {name: float(fn(pred, truth, valid)) for name, (fn, _, _) in METRICS.items()}
