"""Turns uploaded bytes into an upright 8-bit RGB or RGBA Pillow image, or a clear EngineError
(and a Pillow image into the numpy pixels the rest of the engine works on).

Two steps on purpose: `probe` reads only the header, so the caller can price and limit a
request (and refuse a decompression bomb) before a single pixel is decoded; `decode` does the
pixel work. Every Pillow/decoder failure becomes `invalid_file_type` with a message of our own:
decoder internals (file offsets, plugin names, tracebacks) never reach the caller.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms, ImageOps

from engine.types import EngineError, ImageInfo

DEFAULT_MAX_PIXELS = 50_000_000
# Pillow's own bomb guard refuses giant headers before we can read their size, so the caller
# would get no numbers; `probe`/`decode` check every header against the caller's cap (with the
# numbers) before any pixel is decoded, which makes Pillow's process-wide guard redundant.
Image.MAX_IMAGE_PIXELS = None

# Only formats a photo service is asked for. Naming them also keeps Pillow from trying its
# riskier or external-tool plugins (EPS runs Ghostscript) on hostile bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "AVIF")

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
_SRGB = ImageCms.createProfile("sRGB")

_INVALID = "The file is not an image we can read (JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF), or it is damaged or truncated."


def _open(data: bytes) -> Image.Image:
    if not data:
        raise EngineError("invalid_file_type", "The file is empty.")
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        # Pillow refuses sizes far beyond ours before we can look: report it as ours.
        raise EngineError("resolution_too_high", "The image's resolution is too high.") from None
    except Exception:
        raise EngineError("invalid_file_type", _INVALID) from None


def _orientation(image: Image.Image) -> int:
    """EXIF orientation without decoding pixels (a PNG's getexif() would load the image)."""
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = image.getexif()
        value = int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:
        return 1  # unreadable EXIF: the pixels are still fine, show them as stored
    return value if 1 <= value <= 8 else 1


def _info(image: Image.Image) -> ImageInfo:
    width, height = image.size
    if _orientation(image) in _SWAPS_AXES:
        width, height = height, width
    return ImageInfo(width=width, height=height, format=(image.format or "").lower())


def _check_resolution(info: ImageInfo, max_pixels: int) -> None:
    if info.width <= 0 or info.height <= 0:
        raise EngineError("invalid_file_type", _INVALID)
    if info.width * info.height > max_pixels:
        raise EngineError(
            "resolution_too_high",
            f"The image is {info.width}x{info.height} = {info.megapixels:.1f} megapixels; "
            f"the maximum is {max_pixels / 1_000_000:g} megapixels.",
        )


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Size (upright, as it will be shown) and format from the header alone; bombs refused."""
    with _open(data) as image:
        info = _info(image)
    _check_resolution(info, max_pixels)
    return info


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, min_size: tuple[int, int] | None = None) -> Image.Image:
    """The image upright, in RGB, or RGBA where the file carries any transparency.

    `min_size` (upright width, height) lets a JPEG decode at 1/2, 1/4 or 1/8 scale when the
    caller needs no more than that: the decoder then never builds the full-size pixels.
    """
    image = _open(data)
    try:
        info = _info(image)
        _check_resolution(info, max_pixels)
        if min_size is not None and image.format in ("JPEG", "MPO"):
            want = min_size[::-1] if _orientation(image) in _SWAPS_AXES else min_size
            image.draft(image.mode, (max(1, want[0]), max(1, want[1])))
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb_or_rgba(upright)
    except EngineError:
        raise
    except Exception:
        raise EngineError("invalid_file_type", _INVALID) from None
    finally:
        image.close()


def _has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() or "a" in image.getbands() or image.info.get("transparency") is not None


def _grey16_to_l(image: Image.Image) -> Image.Image:
    """16-bit grey scaled to 8 bits (65535 -> 255, rounded); Pillow's own convert clips."""
    values = np.asarray(image)
    if values.dtype.byteorder not in ("=", "|"):
        values = values.astype(values.dtype.newbyteorder("="))
    values = np.clip(values, 0, 65535).astype(np.uint32)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")


def _float_to_l(image: Image.Image) -> Image.Image:
    """Float grey: [0, 1] is the usual range; anything else is stretched to fit."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return Image.fromarray((values * np.float32(255) + np.float32(0.5)).astype(np.uint8), "L")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Through the embedded ICC profile when there is one: a naive formula shifts print colours."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            rgb = ImageCms.profileToProfile(
                image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), _SRGB, outputMode="RGB"
            )
            if rgb is not None:
                rgb.info.pop("icc_profile", None)
                return rgb
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    rgb = image.convert("RGB")
    rgb.info.pop("icc_profile", None)
    return rgb


def to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Every Pillow mode mapped to 8-bit RGB, or RGBA when the image has transparency.

    An RGB image keeps its embedded ICC profile in `info`, so encoders can carry it through.
    """
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode.startswith("I;16") or mode == "I":
        image = _grey16_to_l(image)
    elif mode == "F":
        image = _float_to_l(image)
    elif mode == "CMYK":
        return _cmyk_to_rgb(image)
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "LAB":
        return ImageCms.applyTransform(
            image, ImageCms.buildTransform(ImageCms.createProfile("LAB"), _SRGB, "LAB", "RGB")
        )
    target = "RGBA" if _has_transparency(image) else "RGB"
    return image.convert(target)


# Image -> numpy a strip at a time: Pillow's whole-picture conversion goes through one large
# temporary buffer (12 MP RGB: 33-80 ms), small strips stay in reused memory (9 ms). 8 MB strips
# were as slow as the whole picture in a long-running process (the allocator's state), 2 MB not.
_STRIP_BYTES = 2 << 20


def pixels_of(image: Image.Image) -> np.ndarray:
    """The picture's pixels as a new, writable uint8 array: HxWx3 for RGB (others are converted
    to RGB first), HxW for L."""
    picture = image if image.mode in ("RGB", "L") else image.convert("RGB")
    width, height = picture.size
    out = np.empty((height, width, 3) if picture.mode == "RGB" else (height, width), dtype=np.uint8)
    rows = max(1, _STRIP_BYTES // (4 * max(1, width)))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = np.asarray(picture.crop((0, top, width, bottom)) if rows < height else picture)
    return out
