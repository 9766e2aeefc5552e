"""Every POST /v1.0/removebg parameter through the real Envoy, server and model, each checked on
the picture itself (a pixel, a size, a colour, a box), plus every error code with nothing charged.

The calls are charged to an account of their own (made through the storage API), so the
development account keeps the documented balance for tests/e2e/test_removebg.py. Most calls use
a 0.15 MP photo, under size=small's cap, so one inference each and no rescaling to reason about.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import zipfile
from decimal import Decimal

import numpy as np
import pytest
import requests
from PIL import Image

from api_calls import (
    PERSON,
    account_maker,
    alpha_box,
    alpha_of,
    assert_error,
    balance,
    encode,
    header_box,
    ok,
    picture,
    removebg,
)

pytestmark = pytest.mark.e2e

TYPES = ("person", "product", "animal", "car", "other")


@pytest.fixture(scope="module")
def key(new_account) -> str:
    return new_account("parameters", subscription=Decimal(500), free_calls=100)


@pytest.fixture(scope="module")
def person(quality) -> bytes:
    return (quality / PERSON).read_bytes()


@pytest.fixture(scope="module")
def cutout(stack, key, person) -> tuple[requests.Response, np.ndarray]:
    """The plain answer for the person photo at size=small: the reference most tests compare with."""
    response = removebg(stack, key, person, size="small")
    image = picture(response)
    assert image.size == (321, 481) and image.format == "PNG"
    return response, alpha_of(image)


def background_pixels(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the reference cut-out is fully transparent (certainly background)."""
    return np.nonzero(alpha == 0)


# -- size ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def five_mp(quality) -> bytes:
    """The person photo enlarged to 1800x2700 (4.86 MP): above hd's 4 MP, under PNG's 10 MP."""
    photo = Image.open(quality / PERSON).convert("RGB")
    return encode(photo.resize((1800, 2700), Image.Resampling.BICUBIC), "JPEG", quality=90)


@pytest.mark.parametrize(
    "size, cap",
    [("preview", 250_000), ("small", 250_000), ("regular", 250_000), ("medium", 1_500_000), ("hd", 4_000_000),
     ("full", None), ("4k", None), ("50MP", None), ("auto", None)],
)
def test_size_caps_the_output_pixels(stack, key, five_mp, size, cap):
    before = balance(stack, key)
    response = removebg(stack, key, five_mp, size=size, format="jpg")
    image = picture(response)
    pixels = image.width * image.height
    if cap is None:
        assert image.size == (1800, 2700), "full, 4k, 50MP and auto keep the original resolution"
    else:
        assert 0.98 * cap <= pixels <= cap, f"{size}: {image.size} = {pixels} px"
        assert abs(image.width / image.height - 1800 / 2700) < 0.01
    after = balance(stack, key)
    if size == "preview":
        assert response.headers["x-credits-charged"] == "0"
        assert after == (before[0], before[1] - 1), "a preview is free and uses one free call"
    else:
        assert Decimal(response.headers["x-credits-charged"]) == 1
        assert after == (before[0] - 1, before[1])
    assert Decimal(response.headers["x-credits-remaining"]) == after[0]


def test_png_output_is_scaled_to_its_10_mp_cap(stack, key, quality):
    photo = Image.open(quality / PERSON).convert("RGB").resize((3000, 4500), Image.Resampling.BILINEAR)  # 13.5 MP
    response = removebg(stack, key, encode(photo, "JPEG", quality=85), size="full", format="png")
    image = picture(response)
    assert 9_800_000 <= image.width * image.height <= 10_000_000
    assert abs(image.width / image.height - 3000 / 4500) < 0.01


# -- type and type_level ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, reported",
    [("person", "person"), ("product", "product"), ("animal", "animal"), ("car", "car"), ("other", "other"),
     ("graphic", "other"), ("transportation", "car")],
)
def test_given_type_is_echoed_in_x_type(stack, key, person, given, reported):
    response = removebg(stack, key, person, size="small", type=given, channels="alpha")
    assert ok(response).headers["x-type"] == reported
    assert picture(response).mode == "L"


def test_auto_type_names_a_person(cutout):
    response, _ = cutout
    assert response.headers["x-type"] == "person"


@pytest.mark.parametrize("level", ["1", "none", "2", "latest"])
def test_type_level(stack, key, quality, level):
    """The sheep photo: level 1 says animal, 2 and latest name the detector's class."""
    sheep = (quality / "grabcut50/images/sheep.jpg").read_bytes()
    response = ok(removebg(stack, key, sheep, size="small", type_level=level, channels="alpha"))
    if level == "none":
        assert "x-type" not in response.headers
    elif level == "1":
        assert response.headers["x-type"] == "animal"
    else:
        assert response.headers["x-type"] == "animal-sheep"


def test_type_level_2_for_a_person_is_person(stack, key, person):
    assert ok(removebg(stack, key, person, size="small", type_level="2")).headers["x-type"] == "person"


# -- format and channels ------------------------------------------------------------------------

MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "jpg": (b"\xff\xd8\xff", "image/jpeg"),
    "webp": (b"RIFF", "image/webp"),
    "zip": (b"PK\x03\x04", "application/zip"),
}


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_format_magic_bytes_and_pixels(stack, key, person, cutout, fmt):
    response = ok(removebg(stack, key, person, size="small", format=fmt))
    magic, content_type = MAGIC[fmt]
    assert response.content.startswith(magic) and response.headers["content-type"] == content_type
    image = picture(response)
    reference = cutout[1]
    if fmt == "jpg":  # no alpha: the cut-out flattened on white
        assert image.mode == "RGB"
        rows, cols = background_pixels(reference)
        assert np.asarray(image)[rows, cols].mean() > 245
    else:
        alpha = alpha_of(image)
        assert np.abs(alpha.astype(int) - reference).max() <= 2


def test_format_zip_holds_color_jpg_and_alpha_png_of_the_same_size(stack, key, person, cutout):
    response = ok(removebg(stack, key, person, size="small", format="zip"))
    assert response.content.startswith(MAGIC["zip"][0]) and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        colour = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert colour.format == "JPEG" and colour.mode == "RGB"
    assert alpha.format == "PNG" and alpha.mode == "L"
    assert colour.size == alpha.size == (int(response.headers["x-width"]), int(response.headers["x-height"]))
    assert np.abs(np.asarray(alpha).astype(int) - cutout[1]).max() <= 2


@pytest.mark.parametrize(
    "extra, fmt", [({}, "png"), ({"bg_color": "white"}, "jpg"), ({"bg_color": "#ffffff80"}, "png")],
    ids=["transparent", "opaque-bg", "translucent-bg"],
)
def test_format_auto_is_jpg_only_when_opaque(stack, key, person, extra, fmt):
    response = ok(removebg(stack, key, person, size="small", format="auto", **extra))
    assert response.content.startswith(MAGIC[fmt][0]) and response.headers["content-type"] == MAGIC[fmt][1]


def test_channels_alpha_is_the_rgba_answers_alpha(stack, key, person, cutout):
    image = picture(removebg(stack, key, person, size="small", channels="alpha"))
    assert image.mode == "L" and image.format == "PNG"
    assert np.abs(np.asarray(image).astype(int) - cutout[1]).max() <= 1


# -- backgrounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, rgba",
    [("f00", (255, 0, 0, 255)), ("#0f0", (0, 255, 0, 255)), ("00f8", (0, 0, 255, 136)), ("#0f08", (0, 255, 0, 136)),
     ("#123456", (18, 52, 86, 255)), ("12345680", (18, 52, 86, 128)), ("#ff000040", (255, 0, 0, 64)), ("#AbCdEf", (171, 205, 239, 255)),
     ("red", (255, 0, 0, 255)), ("RebeccaPurple", (102, 51, 153, 255)), ("darkolivegreen", (85, 107, 47, 255))],
)
def test_bg_color_fills_the_background(stack, key, person, cutout, text, rgba):
    response = ok(removebg(stack, key, person, size="small", bg_color=text, format="png"))
    image = picture(response)
    rows, cols = background_pixels(cutout[1])
    pixels = np.asarray(image.convert("RGBA"))[rows, cols]
    assert image.mode == ("RGB" if rgba[3] == 255 else "RGBA")
    assert (np.abs(pixels.astype(int) - rgba) <= 1).all(), pixels[:3]
    # The subject is still there: an opaque part of the cut-out is not the background colour.
    inside = np.nonzero(cutout[1] == 255)
    assert np.abs(np.asarray(image.convert("RGBA"))[inside].astype(int) - rgba).max() > 60


def quadrants(size: tuple[int, int]) -> Image.Image:
    """Four solid colours, one per quadrant, so a pixel tells where it came from."""
    width, height = size
    image = Image.new("RGB", size, (250, 0, 0))
    image.paste((0, 250, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 250), (0, height // 2, width // 2, height))
    image.paste((250, 250, 0), (width // 2, height // 2, width, height))
    return image


def test_bg_image_file_of_the_canvas_size_is_used_as_is(stack, key, person, cutout):
    background = quadrants((321, 481))
    files = {"bg_image_file": ("bg.png", encode(background, "PNG"), "image/png")}
    image = picture(removebg(stack, key, person, size="small", files=files))
    assert image.mode == "RGB"
    rows, cols = background_pixels(cutout[1])
    assert (np.asarray(image)[rows, cols] == np.asarray(background)[rows, cols]).all()
    seen = {tuple(pixel) for pixel in np.asarray(image)[rows, cols]}
    assert len(seen) == 4, "background shows in every quadrant, each with its own colour"


def test_bg_image_file_is_scaled_to_cover_and_centred(stack, key, person, cutout):
    """A background twice as wide: red left quarter, green middle half, blue right quarter.
    Covering the canvas keeps the height and the centre, so only green shows."""
    background = Image.new("RGB", (642, 481), (0, 250, 0))
    background.paste((250, 0, 0), (0, 0, 140, 481))  # 20 px short of the covered part, for the filter
    background.paste((0, 0, 250), (502, 0, 642, 481))
    files = {"bg_image_file": ("bg.jpg", encode(background, "PNG"), "image/png")}
    pixels = np.asarray(picture(removebg(stack, key, person, size="small", files=files)))
    rows, cols = background_pixels(cutout[1])
    assert (np.abs(pixels[rows, cols].astype(int) - (0, 250, 0)) <= 2).all()


# -- roi, crop, crop_margin, scale, position ----------------------------------------------------


@pytest.mark.parametrize("roi", ["0% 0% 50% 100%", "0px 0px 160px 481px", "0 0 160 481"])
def test_roi_outside_is_transparent(stack, key, person, cutout, roi):
    alpha = alpha_of(picture(removebg(stack, key, person, size="small", roi=roi)))
    assert alpha[:, 161:].max() == 0, "right of the region: background"
    assert alpha[:, :160].max() == 255 and (cutout[1][:, :160] > 127).any()
    assert (alpha[:, :150] > 127).sum() > 0.8 * (cutout[1][:, :150] > 127).sum()


def test_crop_is_the_foreground_box(stack, key, person, cutout):
    reference_box = header_box(cutout[0])
    response = removebg(stack, key, person, size="small", crop="true")
    image = picture(response)
    top, left, width, height = reference_box
    assert abs(image.width - width) <= 2 and abs(image.height - height) <= 2
    box = header_box(response)  # the subject now fills the picture
    assert box[0] <= 2 and box[1] <= 2 and abs(box[2] - image.width) <= 2 and abs(box[3] - image.height) <= 2
    # The cropped picture is the reference's box.
    cropped = cutout[1][top : top + height, left : left + width]
    alpha = alpha_of(image)
    common = (min(alpha.shape[0], cropped.shape[0]), min(alpha.shape[1], cropped.shape[1]))
    diff = np.abs(alpha[: common[0], : common[1]].astype(int) - cropped[: common[0], : common[1]])
    assert np.mean(diff) < 4


@pytest.mark.parametrize(
    "margin, grow",  # grow: (width, height) added, in px or in fractions of the subject's size
    [("10px", (20, 20)), ("0", (0, 0)), ("10px 30px", (60, 20)), ("5px 10px 15px 20px", (30, 20)),
     ("10%", (0.2, 0.2)), ("5% 10%", (0.2, 0.1)), ("20px 5%", (0.1, 40))],
)
def test_crop_margin_grows_the_crop(stack, key, person, cutout, margin, grow):
    _, _, width, height = header_box(cutout[0])
    image = picture(removebg(stack, key, person, size="small", crop="true", crop_margin=margin))
    want_w = width + (grow[0] * width if isinstance(grow[0], float) else grow[0])
    want_h = height + (grow[1] * height if isinstance(grow[1], float) else grow[1])
    assert abs(image.width - want_w) <= 3 and abs(image.height - want_h) <= 3, (image.size, want_w, want_h)


def test_crop_margin_sides_land_where_asked(stack, key, person):
    """top right bottom left = 40 0 0 10 px: the subject's box starts 40 px down and 10 px in."""
    image = picture(removebg(stack, key, person, size="small", crop="true", crop_margin="40px 0px 0px 10px"))
    top, left, width, height = alpha_box(alpha_of(image))
    assert abs(top - 40) <= 2 and abs(left - 10) <= 2
    assert abs(image.width - (left + width)) <= 2 and abs(image.height - (top + height)) <= 2


def test_scale_sizes_the_subject_and_centres_it(stack, key, person):
    response = removebg(stack, key, person, size="small", scale="50%")
    image = picture(response)
    assert image.size == (321, 481), "scale keeps the canvas"
    top, left, width, height = alpha_box(alpha_of(image))
    assert abs(max(width / 321, height / 481) - 0.5) < 0.02, (width, height)
    assert abs((left + width / 2) - 321 / 2) <= 2 and abs((top + height / 2) - 481 / 2) <= 2
    assert header_box(response) == (top, left, width, height)


@pytest.mark.parametrize("position, anchor", [("0% 100%", (0.0, 1.0)), ("100% 0%", (1.0, 0.0)), ("25%", (0.25, 0.25))])
def test_position_places_the_scaled_subject(stack, key, person, position, anchor):
    image = picture(removebg(stack, key, person, size="small", scale="40%", position=position))
    top, left, width, height = alpha_box(alpha_of(image))
    # The anchor is the fraction of the free space left of / above the subject.
    assert abs(left - anchor[0] * (321 - width)) <= 2, (left, width)
    assert abs(top - anchor[1] * (481 - height)) <= 2, (top, height)


def test_scale_with_position_original_keeps_the_subjects_place(stack, key, person, cutout):
    """The subject keeps its share of the free space left of and above it."""
    top, left, width, height = header_box(cutout[0])
    share = (left / (321 - width), top / (481 - height))
    image = picture(removebg(stack, key, person, size="small", scale="50%", position="original"))
    new_top, new_left, new_width, new_height = alpha_box(alpha_of(image))
    assert abs(max(new_width / 321, new_height / 481) - 0.5) < 0.02
    assert abs(new_left - share[0] * (321 - new_width)) <= 2 and abs(new_top - share[1] * (481 - new_height)) <= 2
    assert abs(share[0] - 0.5) > 0.1 or abs(share[1] - 0.5) > 0.1, "off-centre, or this proves nothing"


def test_position_center_without_scale_moves_the_subject(stack, key, person, cutout):
    """Cropped with 100 px below and left only, the subject sits top right; center moves it."""
    margin = "0px 0px 100px 100px"
    off_centre = alpha_box(alpha_of(picture(removebg(stack, key, person, size="small", crop="true", crop_margin=margin))))
    assert off_centre[0] <= 2 and off_centre[1] >= 98
    image = picture(removebg(stack, key, person, size="small", crop="true", crop_margin=margin, position="center"))
    top, left, width, height = alpha_box(alpha_of(image))
    assert abs((left + width / 2) - image.width / 2) <= 2 and abs((top + height / 2) - image.height / 2) <= 2
    assert abs(width - header_box(cutout[0])[2]) <= 3, "no scale: the subject keeps its size"


# -- headers: foreground box, credits, JSON answer -----------------------------------------------


def test_x_foreground_headers_are_the_alpha_box(cutout):
    response, alpha = cutout
    assert header_box(response) == alpha_box(alpha)
    top, left, width, height = header_box(response)
    assert 0 < width < alpha.shape[1] or 0 < height < alpha.shape[0]


def test_x_credits_headers_match_the_account(stack, key, person):
    before, free_before = balance(stack, key)
    response = ok(removebg(stack, key, person, size="small", channels="alpha"))
    after, free_after = balance(stack, key)
    assert Decimal(response.headers["x-credits-charged"]) == 1 == before - after
    assert Decimal(response.headers["x-credits-remaining"]) == after
    assert free_after == free_before


def test_rate_limit_headers_on_every_answer_and_429_with_retry_after(stack, new_account, person):
    """An account allowed 3 megapixel-images a minute: a 0.15 MP success costs 1, a refused
    call costs 1 too (its size is never known), and the fourth call is a 429."""
    limited = new_account("limited", subscription=Decimal(10), rate_limit_per_minute=3)
    now = time.time()
    first = ok(removebg(stack, limited, person, size="small", channels="alpha"))
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("3", "2")
    assert now - 5 <= int(first.headers["x-ratelimit-reset"]) <= now + 65
    for remaining in ("1", "0"):
        refused = removebg(stack, limited, person, size="huge")
        assert_error(refused, 400, "invalid_size")
        assert (refused.headers["x-ratelimit-limit"], refused.headers["x-ratelimit-remaining"]) == ("3", remaining)
    over = removebg(stack, limited, person, size="small")
    error = assert_error(over, 429, "rate_limit_exceeded")
    assert "3 megapixel-images per minute" in error["detail"]
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["x-ratelimit-remaining"] == "0"
    assert balance(stack, limited)[0] == 9, "only the success was charged"


def test_accept_json_is_the_same_image_and_box(stack, key, person):
    binary = removebg(stack, key, person, size="small")
    response = ok(removebg(stack, key, person, size="small", headers={"Accept": "application/json"}))
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()["data"]
    assert sorted(data) == ["foreground_height", "foreground_left", "foreground_top", "foreground_width", "result_b64"]
    decoded = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert np.abs(np.asarray(decoded).astype(int) - np.asarray(picture(binary))).max() <= 1
    box = (data["foreground_top"], data["foreground_left"], data["foreground_width"], data["foreground_height"])
    assert box == header_box(response) == header_box(binary)
    for name in ("x-width", "x-height", "x-type", "x-credits-charged", "x-credits-remaining"):
        assert name in response.headers


# -- shadows and glass ----------------------------------------------------------------------------


def test_add_shadow_draws_a_soft_drop_shadow(stack, key, person, cutout):
    reference_response, reference = cutout
    strong = removebg(stack, key, person, size="small", add_shadow="true", shadow_type="drop", shadow_opacity="80")
    weak = removebg(stack, key, person, size="small", add_shadow="true", shadow_opacity="20")
    pixels = np.asarray(picture(strong))
    alpha, weak_alpha = pixels[:, :, 3], alpha_of(picture(weak))
    assert header_box(strong) == header_box(reference_response), "X-Foreground-* is the subject's box"
    assert (alpha[reference == 255] == 255).all(), "the subject stays opaque"
    shadow_only = (reference == 0) & (alpha > 0)
    assert shadow_only.sum() > 500, "a visible shadow where the cut-out was transparent"
    rows, cols = np.nonzero(shadow_only)
    top, left, width, height = header_box(reference_response)
    assert np.median(rows) > top + height / 2 - 5 or np.median(cols) > left + width / 2, "down and right"
    assert (pixels[:, :, :3][shadow_only] == 0).all(), "a black shadow"
    assert alpha[0, 0] == 0 and alpha[-1, 0] == 0, "far from the subject, still transparent"
    ratio = alpha[shadow_only].astype(float).mean() / max(1.0, weak_alpha[shadow_only].astype(float).mean())
    assert 3.0 < ratio < 5.0, f"opacity 80 vs 20 gives {ratio:.2f}x the shadow"


@pytest.mark.parametrize(
    "fields, name",
    [({"add_shadow": "true", "shadow_type": "car"}, "shadow_type"), ({"add_shadow": "true", "shadow_type": "3D"}, "shadow_type"),
     ({"semitransparency": "false"}, "semitransparency")],
)
def test_unimplemented_picture_options_are_refused_by_name(stack, key, person, fields, name):
    before = balance(stack, key)
    error = assert_error(removebg(stack, key, person, size="small", **fields), 400, "unsupported_parameter")
    assert name in error["detail"]
    assert balance(stack, key) == before


def test_values_that_change_nothing_pass(stack, key, person, cutout):
    """remove.bg's defaults, and shadow settings without add_shadow, leave the picture as it is."""
    response = removebg(stack, key, person, size="small", add_shadow="false", semitransparency="true",
                        shadow_type="car", shadow_opacity="90")
    assert np.abs(alpha_of(picture(response)).astype(int) - cutout[1]).max() <= 1


# -- every error: documented shape, right code, nothing charged ---------------------------------


def errors_table(person: bytes) -> list[tuple[dict, int, str]]:
    """(multipart fields and files, status, code) for every 400 a parameter can cause."""
    image = {"image_file": ("p.jpg", person, "image/jpeg")}
    return [
        ({"files": {}, "data": {"size": "small"}}, 400, "missing_source"),
        ({"files": image, "data": {"image_file_b64": base64.b64encode(person[:64]).decode()}}, 400, "multiple_sources"),
        ({"files": image, "data": {"size": "huge"}}, 400, "invalid_size"),
        ({"files": image, "data": {"type": "robot"}}, 400, "invalid_type"),
        ({"files": image, "data": {"type_level": "3"}}, 400, "invalid_type_level"),
        ({"files": image, "data": {"format": "gif"}}, 400, "invalid_format"),
        ({"files": image, "data": {"channels": "rgb"}}, 400, "invalid_channels"),
        ({"files": image, "data": {"bg_color": "#12345"}}, 400, "invalid_bg_color"),
        ({"files": image, "data": {"bg_color": "notacolour"}}, 400, "invalid_bg_color"),
        ({"files": {**image, "bg_image_file": ("b.jpg", person, "image/jpeg")}, "data": {"bg_color": "red"}},
         400, "multiple_bg_sources"),
        ({"files": image, "data": {"crop": "maybe"}}, 400, "invalid_crop"),
        ({"files": image, "data": {"roi": "0 0 50%"}}, 400, "invalid_roi"),
        ({"files": image, "data": {"roi": "-1px 0 10px 10px"}}, 400, "invalid_roi"),
        ({"files": image, "data": {"roi": "0 0 400px 100px"}}, 400, "roi_exceeds_bounds"),
        ({"files": image, "data": {"roi": "10px 10px 10px 100px"}}, 400, "roi_region_empty"),
        ({"files": image, "data": {"crop": "true", "crop_margin": "60%"}}, 400, "invalid_crop_margin"),
        ({"files": image, "data": {"crop": "true", "crop_margin": "501px"}}, 400, "invalid_crop_margin"),
        ({"files": image, "data": {"crop": "true", "crop_margin": "1px 2px 3px"}}, 400, "invalid_crop_margin"),
        ({"files": image, "data": {"scale": "5%"}}, 400, "invalid_scale"),
        ({"files": image, "data": {"scale": "150%"}}, 400, "invalid_scale"),
        ({"files": image, "data": {"position": "left"}}, 400, "invalid_position"),
        ({"files": image, "data": {"position": "10% 20% 30%"}}, 400, "invalid_position"),
        ({"files": image, "data": {"semitransparency": "false"}}, 400, "unsupported_parameter"),
        ({"files": image, "data": {"add_shadow": "true", "shadow_type": "car"}}, 400, "unsupported_parameter"),
        ({"files": image, "data": {"add_shadow": "yes"}}, 400, "invalid_add_shadow"),
        ({"files": image, "data": {"add_shadow": "true", "shadow_type": "long"}}, 400, "invalid_shadow_type"),
        ({"files": image, "data": {"add_shadow": "true", "shadow_opacity": "150"}}, 400, "invalid_shadow_opacity"),
    ]


def test_every_parameter_error_is_shaped_and_free(stack, key, person):
    before = balance(stack, key)
    for case, status, code in errors_table(person):
        response = requests.post(
            stack.rest_url + "/v1.0/removebg",
            files=case["files"] or None,
            data=case["data"],
            headers={"X-Api-Key": key},
            timeout=60,
        )
        assert_error(response, status, code)
    assert balance(stack, key) == before


def test_body_errors_are_shaped_and_free(stack, key):
    before = balance(stack, key)
    url = stack.rest_url + "/v1.0/removebg"
    sent = {"X-Api-Key": key}
    assert_error(requests.post(url, data=b"x", headers={**sent, "Content-Type": "text/plain"}, timeout=30),
                 400, "unsupported_content_type")
    assert_error(requests.post(url, data=b"{not json", headers={**sent, "Content-Type": "application/json"}, timeout=30),
                 400, "invalid_body")
    assert_error(requests.post(url, json={"image_file_b64": "@@not base64@@"}, headers=sent, timeout=30),
                 400, "invalid_image_file_b64")
    assert balance(stack, key) == before


@pytest.mark.parametrize("headers, code", [({}, "missing_api_key"), ({"X-Api-Key": "cbg_wrong"}, "invalid_api_key")])
def test_missing_or_wrong_key_is_401_and_shaped(stack, person, headers, code):
    response = requests.post(stack.rest_url + "/v1.0/removebg", files={"image_file": person}, headers=headers, timeout=30)
    assert_error(response, 401, code)


def test_no_credits_is_402_and_charges_nothing(stack, new_account, person):
    broke = new_account("broke", subscription=Decimal(0), payg=Decimal("0.5"), free_calls=1)
    error = assert_error(removebg(stack, broke, person, size="small"), 402, "insufficient_credits")
    assert "0.5" in error["detail"]
    assert balance(stack, broke) == (Decimal("0.5"), 1)
    # auto with no credit left falls back to a (free) preview rather than failing.
    response = ok(removebg(stack, broke, person, size="auto"))
    assert response.headers["x-credits-charged"] == "0"
    assert picture(response).width * picture(response).height <= 250_000
    assert balance(stack, broke) == (Decimal("0.5"), 0)
    assert_error(removebg(stack, broke, person, size="preview"), 402, "insufficient_free_calls")
    assert balance(stack, broke) == (Decimal("0.5"), 0)


@pytest.fixture(scope="module")
def tight(stack_factory):
    """A stack of its own: one free preview per client IP a minute, no queue beyond the one
    inference in flight."""
    with stack_factory(CLEARBG_PREVIEW_IP_LIMIT="1", CLEARBG_MAX_QUEUE="0", CLEARBG_ENGINE_WORKERS="1") as running:
        with account_maker(running.database_url) as make:
            yield running, make


def test_free_previews_over_the_per_ip_limit_are_403(tight, person):
    running, make = tight
    key = make("previews", subscription=Decimal(5), free_calls=10)
    assert ok(removebg(running, key, person, size="preview")).headers["x-credits-charged"] == "0"
    over = removebg(running, key, person, size="preview")
    assert_error(over, 403, "ip_rate_limit_exceeded")
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert balance(running, key) == (Decimal(5), 9), "the refused preview used no free call"
    # Only free previews are limited by address: a paid call from the same address goes through.
    assert Decimal(ok(removebg(running, key, person, size="small", channels="alpha")).headers["x-credits-charged"]) == 1


def test_overload_is_503_with_retry_after_and_free(tight, quality):
    """Three calls 0.1 s apart while one inference at a time and no queue are allowed: the
    first runs, at least one later call is refused with 503, and only the answered ones pay.
    (0.4 s apart no longer overlapped: a full-size 8.6 MP PNG can take less than that now.)"""
    running, make = tight
    key = make("overload", subscription=Decimal(10))
    big = encode(Image.open(quality / PERSON).convert("RGB").resize((2400, 3600)), "JPEG", quality=90)
    responses: list[requests.Response] = []

    def call() -> None:
        responses.append(removebg(running, key, big, size="full", format="png"))

    threads = []
    for _ in range(3):
        threads.append(threading.Thread(target=call))
        threads[-1].start()
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=180)
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 200 and 503 in statuses, statuses
    for response in responses:
        if response.status_code == 503:
            assert_error(response, 503, "overloaded")
            assert int(response.headers["retry-after"]) >= 1
    assert balance(running, key)[0] == 10 - statuses.count(200)
