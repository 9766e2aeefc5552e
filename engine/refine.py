"""Edge work on the net's matte (issue 5): specks and pinholes out, edges refined at output size.

The net sees the photo at about 1 MP (long side 1024), so at the output's resolution its matte is a blurred, upsampled
guess along every edge. Two steps, each kept because it measured better on bench/quality:

- `clean_matte`, at the net's resolution (cost independent of the photo): drops small blobs
  that are far smaller than the subject and fills small pinholes inside it, by connected
  components on the thresholded matte, so thin structures (a strand, a cable) that touch the
  subject or are long enough stay whole (a morphological opening would eat them).
- `refine_alpha`, at the output's resolution: a colour guided filter (He et al.) with the photo
  as guide moves the net's soft edge onto the photo's own edges, after a contrast curve (its low
  end lifted where the net's own edge is narrow: hair and fur keep the outward lean, a hard edge
  does not). The filter's coefficients are computed at a bounded working resolution
  (`WORK_PIXELS`) and applied only on the uncertain band at full resolution (He's "fast guided
  filter"), so a 12 MP photo costs about what a 1 MP one does plus the band. Then, where the
  refined alpha is a texture rather than an edge (its gradients cancel out) and the net was
  unsure, a small blur (`smooth_texture`): strands the net half found come out as the photo's
  pattern, whose gradients the truth's strands do not have.

Everything is float32; the only full-size arrays are the uint8 alpha and the photo's pixels.
Filters, lookups and connected components are OpenCV's: its box filter is ~8x faster than
scipy.ndimage's on these grids and uses every core by itself; with the per-cell solve only near
the band, the guided filters at 12 MP went from ~52 to ~17 ms. The per-pixel application is a
compiled loop (engine/kernels).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from engine import kernels
from engine.matte import holes_of

# The guided filter's coefficients are computed on at most about this many pixels.
WORK_PIXELS = 500_000
# Band: work pixels whose alpha is strictly between these (8-bit levels), grown by the filter's reach.
_BAND_LOW, _BAND_HIGH = 2, 253
# How far (net pixels, at most) the refined edge can reach beyond the net's own soft edge: the
# band's reach plus the wide filter's window, at the coarsest working scale the net's matte maps to.
# The band grows by up to ceil(reach / scale) * scale output pixels (9 at EdgeStyle.reach 7).
REACH = 10


@dataclass(frozen=True)
class EdgeStyle:
    """How the edge is treated.

    low, high: the contrast curve on the net's alpha (<= low -> 0, >= high -> 1, linear
    between): the net leaves grey where it hesitates (a petal at 0.8, a shadow at 0.05); a
    narrower interval is a crisper edge. Then two guided filters (radius in working pixels, eps
    the regularisation: smaller follows the photo's colour edges more closely): a small one for
    crisp edges and a wide one for hair and fur, blended per pixel by how much of the
    neighbourhood (`reach` working pixels) the net left soft: `wide_at` soft means all wide.

    narrow_lift: where the net's own edge is narrow, the curve's low end is raised by this (0:
    one curve everywhere). The low end leans the edge outwards, which fur and hair need and a hard
    edge (a pasted subject, a product) does not. Narrow: under `narrow_under` of the
    neighbourhood (`reach`) mid-grey (curved alpha 0.1-0.9); over `wide_over`, the curve as is;
    linear between.

    texture_blur: after the filters, the result blurred by this (Gaussian sigma, output pixels; 0:
    never) where its gradients cancel out (texture, not an edge) and the net was unsure
    (smooth_texture): the colour filters copy the photo's texture into strands and fur the net
    only half found, a grey pattern unlike the strands' own. `texture_window`: the radius (output pixels) of
    the square over which gradients are summed; `texture_coherent`: at most this share of the gradients' energy
    surviving their sum is texture (all blurred at 0.4 of it, linear between);
    `texture_unsure`: the share of net pixels between 0.1 and 0.9 around a pixel from which it
    counts as unsure (linear from 0); `texture_mid`: the share of the window's refined alpha
    between 0.05 and 0.95 from which it is blurred at all (fully 0.4 above it): a crisp edge, or
    a narrow gap between two, also cancels out but is mostly 0 and 1.
    """

    low: float
    high: float
    small: int = 2
    wide: int = 30
    eps: float = 5e-5
    reach: int = 7
    wide_at: float = 0.5
    narrow_lift: float = 0.0
    narrow_under: float = 0.4
    wide_over: float = 0.8
    texture_blur: float = 0.0
    texture_window: int = 3
    texture_coherent: float = 0.5
    texture_unsure: float = 0.6
    texture_mid: float = 0.4


# One style for every subject, so the edge work need not wait for X-Type; swept on the tuned half
# only (bench-results/tune.md). README "Quality" keeps the earlier settings and their figures.
STYLE = EdgeStyle(low=0.08, high=0.75, small=2, eps=2e-4, wide=42, reach=5, wide_at=0.8,
                  narrow_lift=0.17, narrow_under=0.3, wide_over=1.0, texture_blur=2.0, texture_mid=0.6)

# Gradient energy (per output pixel², alpha in 0..1) under which a pixel has no texture to judge.
_TEXTURE_ENERGY = 1e-5
# Net levels (8 bits) strictly between which the net counts as unsure: 0.1 and 0.9.
_UNSURE_LOW, _UNSURE_HIGH = 25, 230
# Refined alpha strictly between these is mid-grey (texture_mid counts it).
_MID_LOW, _MID_HIGH = 0.05, 0.95
# How far (output pixels) around a pixel the net's unsure pixels are counted.
_UNSURE_REACH = 5


def texture_reach(style: EdgeStyle) -> int:
    """How far (output pixels) smooth_texture's result depends on the alpha and the net around a
    pixel: the unsure count's reach, the gradient windows (+1 for Sobel), the blur's 4 sigmas
    (OpenCV's float Gaussian)."""
    if not style.texture_blur:
        return 0
    return max(style.texture_window + 1, _UNSURE_REACH, math.ceil(4 * style.texture_blur))


# How far (working pixels) a refined value depends on the colour and alpha around it: the wide
# filter's window twice (its coefficients are averaged over a window again), the blend's reach
# and the texture blur's (output pixels, never more than working ones). A part refined with this
# much around it matches the whole picture refined there (the pipeline finds a crop's subject
# box that way).
def context(style: EdgeStyle) -> int:
    return 2 * style.wide + style.reach + texture_reach(style)


CONTEXT = context(STYLE)


# -- cleaning -------------------------------------------------------------------------------------

# A blob is a connected region of matte > _BLOB_LEVEL; its "solid" area counts matte >= 0.5.
_BLOB_LEVEL = 0.1


# A blob holding at least this share of the frame stays, however large the largest one: a small
# subject in a wide frame (a car far off, 0.1-1 % of the frame) beside a large false one must
# not be cleared as a speck of it (issue 15). 0.05 % is ~300 net pixels at 1024x576.
KEEP_FRACTION = 0.0005


# A small hole is filled only where the net hesitated over it (its mean matte there at least
# this): a pinhole in a solid subject comes grey, the see-through of a mesh or between a plant's
# leaves comes near 0 and stays open. Swept on the tuned part (bench/quality/tune.py); 0: every
# small hole.
HOLE_FILL_OVER = 0.4


def clean_matte(
    matte: np.ndarray, speck_fraction: float = 0.002, hole_fraction: float = 0.001,
    keep_fraction: float = KEEP_FRACTION, hole_fill_over: float = HOLE_FILL_OVER,
) -> np.ndarray:
    """float32 matte in [0, 1] -> the same with small specks cleared and small holes filled.

    A blob goes when its solid area is under `speck_fraction` of the largest blob's and under
    `keep_fraction` of the frame; a hole (a region of matte < 0.5 enclosed by the subject, not
    touching the border) is filled when under `hole_fraction` of the largest blob and its mean
    matte is at least `hole_fill_over`. Areas are relative to the subject and the frame, so the
    result does not depend on the picture's size. Returns the input itself when there is nothing
    to change.
    """
    solid = matte >= 0.5
    labels, blobs = cv2.connectedComponents((matte > _BLOB_LEVEL).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    count = labels - 1  # label 0 is the background
    if count == 0:
        return matte
    solid_area = np.bincount(blobs[solid], minlength=count + 1)
    solid_area[0] = 0
    largest = int(solid_area.max())
    if largest == 0:
        return matte
    out = matte
    specks = (solid_area < speck_fraction * largest) & (solid_area < keep_fraction * matte.size)
    specks[0] = False
    if specks[1:].any():
        out = out.copy()
        out[specks[blobs]] = 0.0

    for window, mine in holes_of(solid, smaller_than=hole_fraction * largest,
                                 values=out if hole_fill_over > 0 else None, mean_from=hole_fill_over):
        if out is matte:
            out = out.copy()
        out[window][mine] = 1.0
    return out


# -- guided filter --------------------------------------------------------------------------------


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window (reflected borders, as scipy's "reflect"), per channel (at
    most 4); float32 in, float32 out (OpenCV sums float32 in float64)."""
    size = 2 * radius + 1
    return cv2.boxFilter(np.ascontiguousarray(x), -1, (size, size), borderType=cv2.BORDER_REFLECT)


def guided_coefficients(
    guide: np.ndarray, source: np.ndarray, radius: int, eps: float, where: np.ndarray | None = None
) -> np.ndarray:
    """He et al.'s colour guided filter, as its smoothed linear coefficients: HxWx4 (A, b).

    The filtered value of pixel i is A_i · guide_i + b_i. Returned apart so that they can be
    computed at a working resolution and applied at full resolution (the fast guided filter).
    `where` (bool HxW): only these cells' coefficients are wanted (others come back 0). The box
    filters still cover the grid (they are cheap), but the per-cell 3x3 solve, a few dozen
    array passes, then runs only within `radius` of those cells: on a photo's edge band about
    a tenth of the grid.
    """
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    h, w = source.shape
    boxed = _boxes([guide, source, guide * source[..., None], *(guide[..., a] * guide[..., b] for a, b in pairs)], radius)
    if where is None:
        cells = slice(None)
    else:
        cells = np.flatnonzero(grow(where, radius))
    mean_i, mean_p, cov = (x.reshape(h * w, -1)[cells] for x in boxed[:3])
    second = [x.reshape(h * w)[cells] for x in boxed[3:]]
    mean_p = mean_p[:, 0]
    cov -= mean_i * mean_p[:, None]
    for (a, b), v in zip(pairs, second):
        v -= mean_i[:, a] * mean_i[:, b]

    e = np.float32(eps)
    rr, rg, rb, gg, gb, bb = second[0] + e, second[1], second[2], second[3] + e, second[4], second[5] + e
    # (Sigma + eps U)^-1 cov by the adjugate: six entries, no per-pixel linalg call.
    i_rr, i_rg, i_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    i_gg, i_gb, i_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * i_rr + rg * i_rg + rb * i_rb
    c0, c1, c2 = cov[:, 0], cov[:, 1], cov[:, 2]
    solved = np.empty((mean_p.shape[0], 4), np.float32)
    solved[:, 0] = (i_rr * c0 + i_rg * c1 + i_rb * c2) / det
    solved[:, 1] = (i_rg * c0 + i_gg * c1 + i_gb * c2) / det
    solved[:, 2] = (i_rb * c0 + i_gb * c1 + i_bb * c2) / det
    solved[:, 3] = mean_p - (solved[:, :3] * mean_i).sum(axis=1)
    if where is None:
        coefficients = solved.reshape(h, w, 4)
    else:
        coefficients = np.zeros((h, w, 4), np.float32)
        coefficients.reshape(h * w, 4)[cells] = solved
    return _box(coefficients, radius)


def _boxes(arrays: list[np.ndarray], radius: int) -> list[np.ndarray]:
    """_box of each array (OpenCV spreads each one over the cores itself)."""
    return [_box(x, radius) for x in arrays]


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The guided filter at one resolution (guide HxWx3 and source HxW, float32 in [0, 1])."""
    k = guided_coefficients(guide, source, radius, eps)
    return (k[..., :3] * guide).sum(axis=2) + k[..., 3]


# -- the refinement -------------------------------------------------------------------------------


def work_scale(width: int, height: int, budget: int | None = None) -> int:
    """The integer reduction that brings the picture to at most about `budget` pixels
    (default WORK_PIXELS)."""
    return max(1, math.ceil(math.sqrt(width * height / (budget or WORK_PIXELS))))


def box_reduce(array: np.ndarray, scale: int) -> np.ndarray:
    """uint8 HxW[xC] -> float32 in [0, 1], box-reduced by `scale`: cell (i, j) is the mean of
    pixels [i*s, (i+1)*s) x [j*s, (j+1)*s), of those that exist in the border's cut cells (as
    Pillow's reduce). OpenCV's area resize does the whole cells (an exact integer factor)."""
    if scale == 1:
        return array.astype(np.float32) * np.float32(1 / 255)
    h, w = array.shape[:2]
    hh, ww = h - h % scale, w - w % scale
    rows, cols = hh // scale, ww // scale
    extra = array.shape[2:]
    out = np.empty((-(-h // scale), -(-w // scale), *extra), np.float32)
    if rows and cols:
        out[:rows, :cols] = cv2.resize(array[:hh, :ww], (cols, rows), interpolation=cv2.INTER_AREA)
    if hh < h and cols:
        out[rows, :cols] = array[hh:, :ww].reshape(h - hh, cols, scale, *extra).mean(axis=(0, 2))
    if ww < w and rows:
        out[:rows, cols] = array[:hh, ww:].reshape(rows, scale, w - ww, *extra).mean(axis=(1, 2))
    if hh < h and ww < w:
        out[rows, cols] = array[hh:, ww:].mean(axis=(0, 1))
    out *= np.float32(1 / 255)
    return out


def working_colour(pixels: np.ndarray) -> np.ndarray:
    """The colour (HxWx3 uint8) on the working grid, float32 in [0, 1]. Both edge steps read it
    (refine_alpha, foreground.estimate_foreground: `guide=`); a caller running both on the same
    picture makes it once (12 MP: 5 ms)."""
    height, width = pixels.shape[:2]
    return box_reduce(pixels, work_scale(width, height))


def band_of(source: np.ndarray, reach: int) -> np.ndarray:
    """Work pixels whose result can differ from 0 or 1: the soft ones, grown by `reach`."""
    soft = (source > _BAND_LOW / 255) & (source < _BAND_HIGH / 255)
    if reach > 0 and soft.any():
        soft = grow(soft, reach)
    return soft


def grow(mask: np.ndarray, reach: int) -> np.ndarray:
    """A bool mask dilated by a (2·reach+1)² square."""
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    return cv2.dilate(mask.view(np.uint8), kernel).view(bool)


def curve_lut(low: float, high: float) -> np.ndarray:
    """The contrast curve on 8-bit alpha, as a lookup table."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    return np.round(np.clip((levels - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def _share_between(source: np.ndarray, low: float, high: float, reach: int) -> np.ndarray:
    """Per work pixel, the share of the pixels within `reach` whose value is strictly between."""
    return _box(((source > low) & (source < high)).astype(np.float32), reach)


def _softness(source: np.ndarray, reach: int, wide_at: float) -> np.ndarray:
    """Per work pixel, 0 (crisp edge) .. 1 (hair-like): the share of soft pixels around it."""
    weight = _share_between(source, 0.01, 0.99, reach)
    weight *= np.float32(1 / wide_at)
    return np.clip(weight, 0, 1, out=weight)


def _lifted_where_narrow(alpha: np.ndarray, source: np.ndarray, scale: int, top: int, left: int,
                         style: EdgeStyle) -> np.ndarray:
    """`source` (the curved alpha on the working grid, cells from (top, left)) with the curve's low
    end raised by `narrow_lift` where the net's edge is narrow, blended by how narrow."""
    weight = _share_between(source, 0.1, 0.9, style.reach)
    weight -= np.float32(style.narrow_under)
    weight *= np.float32(1 / (style.wide_over - style.narrow_under))
    np.clip(weight, 0, 1, out=weight)
    rows, cols = source.shape
    full = alpha[top * scale : (top + rows) * scale, left * scale : (left + cols) * scale]
    lifted = box_reduce(cv2.LUT(full, curve_lut(style.low + style.narrow_lift, style.high)), scale)
    return lifted + (source - lifted) * weight


def _blended_coefficients(guide: np.ndarray, source: np.ndarray, style: EdgeStyle, where: np.ndarray) -> np.ndarray:
    """HxWx4 coefficients (A, b) of the small and the wide guided filter, blended by softness,
    valid on the `where` cells (and 0 far from them).

    The wide filter runs at half the working resolution (its output is smooth; a quarter of the
    cost) and its coefficients are resampled back, on another core while the small one runs
    (their numpy arithmetic is single-threaded; 12 MP: 23 -> 17 ms).
    """
    weight = _softness(source, style.reach, style.wide_at)[..., None]
    if not weight.any():
        return guided_coefficients(guide, source, style.small, style.eps, where)
    wide = _POOL.submit(_wide_coefficients, guide, source, style, where)
    out = guided_coefficients(guide, source, style.small, style.eps, where)
    out += (wide.result() - out) * weight
    return out


# Two workers: concurrent requests do not queue behind one another's wide filter.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wide-filter")


def _wide_coefficients(guide: np.ndarray, source: np.ndarray, style: EdgeStyle, where: np.ndarray) -> np.ndarray:
    """HxWx4 coefficients of the wide guided filter (at half resolution when the grid allows)."""
    h, w = source.shape
    if min(h, w) < 8 * style.wide:
        return guided_coefficients(guide, source, style.wide, style.eps, where)
    half = (max(1, w // 2), max(1, h // 2))
    small_guide = cv2.resize(guide, half, interpolation=cv2.INTER_AREA)
    small_source = cv2.resize(source, half, interpolation=cv2.INTER_AREA)
    # Half cells the bilinear resampling back reads for a wanted cell: its own and one around.
    wanted = grow(where, 2)[: 2 * half[1], : 2 * half[0]]
    wanted = wanted.reshape(half[1], 2, half[0], 2).any(axis=(1, 3))
    coarse = guided_coefficients(small_guide, small_source, max(1, style.wide // 2), style.eps, wanted)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def smooth_texture(alpha: np.ndarray, net: np.ndarray, style: EdgeStyle) -> None:
    """In place: `alpha` (uint8, refined) blurred by style.texture_blur where its local gradients
    cancel out and `net` (the net's uint8 matte at the same size) was unsure around it.

    An edge's gradients all point one way, so their sum over a window keeps their energy; a texture's
    (strands, the photo's pattern copied into a half-found fringe) point every way and cancel. The
    share that survives (coherence) tells them apart, so soft edges and ramps stay as they are.
    Row strips on every core, each only over the columns where the net was unsure.
    """
    if style.texture_blur:
        # Each strip reads beyond its rows, which its neighbours write: it reads a copy.
        kernels.in_strips(_smooth_texture_rows, alpha.shape[0], alpha, alpha.copy(), net, style)


def _smooth_texture_rows(alpha: np.ndarray, source: np.ndarray, net: np.ndarray, style: EdgeStyle,
                         start: int, stop: int) -> None:
    """smooth_texture on rows [start, stop) of `alpha`, from `source` (its values before) and `net`
    within the filters' reach around them."""
    reach = _UNSURE_REACH  # the weight is 0 farther than this from an unsure net pixel
    margin = texture_reach(style) + 2
    y0, y1 = max(0, start - margin), min(alpha.shape[0], stop + margin)
    unsure = (net[y0:y1] > _UNSURE_LOW) & (net[y0:y1] < _UNSURE_HIGH)
    cols = np.flatnonzero(unsure.any(axis=0))
    if not cols.size:
        return
    width = alpha.shape[1]
    c0, c1 = max(0, cols[0] - reach), min(width, cols[-1] + 1 + reach)  # where the weight can be above 0
    x0, x1 = max(0, c0 - margin), min(width, c1 + margin)
    a = source[y0:y1, x0:x1].astype(np.float32)
    a *= np.float32(1 / 255)
    gx = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    # Box windows (_box: constant cost whatever their size, a third of Gaussian windows' at 12 MP):
    # gradient energy, both gradient components and the mid-grey share in one four-channel pass.
    mid = ((a > _MID_LOW) & (a < _MID_HIGH)).astype(np.float32)
    sums = _box(cv2.merge((gx * gx + gy * gy, gx, gy, mid)), style.texture_window)
    share = _box(unsure[:, x0:x1].astype(np.float32), _UNSURE_REACH)
    blurred = cv2.GaussianBlur(a, (0, 0), style.texture_blur)
    rows, cols = slice(start - y0, stop - y0), slice(c0 - x0, c1 - x0)
    kernels.blend_texture(alpha[start:stop, c0:c1], a[rows, cols], sums[rows, cols], share[rows, cols],
                          blurred[rows, cols], style.texture_coherent, _TEXTURE_ENERGY, 1 / style.texture_unsure,
                          style.texture_mid)


def refine_alpha(
    pixels: np.ndarray, alpha: np.ndarray, guide: np.ndarray | None = None, style: EdgeStyle = STYLE
) -> np.ndarray:
    """uint8 alpha at the colour's size (pixels: uint8 HxWx3) -> the refined uint8 alpha (a new
    array). `guide`: working_colour(pixels), if the caller has it.

    The contrast curve first (a lookup on every pixel), then the guided filters on the band,
    which soften the curved edge again where the photo's colours say so.
    """
    out = cv2.LUT(alpha, curve_lut(style.low, style.high))
    height, width = alpha.shape
    scale = work_scale(width, height)
    guide = working_colour(pixels) if guide is None else guide
    source = box_reduce(out, scale)
    # Beyond this the result barely differs from the curved alpha: both filters' windows and the
    # blend's, in full-resolution pixels (on a large photo the net's edge is already several
    # pixels wide, and the band's size is this step's cost).
    reach = max(2 * style.small + 1, style.reach)
    band = band_of(source, max(1, math.ceil(reach / scale)))
    if not band.any():
        return out
    rows = np.flatnonzero(band.any(axis=1))
    cols = np.flatnonzero(band.any(axis=0))
    pad = 2 * style.wide + 1
    # Even corners: the wide filter's half-resolution grid then sits where it would on the
    # whole picture, so a part refined alone (the crop's subject box) matches.
    r0, r1 = max(0, rows[0] - pad) & ~1, min(band.shape[0], rows[-1] + 1 + pad)
    c0, c1 = max(0, cols[0] - pad) & ~1, min(band.shape[1], cols[-1] + 1 + pad)
    # The cells whose coefficients the bilinear sampling below reads: the band's and one around.
    wanted = grow(band[r0:r1, c0:c1], 1)
    part = source[r0:r1, c0:c1]
    # Only the band's values depend on the curve's low end (elsewhere both curves give 0 or 1),
    # and the filters overwrite the band: the lift is needed on the working grid only.
    if style.narrow_lift:
        part = _lifted_where_narrow(alpha, part, scale, r0, c0, style)
    coefficients = _blended_coefficients(guide[r0:r1, c0:c1], part, style, wanted)
    kernels.apply_coefficients(out, pixels, coefficients, band[r0:r1, c0:c1], scale, r0 * scale, c0 * scale)
    smooth_texture(out, alpha, style)
    return out
