"""Matte resampling, the foreground box, output size fitting and the encoders (no model)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from engine import compose, encode
from engine.matte import FOREGROUND_THRESHOLD, coarse_box, foreground_box, stretch_found, upsample
from engine.types import Box


def smooth_matte(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.clip(1.2 - np.hypot(x - size / 2, y - size / 2) / (size / 3), 0, 1).astype(np.float32)


def test_upsample_in_strips_equals_one_resize():
    matte = smooth_matte()
    alpha = upsample(matte, (300, 700))  # 700 rows: several strips
    whole = np.asarray(Image.fromarray(matte, "F").resize((300, 700), Image.Resampling.BILINEAR))
    expected = np.clip(whole * 255 + 0.5, 0, 255).astype(np.uint8)
    assert alpha.dtype == np.uint8 and alpha.shape == (700, 300)
    assert np.abs(alpha.astype(int) - expected).max() <= 1
    assert 0 < np.count_nonzero((alpha > 0) & (alpha < 255))  # soft edges survive


def test_upsample_of_a_box():
    matte = smooth_matte()
    part = upsample(matte, (64, 64), (16, 16, 48, 48))
    whole = upsample(matte, (128, 128))
    assert np.abs(part.astype(int) - whole[32:96, 32:96]).max() <= 2


def test_foreground_box_uses_threshold():
    alpha = np.zeros((50, 80), np.uint8)
    alpha[10:20, 30:45] = 255
    alpha[40, 70] = FOREGROUND_THRESHOLD  # faint: not foreground
    assert foreground_box(alpha) == Box(top=10, left=30, width=15, height=10)
    assert foreground_box(np.zeros((5, 5), np.uint8)) == Box(0, 0, 0, 0)


def test_coarse_box_contains_the_fine_box():
    matte = smooth_matte()
    x0, y0, x1, y1 = coarse_box(matte)
    fine = foreground_box(upsample(matte, (64, 64)))
    assert x0 <= fine.left and y0 <= fine.top
    assert fine.left + fine.width <= x1 and fine.top + fine.height <= y1
    assert coarse_box(np.zeros((8, 8), np.float32)) is None


@pytest.mark.parametrize(
    ("size", "max_pixels", "max_side"),
    [((4000, 3000), 10_000_000, 1e9), ((4000, 3000), 250_000, 1e9), ((30000, 1000), 50_000_000, 16383), ((7, 5), 1e9, 1e9)],
)
def test_fit_keeps_aspect_and_caps(size, max_pixels, max_side):
    width, height = encode.fit(size, max_pixels, max_side)
    assert width * height <= max_pixels and max(width, height) <= max_side
    assert width <= size[0] and height <= size[1]
    assert abs(width / height - size[0] / size[1]) < 0.01 * size[0] / size[1] + 1 / height


def test_a_find_is_stretched_to_full_and_noise_is_left_as_is():
    faint = np.full((40, 60), 0.01, np.float32)
    faint[10:30, 20:40] = 0.3  # the net found a subject and is unsure of all of it
    faint[12, 22] = 0.55  # a few pixels solid
    stretched = stretch_found(faint)
    assert stretched[12, 22] == pytest.approx(1.0) and stretched[0, 0] == pytest.approx(0.0)
    assert stretched[20, 30] == pytest.approx((0.3 - 0.01) / (0.55 - 0.01))
    assert faint.max() == pytest.approx(0.55)  # the net's own matte (a cached one) is not written to
    noise = np.full((40, 60), 0.01, np.float32)
    noise[0:3, 0:3] = 0.05  # what IS-Net answers on a blank wall: not a find
    assert stretch_found(noise) is noise


def photo_and_alpha():
    colour = np.full((30, 40, 3), (200, 120, 40), np.uint8)
    alpha = np.zeros((30, 40), np.uint8)
    alpha[5:25, 10:30] = 255
    alpha[5:25, 9] = 100  # an edge pixel
    return colour, alpha


def test_cutout_is_straight_and_zeroes_hidden_colour():
    colour, alpha = photo_and_alpha()
    pixels = compose.cutout(colour, alpha)
    assert tuple(pixels[10, 9]) == (200, 120, 40, 100)  # full colour under partial alpha
    assert tuple(pixels[0, 0]) == (0, 0, 0, 0)


def test_flatten_and_backgrounds():
    colour, alpha = photo_and_alpha()
    on_red = compose.over_colour(colour, alpha, (255, 0, 0, 255))
    assert on_red.mode == "RGB" and on_red.getpixel((0, 0)) == (255, 0, 0)
    assert on_red.getpixel((15, 15)) == (200, 120, 40)
    half = compose.over_colour(colour, alpha, (255, 0, 0, 128))
    assert half.mode == "RGBA" and half.getpixel((0, 0)) == (255, 0, 0, 128)
    backdrop = Image.new("RGB", (10, 20), (0, 0, 255))
    on_picture = compose.over_image(colour, alpha, backdrop)
    assert on_picture.size == (40, 30) and on_picture.getpixel((0, 0)) == (0, 0, 255)


def test_transparent_background_image_keeps_alpha():
    colour, alpha = photo_and_alpha()
    backdrop = Image.new("RGBA", (40, 30), (0, 0, 255, 0))
    backdrop.paste((0, 0, 255, 255), (0, 0, 5, 30))  # an opaque strip on the left
    result = compose.over_image(colour, alpha, backdrop)
    assert result.mode == "RGBA"
    assert result.getpixel((2, 2)) == (0, 0, 255, 255)
    assert result.getpixel((35, 2))[3] == 0
    assert result.getpixel((15, 15)) == (200, 120, 40, 255)


def test_cover_fills_and_centres():
    backdrop = Image.new("RGB", (100, 100), (0, 0, 0))
    backdrop.paste((255, 255, 255), (0, 25, 100, 75))  # white middle band
    covered = compose.cover(backdrop, (200, 100))  # wider: scaled x2, middle rows kept
    assert covered.size == (200, 100)
    assert covered.getpixel((100, 50)) == (255, 255, 255)
    assert covered.getpixel((100, 2)) == (255, 255, 255) and covered.getpixel((100, 97)) == (255, 255, 255)
    assert compose.cover(backdrop, (100, 100)) is backdrop


def test_zip_pair_holds_colour_and_matte():
    colour, alpha = photo_and_alpha()
    with zipfile.ZipFile(io.BytesIO(encode.zip_pair(Image.fromarray(colour), alpha))) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        jpg = Image.open(io.BytesIO(archive.read("color.jpg")))
        png = Image.open(io.BytesIO(archive.read("alpha.png")))
        assert jpg.mode == "RGB" and png.mode == "L" and jpg.size == png.size == (40, 30)
        assert np.array_equal(np.asarray(png), alpha)


def test_drop_shadow_lies_down_right_under_the_subject():
    from engine.compose import drop_shadow

    alpha = np.zeros((200, 200), np.uint8)
    alpha[50:150, 50:150] = 255
    colour = np.full((200, 200, 3), (200, 100, 50), np.uint8)
    strong_colour, strong = drop_shadow(colour, alpha, 0.8, subject_height=100)
    _, weak = drop_shadow(colour, alpha, 0.2, subject_height=100)
    assert (strong[50:150, 50:150] == 255).all(), "the subject stays opaque"
    assert (np.asarray(strong_colour)[60:140, 60:140] == (200, 100, 50)).all(), "and keeps its colour"
    assert strong[152, 152] > 80 and strong[45, 45] < 5, "shadow below right, not above left"
    assert abs(int(strong[151, 100]) / max(1, int(weak[151, 100])) - 4) < 0.3, "opacity scales it"
    assert (np.asarray(strong_colour)[160:, :][strong[160:, :] > 0] == 0).all(), "a black shadow"
    unchanged_colour, unchanged = drop_shadow(colour, alpha, 0.0, subject_height=100)
    assert unchanged is alpha and unchanged_colour is colour


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (7, 300), (513, 257)])  # 300 and 257 rows cross a strip
@pytest.mark.parametrize("as_array", [False, True], ids=["image", "array"])
def test_png_round_trips_exactly(mode, size, as_array):
    channels = len(mode)
    pixels = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
    with Image.open(io.BytesIO(encode.png(np.asarray(image) if as_array else image))) as decoded:
        assert decoded.format == "PNG" and decoded.mode == mode
        assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_png_keeps_the_icc_profile_and_other_modes_go_through_pillow():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.new("RGB", (40, 30), (200, 10, 60))
    image.info["icc_profile"] = profile
    with Image.open(io.BytesIO(encode.png(image))) as decoded:
        assert decoded.info.get("icc_profile") == profile
        assert decoded.getpixel((39, 29)) == (200, 10, 60)
    palette = Image.fromarray((np.arange(600) % 7).astype(np.uint8).reshape(20, 30), "L").convert("P")
    with Image.open(io.BytesIO(encode.png(palette))) as decoded:
        assert decoded.mode == "P"
        assert np.array_equal(np.asarray(decoded.convert("L")), np.asarray(palette.convert("L")))


def test_png_of_a_smooth_cut_out_is_compressed():
    """The Up filter must still find the redundancy of a real cut-out (zeros, smooth colour)."""
    height, width = 600, 800
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[150:450, 200:600, :3] = ramp[200:600, None].astype(np.uint8)
    rgba[150:450, 200:600, 3] = 255
    data = encode.png(Image.fromarray(rgba, "RGBA"))
    assert len(data) < rgba.nbytes / 20
