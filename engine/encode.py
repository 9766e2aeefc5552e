"""Output formats: their size caps and their encoders (bytes + content type).

Encoder settings favour speed; the response is downloaded once. PNG (the default answer) is
written here rather than by Pillow: rows with PNG's "Up" filter, computed in numpy, deflated by
ISA-L in strips. For a 10 MP cut-out that takes 0.05 s for 4.7 MB where Pillow's level 2 takes
0.47 s for 4.8 MB and its level 6 1.4 s for 4.0 MB (bench/speed.py measures the whole path).
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

try:
    from isal import isal_zlib as _deflate
except ImportError:  # no ISA-L wheel for this platform: zlib writes the same format, slower
    _deflate = zlib  # type: ignore[assignment]

# Largest output per format, in pixels (the API contract), and per side (the codec's limit).
FORMAT_MAX_PIXELS = {"png": 10_000_000, "jpg": 50_000_000, "webp": 50_000_000, "zip": 50_000_000}
FORMAT_MAX_SIDE = {"png": 1 << 31, "jpg": 65_500, "webp": 16_383, "zip": 65_500}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "zip": "application/zip"}

PNG_COMPRESS_LEVEL = 2  # Pillow's zlib level, for the modes written by Pillow
PNG_DEFLATE_LEVEL = 2 if _deflate is not zlib else 1  # ISA-L's 0..3 (2: its default)
_PNG_MODES = ("L", "LA", "RGB", "RGBA")  # 8 bits per sample, written here
_PNG_STRIP_ROWS = 256
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


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png(picture: Image.Image | np.ndarray, icc: bytes | None = None) -> bytes:
    """PNG of a uint8 HxW, HxWx2, HxWx3 or HxWx4 array or an 8-bit L, LA, RGB or RGBA image
    (other modes through Pillow). `icc`: the profile to embed (default: the image's own).

    Every row gets the "Up" filter (the byte above subtracted): on photos and cut-outs it
    compresses as well as Pillow's per-row choice, and it is one vectorised subtraction. Rows
    are filtered and deflated in strips, so no second full-size copy is ever made.
    """
    if isinstance(picture, Image.Image):
        icc = icc or picture.info.get("icc_profile")
        if picture.mode not in _PNG_MODES:
            out = io.BytesIO()
            picture.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL, **({"icc_profile": icc} if icc else {}))
            return out.getvalue()
        picture = np.asarray(picture)
    pixels = picture if picture.ndim == 3 else picture[:, :, None]
    height, width, channels = pixels.shape
    colour_type = (0, 4, 2, 6)[channels - 1]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header)]
    if icc:
        parts.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    compressor = _deflate.compressobj(PNG_DEFLATE_LEVEL)
    body = []
    above = None  # the row before the strip
    for top in range(0, height, _PNG_STRIP_ROWS):
        bottom = min(height, top + _PNG_STRIP_ROWS)
        rows = pixels[top:bottom].reshape(bottom - top, width * channels)
        filtered = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
        filtered[:, 0] = 2  # filter type Up
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
        if above is None:
            filtered[0, 0] = 0  # the first row has nothing above it: no filter
            filtered[0, 1:] = rows[0]
        else:
            np.subtract(rows[0], above, out=filtered[0, 1:])
        above = rows[-1].copy()
        body.append(compressor.compress(filtered.tobytes()))
    body.append(compressor.flush())
    parts += [_png_chunk(b"IDAT", b"".join(body)), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


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
        archive.writestr("alpha.png", png(alpha))
    return out.getvalue()
