"""Output formats: their size caps and their encoders (bytes + content type).

Encoder settings favour speed: for a 10 MP cut-out, PNG level 2 takes 0.30 s for 3.3 MB where
level 6 takes 0.73 s for 2.6 MB; the response is downloaded once.
"""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
from PIL import Image

# Largest output per format, in pixels (the API contract), and per side (the codec's limit).
FORMAT_MAX_PIXELS = {"png": 10_000_000, "jpg": 50_000_000, "webp": 50_000_000, "zip": 50_000_000}
FORMAT_MAX_SIDE = {"png": 1 << 31, "jpg": 65_500, "webp": 16_383, "zip": 65_500}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "zip": "application/zip"}

PNG_COMPRESS_LEVEL = 2
JPEG_QUALITY = 90
WEBP_QUALITY = 90
# At 10 MP: method 2 takes 0.69 s for 0.32 MB, method 4 (the default) 1.5 s for 0.31 MB.
WEBP_METHOD = 2


def fit(size: tuple[float, float], max_pixels: float, max_side: float = math.inf) -> tuple[int, int]:
    """`size` scaled down (never up), aspect kept, to at most `max_pixels` and `max_side` a side."""
    width, height = size
    scale = min(1.0, math.sqrt(max_pixels / (width * height)), max_side / width, max_side / height)
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    # Rounding may overshoot by a pixel row or column: trim until it fits.
    while out_w * out_h > max_pixels and (out_w > 1 or out_h > 1):
        if out_w >= out_h:
            out_w -= 1
        else:
            out_h -= 1
    return out_w, out_h


def _icc(image: Image.Image) -> dict:
    profile = image.info.get("icc_profile")
    return {"icc_profile": profile} if profile else {}


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL, **_icc(image))
    return out.getvalue()


def jpg(image: Image.Image) -> bytes:
    """JPEG of an RGB or grey image (the caller flattens any alpha first)."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", **_icc(image))
    return out.getvalue()


def webp(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD, **_icc(image))
    return out.getvalue()


def zip_pair(colour: Image.Image, alpha: np.ndarray) -> bytes:
    """remove.bg's zip: color.jpg (straight colour, no alpha) + alpha.png (grey matte), same size."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("color.jpg", jpg(colour))
        archive.writestr("alpha.png", png(Image.fromarray(alpha, "L")))
    return out.getvalue()
