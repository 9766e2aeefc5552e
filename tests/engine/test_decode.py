"""Decoding: every input kind comes out upright in 8-bit RGB(A); bad input gives EngineError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.decode import decode, probe, to_rgb_or_rgba
from engine.types import EngineError

# An asymmetric picture: red top-left block, green top-right, blue bottom half (40 x 24).
W, H = 40, 24


def reference() -> Image.Image:
    image = Image.new("RGB", (W, H), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, W // 2, H // 2))
    image.paste((0, 255, 0), (W // 2, 0, W, H // 2))
    return image


def save(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def assert_reference(image: Image.Image, tolerance: int = 40) -> None:
    assert image.size == (W, H)
    pixels = np.asarray(image.convert("RGB")).astype(int)
    for (x, y), colour in {(5, 5): (255, 0, 0), (W - 5, 5): (0, 255, 0), (W // 2, H - 4): (0, 0, 255)}.items():
        assert np.abs(pixels[y, x] - colour).max() <= tolerance, (x, y, pixels[y, x])


def png_chunks(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written by hand, for what Pillow cannot write (16-bit RGB) or should not (huge headers)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# Stored pixels for EXIF orientation n, so that applying the tag gives the reference back.
STORED_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def oriented_jpeg(orientation: int) -> bytes:
    transform = STORED_FOR_ORIENTATION[orientation]
    stored = reference() if transform is None else reference().transpose(transform)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(stored, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    data = oriented_jpeg(orientation)
    assert probe(data).width == W and probe(data).height == H  # probe reports the upright size
    image = decode(data)
    assert image.mode == "RGB"
    assert_reference(image)


def test_jpeg_draft_decodes_smaller_but_upright():
    big = reference().resize((W * 16, H * 16), Image.Resampling.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = save(big.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())
    image = decode(data, min_size=(W * 2, H * 2))
    assert (W * 2, H * 2) <= image.size < (W * 16, H * 16)
    assert_reference(image.resize((W, H)))


@pytest.mark.parametrize(
    ("fmt", "mode", "params"),
    [
        ("PNG", "RGB", {}),
        ("PNG", "L", {}),
        ("PNG", "1", {}),
        ("PNG", "P", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("BMP", "P", {}),
        ("TIFF", "RGB", {"compression": "tiff_lzw"}),
        ("TIFF", "CMYK", {}),
        ("WEBP", "RGB", {"lossless": True}),
        ("JPEG", "L", {"quality": 95}),
        ("JPEG", "CMYK", {"quality": 95}),
    ],
)
def test_opaque_inputs_decode_to_rgb(fmt, mode, params):
    source = reference().convert(mode) if mode != "P" else reference().quantize(8)
    image = decode(save(source, fmt, **params))
    assert image.mode == "RGB"
    if mode in ("L", "1"):
        grey = np.asarray(source.convert("L"))
        assert np.abs(np.asarray(image)[:, :, 0].astype(int) - grey).max() <= 8
    else:
        assert_reference(image)


def test_cmyk_jpeg_colours_are_not_inverted():
    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))  # pure red ink
    cmyk.paste((0, 0, 0, 0), (0, 0, W // 2, H))  # no ink: white paper
    pixels = np.asarray(decode(save(cmyk, "JPEG", quality=95))).astype(int)
    assert np.abs(pixels[H // 2, 3] - (255, 255, 255)).max() <= 10
    assert np.abs(pixels[H // 2, W - 3] - (255, 0, 0)).max() <= 10


def with_alpha() -> Image.Image:
    image = reference().convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((W, H)))
    return image


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})])
def test_alpha_is_kept(fmt, params):
    source = with_alpha()
    image = decode(save(source, fmt, **params))
    assert image.mode == "RGBA"
    assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(source.getchannel("A")))


def test_grey_with_alpha_png():
    source = with_alpha().convert("LA")
    image = decode(save(source, "PNG"))
    assert image.mode == "RGBA"
    assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(source.getchannel("A")))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_alpha(fmt):
    source = reference().quantize(4)
    index = source.getpixel((2, 2))  # the red block's palette index
    image = decode(save(source, fmt, transparency=index))
    assert image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    assert alpha[2, 2] == 0 and alpha[H - 2, W - 2] == 255


def test_animated_gif_gives_first_frame():
    frames = [Image.new("P", (W, H), 0), Image.new("P", (W, H), 1)]
    for frame in frames:
        frame.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert decode(data).getpixel((3, 3))[:3] == (255, 0, 0)


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    for data in (save(Image.fromarray(values), "PNG"), save(Image.fromarray(values), "TIFF")):
        image = decode(data)
        assert image.mode == "RGB"
        assert list(np.asarray(image)[0, :, 0]) == [0, 1, 128, 255]


def test_16_bit_big_endian_grey():
    values = np.array([[0, 65535]], dtype=">u2")
    image = to_rgb_or_rgba(Image.frombytes("I;16B", (2, 1), values.tobytes()))
    assert [image.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]


def test_16_bit_rgb_png():
    pixels = np.zeros((2, 3, 3), dtype=">u2")
    pixels[:, 0] = (65535, 0, 0)
    pixels[:, 1] = (0, 32896, 0)
    pixels[:, 2] = (0, 0, 65535)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    image = decode(png_chunks(3, 2, 16, 2, raw))
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(3)] == [(255, 0, 0), (0, 128, 0), (0, 0, 255)]


def test_16_bit_rgba_png():
    pixels = np.zeros((1, 2, 4), dtype=">u2")
    pixels[0, 0] = (65535, 0, 0, 65535)
    pixels[0, 1] = (0, 0, 65535, 0)
    image = decode(png_chunks(2, 1, 16, 6, b"\x00" + pixels.tobytes()))
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (255, 0, 0, 255) and image.getpixel((1, 0))[3] == 0


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("F", "RGB"),
        ("I", "RGB"),
        ("YCbCr", "RGB"),
        ("LAB", "RGB"),
        ("PA", "RGBA"),
        ("La", "RGBA"),
        ("RGBa", "RGBA"),
    ],
)
def test_every_in_memory_mode_maps_to_rgb_or_rgba(mode, expected):
    if mode == "F":
        source = Image.fromarray(np.linspace(0, 1, W * H, dtype=np.float32).reshape(H, W), "F")
    elif mode == "I":
        source = Image.fromarray(np.full((H, W), 65535, dtype=np.int32), "I")
    elif mode == "PA":
        source = reference().quantize(8).convert("PA")
    elif mode in ("La", "RGBa"):
        source = with_alpha().convert("LA" if mode == "La" else "RGBA").convert(mode)
    else:
        source = reference().convert(mode)
    image = to_rgb_or_rgba(source)
    assert image.mode == expected and image.size == (W, H)
    pixels = np.asarray(image).astype(int)
    if mode == "F":
        assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    elif mode == "I":
        assert pixels[0, 0, 0] == 255
    elif mode in ("YCbCr", "LAB", "PA"):
        assert_reference(image.convert("RGB"), tolerance=60)


def test_rgba_premultiplied_is_unpremultiplied():
    straight = Image.new("RGBA", (4, 4), (200, 100, 50, 128))
    image = to_rgb_or_rgba(straight.convert("RGBa"))
    assert np.abs(np.asarray(image)[0, 0].astype(int) - (200, 100, 50, 128)).max() <= 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is text and not an image\n" * 4,
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
    ],
    ids=["zero-bytes", "text", "eps", "svg"],
)
def test_non_images_are_invalid_file_type(data):
    for call in (probe, decode):
        with pytest.raises(EngineError) as caught:
            call(data)
        assert caught.value.code == "invalid_file_type"
        assert caught.value.detail and "Traceback" not in caught.value.detail


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_are_invalid_file_type(fmt):
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    data = save(noisy, fmt)
    with pytest.raises(EngineError) as caught:
        decode(data[: len(data) // 2])
    assert caught.value.code == "invalid_file_type"
    assert "truncated" in caught.value.detail  # our wording, not the decoder's


@pytest.mark.parametrize(("width", "height"), [(10_000, 5_001), (40_000, 40_000)])
def test_decompression_bomb_refused_from_header(width, height):
    data = png_chunks(width, height, 8, 0, b"\x00" * 64)  # header claims it; pixels never decoded
    for call in (probe, decode):
        with pytest.raises(EngineError) as caught:
            call(data)
        assert caught.value.code == "resolution_too_high"
        assert f"{width}x{height}" in caught.value.detail, "the numbers, even past Pillow's own guard"
    with pytest.raises(EngineError) as caught:
        probe(png_chunks(10_000, 5_001, 8, 0, b""))
    assert "10000x5001" in caught.value.detail and "50" in caught.value.detail


def test_limit_is_configurable():
    data = save(reference(), "PNG")
    assert probe(data, max_pixels=W * H).width == W
    with pytest.raises(EngineError) as caught:
        decode(data, max_pixels=W * H - 1)
    assert caught.value.code == "resolution_too_high"
