"""Hostile and broken uploads through the real Envoy and server: each is a 400 with the right
code in the documented error body, nothing is charged, and the server answers the next call.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from decimal import Decimal

import pytest
import requests
from PIL import Image

from api_calls import PERSON, alpha_of, assert_error, balance, encode, picture, removebg

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def key(new_account) -> str:
    return new_account("hostile", subscription=Decimal(10), free_calls=10)


@pytest.fixture(scope="module")
def person(quality) -> bytes:
    return (quality / PERSON).read_bytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, followed by a tiny IDAT: a bomb's header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def sixty_megapixel_png() -> bytes:
    """A real, valid 10000x6000 PNG (60 MP, over the 50 MP cap) that is only a few kB on the
    wire: all of it one colour, 1 bit per pixel."""
    return encode(Image.new("1", (10_000, 6_000), 0), "PNG", optimize=True)


def assert_still_serving(stack, key: str, before: tuple[Decimal, int]) -> None:
    health = requests.get(stack.rest_url + "/healthz", timeout=10)
    assert health.status_code == 200, health.text[:200]
    assert balance(stack, key) == before, "a failed call charges nothing"


WRONG_TYPE = {
    "text": b"hello, this is not an image\n" * 20,
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" * 4,
    "html": b"<!DOCTYPE html><html><head><title>x</title></head><body><img src=x></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>',
    "jpeg_magic_then_garbage": b"\xff\xd8\xff\xe0" + os.urandom(4096),
    "png_magic_then_garbage": b"\x89PNG\r\n\x1a\n" + os.urandom(4096),
}


@pytest.mark.parametrize("name", list(WRONG_TYPE))
def test_wrong_type_is_invalid_file_type(stack, key, name):
    before = balance(stack, key)
    error = assert_error(removebg(stack, key, WRONG_TYPE[name], filename=f"file.{name}"), 400, "invalid_file_type")
    assert "not an image we can read" in error["detail"]
    assert_still_serving(stack, key, before)


@pytest.mark.parametrize("fraction", [0.5, 0.9], ids=["half", "nine_tenths"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file_is_invalid_file_type(stack, key, person, fmt, fraction):
    whole = person if fmt == "JPEG" else encode(Image.open(io.BytesIO(person)), fmt)
    before = balance(stack, key)
    response = removebg(stack, key, whole[: int(len(whole) * fraction)], filename=f"cut.{fmt.lower()}")
    assert_error(response, 400, "invalid_file_type")
    assert_still_serving(stack, key, before)


def test_header_only_file_is_invalid_file_type(stack, key, person):
    before = balance(stack, key)
    assert_error(removebg(stack, key, person[:300]), 400, "invalid_file_type")
    assert_still_serving(stack, key, before)


def test_zero_byte_upload_counts_as_no_image(stack, key):
    """The contract: an empty optional field counts as absent, so an empty file part is no source."""
    before = balance(stack, key)
    error = assert_error(removebg(stack, key, b"", size="preview"), 400, "missing_source")
    assert "image_file" in error["detail"]
    assert_still_serving(stack, key, before)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (65_535, 65_535), (10_000, 5_100)])
def test_png_header_claiming_a_huge_size_is_resolution_too_high(stack, key, width, height):
    before = balance(stack, key)
    error = assert_error(removebg(stack, key, png_claiming(width, height), filename="bomb.png"),
                         400, "resolution_too_high")
    assert f"{width}x{height}" in error["detail"] and "50 megapixels" in error["detail"]
    assert_still_serving(stack, key, before)


def test_highly_compressed_60_mp_png_is_resolution_too_high(stack, key):
    bomb = sixty_megapixel_png()
    assert len(bomb) < 200_000, "a few kB on the wire"
    before = balance(stack, key)
    error = assert_error(removebg(stack, key, bomb, filename="bomb.png"), 400, "resolution_too_high")
    assert "10000x6000" in error["detail"] and "60.0 megapixels" in error["detail"]
    assert_still_serving(stack, key, before)


def test_file_over_22_mb_is_file_too_large(stack, key):
    before = balance(stack, key)
    error = assert_error(removebg(stack, key, os.urandom(23 * 1024 * 1024), filename="big.jpg"), 400, "file_too_large")
    assert "22.0 MB" in error["detail"] and f"{23 * 1024 * 1024:,} bytes" in error["detail"]
    assert_still_serving(stack, key, before)


def test_base64_over_22_mb_is_file_too_large(stack, key):
    before = balance(stack, key)
    encoded = base64.b64encode(os.urandom(23 * 1024 * 1024)).decode()
    response = requests.post(stack.rest_url + "/v1.0/removebg", json={"image_file_b64": encoded},
                             headers={"X-Api-Key": key}, timeout=120)
    assert "22.0 MB" in assert_error(response, 400, "file_too_large")["detail"]
    assert_still_serving(stack, key, before)


@pytest.mark.parametrize(
    "background, code",
    [(WRONG_TYPE["html"], "invalid_file_type"), (png_claiming(100_000, 100_000), "resolution_too_high")],
    ids=["html", "bomb"],
)
def test_hostile_background_image_is_refused_before_inference(stack, key, person, background, code):
    before = balance(stack, key)
    files = {"bg_image_file": ("bg.png", background, "image/png")}
    error = assert_error(removebg(stack, key, person, files=files), 400, code)
    assert error["detail"].startswith("Background image:")
    assert_still_serving(stack, key, before)


def test_a_real_photo_still_works_after_all_that(stack, key, person):
    before = balance(stack, key)
    response = removebg(stack, key, person, size="small")
    alpha = alpha_of(picture(response))
    assert (alpha == 0).any() and (alpha == 255).any()
    assert balance(stack, key) == (before[0] - 1, before[1])
