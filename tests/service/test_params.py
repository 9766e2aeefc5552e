"""Validation of REST fields, with the contract's error codes (the typed door: test_typed_options.py)."""

import base64

import pytest

from service.errors import ApiError
from engine.types import Length
from service.params import parse_color, parse_fields

CAP = 1000
IMAGE = b"\x89PNG-not-probed-here"


def error_code(fields, cap=CAP) -> str:
    with pytest.raises(ApiError) as caught:
        parse_fields(fields, cap)
    assert caught.value.status == 400
    return caught.value.code


def test_defaults():
    request = parse_fields({"image_file": IMAGE}, CAP)
    assert request.image == IMAGE
    assert request.size == "auto"
    assert request.report_type is True
    options = request.options
    assert (options.output_format, options.channels, options.foreground_type) == ("png", "rgba", "auto")
    assert options.bg_color is None and options.crop is False


@pytest.mark.parametrize(
    "given, canonical",
    [("preview", "preview"), ("small", "small"), ("regular", "small"), ("medium", "medium"), ("HD", "hd"),
     ("full", "full"), ("4k", "full"), ("50MP", "50MP"), ("auto", "auto"), ("undefined", "auto"), ("", "auto")],
)
def test_sizes(given, canonical):
    assert parse_fields({"image_file": IMAGE, "size": given}, CAP).size == canonical


@pytest.mark.parametrize(
    "fields, code",
    [
        ({}, "missing_source"),
        ({"image_file": b"", "image_url": "undefined"}, "missing_source"),
        ({"image_file": IMAGE, "image_file_b64": "eHg="}, "multiple_sources"),
        ({"image_file": IMAGE, "image_url": "http://example.com/a.jpg"}, "multiple_sources"),
        ({"image_file": IMAGE, "size": "huge"}, "invalid_size"),
        ({"image_file": IMAGE, "type": "robot"}, "invalid_type"),
        ({"image_file": IMAGE, "format": "gif"}, "invalid_format"),
        ({"image_file": IMAGE, "channels": "rgb"}, "invalid_channels"),
        ({"image_file": IMAGE, "crop": "yes"}, "invalid_crop"),
        ({"image_file": IMAGE, "type_level": "3"}, "invalid_type_level"),
        ({"image_file": IMAGE, "bg_color": "notacolour"}, "invalid_bg_color"),
        ({"image_file": IMAGE, "bg_color": "#12345"}, "invalid_bg_color"),
        ({"image_file": IMAGE, "bg_color": "red", "bg_image_file": IMAGE}, "multiple_bg_sources"),
        ({"image_file_b64": "@@not base64@@"}, "invalid_image_file_b64"),
        ({"image_file": b"x" * (CAP + 1)}, "file_too_large"),
        ({"image_file_b64": base64.b64encode(b"x" * (CAP + 10)).decode()}, "file_too_large"),
        ({"image_file": IMAGE, "bg_image_file": b"x" * (CAP + 1)}, "file_too_large"),
    ],
)
def test_errors(fields, code):
    assert error_code(fields) == code


def test_file_too_large_names_both_numbers():
    with pytest.raises(ApiError) as caught:
        parse_fields({"image_file": b"x" * 23_500_000}, 22 * 1024 * 1024)
    assert "23,500,000 bytes" in caught.value.detail
    assert "22.0 MB" in caught.value.detail


@pytest.mark.parametrize(
    "fields, name",
    [({"semitransparency": "false"}, "semitransparency"), ({"add_shadow": "true", "shadow_type": "car"}, "shadow_type"),
     ({"add_shadow": "true", "shadow_type": "3D"}, "shadow_type")],
)
def test_unimplemented_parameters_are_refused_by_name(fields, name):
    with pytest.raises(ApiError) as caught:
        parse_fields({"image_file": IMAGE, **fields}, CAP)
    assert caught.value.code == "unsupported_parameter"
    assert name in caught.value.detail


@pytest.mark.parametrize(
    "fields, opacity",
    [({}, None), ({"add_shadow": "false", "shadow_opacity": "80"}, None), ({"add_shadow": "true"}, 0.5),
     ({"add_shadow": "true", "shadow_type": "drop", "shadow_opacity": "80"}, 0.8),
     ({"add_shadow": "true", "shadow_type": "auto", "shadow_opacity": "0"}, 0.0)],
)
def test_drop_shadow(fields, opacity):
    assert parse_fields({"image_file": IMAGE, **fields}, CAP).options.shadow_opacity == opacity


@pytest.mark.parametrize("value", ["101", "-1", "50%", "10px", "half"])
def test_bad_shadow_opacity(value):
    assert error_code({"image_file": IMAGE, "add_shadow": "true", "shadow_opacity": value}) == "invalid_shadow_opacity"


def test_urls_are_kept_for_the_download_and_checked_like_other_sources():
    request = parse_fields({"image_url": " http://example.com/a.jpg ", "bg_image_url": "http://example.com/b.jpg"}, CAP)
    assert (request.image, request.image_url, request.bg_image_url) == (b"", "http://example.com/a.jpg", "http://example.com/b.jpg")
    with pytest.raises(ApiError) as caught:
        parse_fields({"image_file": IMAGE, "bg_color": "red", "bg_image_url": "http://example.com/b.jpg"}, CAP)
    assert caught.value.code == "multiple_bg_sources"


@pytest.mark.parametrize(
    "name, value",
    [("add_shadow", "false"), ("semitransparency", "true")],
)
def test_default_values_of_unimplemented_parameters_pass(name, value):
    assert parse_fields({"image_file": IMAGE, name: value}, CAP).image == IMAGE


def test_b64_variants_decode_to_the_same_bytes():
    data = bytes(range(200))
    plain = base64.b64encode(data).decode()
    for text in (plain, plain.rstrip("="), "data:image/png;base64," + plain, plain[:50] + "\n" + plain[50:],
                 base64.urlsafe_b64encode(data).decode()):
        assert parse_fields({"image_file_b64": text}, CAP).image == data


@pytest.mark.parametrize(
    "text, rgba",
    [("#f00", (255, 0, 0, 255)), ("0f08", (0, 255, 0, 136)), ("#112233", (17, 34, 51, 255)),
     ("11223380", (17, 34, 51, 128)), ("blue", (0, 0, 255, 255)), ("RebeccaPurple", (102, 51, 153, 255))],
)
def test_colours(text, rgba):
    assert parse_color(text) == rgba


def test_type_aliases_and_type_level_none():
    request = parse_fields({"image_file": IMAGE, "type": "graphic", "type_level": "none", "format": "JPEG"}, CAP)
    assert request.options.foreground_type == "other"
    assert request.options.output_format == "jpg"
    assert request.report_type is False


@pytest.mark.parametrize(
    "fields, scale, position",
    [({"scale": "original"}, None, None), ({"scale": "50%"}, 50.0, None), ({"scale": "10 %"}, 10.0, None),
     ({"position": "original"}, None, None), ({"position": "center"}, None, (50.0, 50.0)),
     ({"position": "20%"}, None, (20.0, 20.0)), ({"position": "0% 100%"}, None, (0.0, 100.0)),
     ({"scale": "80%", "position": "25% 75%"}, 80.0, (25.0, 75.0)), ({"scale": "80%", "position": "original"}, 80.0, "original")],
)
def test_scale_and_position(fields, scale, position):
    options = parse_fields({"image_file": IMAGE, **fields}, CAP).options
    assert (options.scale_percent, options.position) == (scale, position)


@pytest.mark.parametrize(
    "fields, code",
    [({"scale": "5%"}, "invalid_scale"), ({"scale": "101%"}, "invalid_scale"), ({"scale": "50"}, "invalid_scale"),
     ({"scale": "big"}, "invalid_scale"), ({"position": "left"}, "invalid_position"),
     ({"position": "120%"}, "invalid_position"), ({"position": "10% 20% 30%"}, "invalid_position"),
     ({"position": "-5%"}, "invalid_position")],
)
def test_scale_and_position_errors(fields, code):
    assert error_code({"image_file": IMAGE, **fields}) == code


@pytest.mark.parametrize("level, report, fine", [("1", True, False), ("none", False, False), ("2", True, True),
                                                 ("latest", True, True)])
def test_type_levels(level, report, fine):
    request = parse_fields({"image_file": IMAGE, "type_level": level}, CAP)
    assert (request.report_type, request.fine_type) == (report, fine)


PX, PCT = "px", "%"


@pytest.mark.parametrize(
    "text, expected",
    [("0% 0% 100% 100%", ((0, PCT), (0, PCT), (100, PCT), (100, PCT))),
     ("10px 20px 300px 400.5px", ((10, PX), (20, PX), (300, PX), (400.5, PX))),
     ("5%, 0 50% 60PX", ((5, PCT), (0, PX), (50, PCT), (60, PX)))],
)
def test_roi(text, expected):
    roi = parse_fields({"image_file": IMAGE, "roi": text}, CAP).options.roi
    assert roi == tuple(Length(v, u) for v, u in expected)


@pytest.mark.parametrize(
    "text, expected",
    [("10px", ((10, PX),) * 4),
     ("10px 5%", ((10, PX), (5, PCT), (10, PX), (5, PCT))),
     ("1px 2px 3px 4%", ((1, PX), (2, PX), (3, PX), (4, PCT))),
     ("0", ((0, PX),) * 4),
     ("500px 50%", ((500, PX), (50, PCT), (500, PX), (50, PCT)))],
)
def test_crop_margin(text, expected):
    margin = parse_fields({"image_file": IMAGE, "crop": "true", "crop_margin": text}, CAP).options.crop_margin
    assert margin == tuple(Length(v, u) for v, u in expected)


@pytest.mark.parametrize(
    "name, text",
    [("roi", "10px 10px 50px"), ("roi", "-1px 0 10px 10px"), ("roi", "a b c d"), ("roi", "1em 0 1 1"),
     ("crop_margin", "1px 2px 3px"), ("crop_margin", "501px"), ("crop_margin", "51%"), ("crop_margin", "-5px")],
)
def test_bad_roi_and_margin(name, text):
    assert error_code({"image_file": IMAGE, "crop": "true", name: text}) == f"invalid_{name}"


def test_details_never_echo_long_values():
    with pytest.raises(ApiError) as caught:
        parse_fields({"image_file": IMAGE, "size": "x" * 100_000}, CAP)
    assert len(caught.value.body()) < 300
