"""Colour + alpha -> the cut-out, and the cut-out over a background colour or image.

Everything is straight (non-premultiplied) alpha: a pixel with alpha a carries the foreground's
own colour, never that colour darkened by a premultiply round trip. Which colour that is at the
edges is one swappable function (`ForegroundEstimator`); compositing never resizes an RGBA image
(Pillow would premultiply in 8 bits and lose the colour of faint pixels).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from engine.types import RGBA

# (colour of the canvas, uint8 alpha of the same size, the canvas's uint8 pixels if the caller
# has them: the estimator may overwrite them) -> the foreground's colour, same size.
ForegroundEstimator = Callable[[Image.Image, np.ndarray, "np.ndarray | None"], Image.Image]


def keep_source_colour(colour: Image.Image, alpha: np.ndarray, pixels: np.ndarray | None = None) -> Image.Image:
    """The photo's own pixel under every alpha value: exact inside, background-tinted at edges."""
    return colour


_SHOWN = [0] + [255] * 255  # alpha -> 255 where any of the pixel shows


def cutout(colour: Image.Image, alpha: np.ndarray) -> Image.Image:
    """Straight RGBA; colour under fully transparent pixels is zeroed (smaller files, no leaks)."""
    matte = Image.fromarray(alpha, "L")
    rgba = colour.convert("RGBA")
    rgba.putalpha(matte)
    # Pillow's own passes, no numpy copies (2x faster at 10 MP): a 0/255 mask copies each
    # pixel exactly or replaces it with transparent black.
    result = Image.composite(rgba, Image.new("RGBA", rgba.size, 0), matte.point(_SHOWN))
    if "icc_profile" in colour.info:
        result.info["icc_profile"] = colour.info["icc_profile"]
    return result


def flatten(colour: Image.Image, alpha: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Opaque RGB: colour over a solid background, weighted by alpha (for formats with no alpha)."""
    mask = Image.fromarray(alpha, "L")
    result = Image.composite(colour, Image.new("RGB", colour.size, background), mask)
    if "icc_profile" in colour.info:
        result.info["icc_profile"] = colour.info["icc_profile"]
    return result


def cover(background: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Background scaled to cover `size` (aspect kept) and centred; untouched if already that size."""
    if background.size == size:
        return background
    width, height = size
    scale = max(width / background.width, height / background.height)
    # The source region that, scaled, exactly fills the canvas: one resize, no crop copy.
    src_w, src_h = width / scale, height / scale
    left = (background.width - src_w) / 2
    top = (background.height - src_h) / 2
    return background.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + src_w, top + src_h))


def over_colour(colour: Image.Image, alpha: np.ndarray, background: RGBA) -> Image.Image:
    """The cut-out over a solid colour; RGB when that colour is opaque (no alpha left to keep)."""
    if background[3] == 255:
        return flatten(colour, alpha, background[:3])
    return Image.alpha_composite(Image.new("RGBA", colour.size, background), cutout(colour, alpha))


def over_image(colour: Image.Image, alpha: np.ndarray, background: Image.Image) -> Image.Image:
    """The cut-out over a picture covering the canvas; RGB when the picture is opaque."""
    canvas = cover(background, colour.size)
    if canvas.mode == "RGB":
        result = Image.composite(colour, canvas, Image.fromarray(alpha, "L"))
    else:
        result = Image.alpha_composite(canvas, cutout(colour, alpha))
    if "icc_profile" in colour.info:
        result.info["icc_profile"] = colour.info["icc_profile"]
    return result


# The drop shadow's offset (down and right) and blur, as fractions of the subject's height.
SHADOW_OFFSET = 0.04
SHADOW_BLUR = 0.03


def drop_shadow(colour: Image.Image, alpha: np.ndarray, opacity: float, subject_height: int) -> tuple[Image.Image, np.ndarray]:
    """A soft black shadow of the matte, offset down and right, under the cut-out.

    The shadow is the matte blurred, shifted and scaled by `opacity` (0..1); the result is
    still straight alpha: out_alpha = a + s * (1 - a), and the colour is the subject's weighted
    by how much of the pixel it covers (black shadow elsewhere), so no colour is premultiplied.
    """
    height, width = alpha.shape
    if opacity <= 0 or subject_height <= 0:
        return colour, alpha
    offset = max(1, round(SHADOW_OFFSET * subject_height))
    radius = max(1.0, SHADOW_BLUR * subject_height)
    blurred = np.asarray(Image.fromarray(alpha, "L").filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    shadow = np.zeros((height, width), np.float32)
    if offset < height and offset < width:
        shadow[offset:, offset:] = blurred[: height - offset, : width - offset]
    shadow *= np.float32(opacity / 255.0)
    a = alpha.astype(np.float32) / np.float32(255.0)
    out = a + shadow * (1.0 - a)
    weight = np.divide(a, out, out=np.zeros_like(a), where=out > 0)[:, :, None]
    rgb = np.asarray(colour.convert("RGB") if colour.mode != "RGB" else colour, dtype=np.float32)
    pixels = (rgb * weight + np.float32(0.5)).astype(np.uint8)
    result = Image.fromarray(pixels, "RGB")
    if "icc_profile" in colour.info:
        result.info["icc_profile"] = colour.info["icc_profile"]
    return result, (out * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
