"""Every kind of input the contract names, made in the test from one real photo and sent
through the real Envoy, server and model: the answer is upright, RGBA, of the original size,
and the matte agrees with the photo's hand-made ground truth (so a flipped or rotated answer,
or a subject lost to a colour-mode mistake, fails).
"""

from __future__ import annotations

import io
from decimal import Decimal

import numpy as np
import pytest
from PIL import Image

from api_calls import PERSON, alpha_of, encode, iou, picture, removebg, truth_mask

pytestmark = pytest.mark.e2e

# The stored pixels for EXIF orientation n are the upright photo put through the inverse of
# what a viewer applies (ImageOps.exif_transpose), so every file shows the same upright photo.
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer turns it back with ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
MIN_IOU = 0.85


@pytest.fixture(scope="module")
def key(new_account) -> str:
    return new_account("inputs", subscription=Decimal(100))


@pytest.fixture(scope="module")
def photo(quality) -> Image.Image:
    image = Image.open(quality / PERSON)
    image.load()
    assert image.size == (321, 481)
    return image.convert("RGB")


@pytest.fixture(scope="module")
def truth(quality) -> np.ndarray:
    return truth_mask(quality)


def check_upright_cutout(response, photo: Image.Image, truth: np.ndarray, min_iou: float = MIN_IOU) -> np.ndarray:
    image = picture(response)
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == photo.size, "upright, original size"
    alpha = alpha_of(image)
    assert iou(alpha > 127, truth) > min_iou
    return np.asarray(image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied(stack, key, photo, truth, orientation):
    method = STORED[orientation]
    stored = photo if method is None else photo.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    if orientation in (5, 6, 7, 8):
        assert Image.open(io.BytesIO(data)).size == (481, 321), "stored sideways"
    pixels = check_upright_cutout(removebg(stack, key, data, size="small"), photo, truth)
    # The colours are the upright photo's where the subject is opaque (JPEG loss aside).
    opaque = pixels[:, :, 3] == 255
    difference = np.abs(pixels[:, :, :3].astype(int) - np.asarray(photo).astype(int))[opaque]
    assert difference.mean() < 8


def with_transparent_left_third(photo: Image.Image) -> Image.Image:
    rgba = photo.convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, np.uint8)
    alpha[:, : photo.width // 3] = 0
    rgba.putalpha(Image.fromarray(alpha, "L"))
    return rgba


def sixteen_bit_grey(photo: Image.Image) -> Image.Image:
    values = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    return image


# name -> (the file made from the photo, ground-truth IoU floor). Grey and 256-colour inputs
# lose the colour cues the net uses, so their floor is a little lower.
INPUTS = {
    "png_rgb": (lambda p: encode(p, "PNG"), MIN_IOU),
    "png_palette": (lambda p: encode(p.quantize(256), "PNG"), 0.8),
    "png_grey": (lambda p: encode(p.convert("L"), "PNG"), 0.8),
    "png_grey_alpha": (lambda p: encode(p.convert("LA"), "PNG"), 0.8),
    "png_16_bit_grey": (lambda p: encode(sixteen_bit_grey(p), "PNG"), 0.8),
    "jpeg_cmyk": (lambda p: encode(p.convert("CMYK"), "JPEG", quality=92), MIN_IOU),
    "jpeg_grey": (lambda p: encode(p.convert("L"), "JPEG", quality=92), 0.8),
    "webp": (lambda p: encode(p, "WEBP", quality=90), MIN_IOU),
    "webp_lossless": (lambda p: encode(p, "WEBP", lossless=True), MIN_IOU),
    "gif": (lambda p: encode(p.quantize(256), "GIF"), 0.8),
    "bmp": (lambda p: encode(p, "BMP"), MIN_IOU),
    "tiff": (lambda p: encode(p, "TIFF", compression="tiff_lzw"), MIN_IOU),
}


@pytest.mark.parametrize("name", list(INPUTS))
def test_input_kind_gives_an_upright_rgba_cutout(stack, key, photo, truth, name):
    """Upright, RGBA, the right matte, and the photo's own colours where the subject is opaque
    (a CMYK or 16-bit file read wrongly would come back inverted, shifted or dark)."""
    make, min_iou = INPUTS[name]
    data = make(photo)
    response = removebg(stack, key, data, filename=f"photo.{name.split('_')[0]}", size="small")
    pixels = check_upright_cutout(response, photo, truth, min_iou)
    grey = "grey" in name
    reference = np.asarray(photo.convert("L").convert("RGB") if grey else photo).astype(int)
    opaque = pixels[:, :, 3] == 255
    difference = np.abs(pixels[:, :, :3].astype(int) - reference)[opaque].mean()
    assert difference < 12, f"mean colour difference {difference:.1f}"
    if grey:
        assert (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 1] == pixels[:, :, 2]).all()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_input_alpha_stays_transparent(stack, key, photo, truth, fmt):
    """An upload that is already transparent in its left third stays transparent there."""
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(with_transparent_left_third(photo), fmt, **options)
    image = picture(removebg(stack, key, data, size="small"))
    alpha = alpha_of(image)
    assert alpha[:, : photo.width // 3 - 1].max() == 0
    right = truth[:, photo.width // 3 + 1 :]
    assert iou(alpha[:, photo.width // 3 + 1 :] > 127, right) > MIN_IOU
