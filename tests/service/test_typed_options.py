"""The typed door (service/typed_options.py): typed values checked as such, the same rules and
defaults as the REST door (service/params.py), errors naming the field's path."""

from __future__ import annotations

import pytest

from clearbg.v1 import common_pb2, removebg_pb2 as pb
from engine.types import Length
from service import rules
from service.errors import ApiError
from service.params import parse_fields
from service.typed_options import typed_request

CAP = 1000
IMAGE = b"\x89PNG-not-probed-here"


def typed(image: bytes = IMAGE, **options):
    return typed_request(pb.RemoveBackgroundOptions(**options), image, CAP)


def refused(image: bytes = IMAGE, **options) -> ApiError:
    with pytest.raises(ApiError) as caught:
        typed(image, **options)
    assert caught.value.status == 400 and caught.value.grpc_code().name == "INVALID_ARGUMENT"
    return caught.value


# Each typed request beside the REST fields that mean the same: both doors must build the same thing.
SAME = [
    ({}, {}),
    (dict(size=pb.SIZE_HD, format=pb.OUTPUT_FORMAT_WEBP, channels=pb.CHANNELS_ALPHA, type_level=pb.TYPE_LEVEL_NONE),
     {"size": "hd", "format": "webp", "channels": "alpha", "type_level": "none"}),
    (dict(size=pb.SIZE_SMALL, type=common_pb2.FOREGROUND_TYPE_CAR, type_level=pb.TYPE_LEVEL_LATEST),
     {"size": "regular", "type": "transportation", "type_level": "latest"}),
    (dict(bg_color=pb.Color(red=1, green=2, blue=3)), {"bg_color": "#010203"}),
    (dict(bg_color=pb.Color(red=255, alpha=0x88)), {"bg_color": "#f008"}),
    (dict(crop=True, crop_margin=pb.Margin(top=pb.Length(pixels=10), right=pb.Length(percent=5),
                                           bottom=pb.Length(pixels=10), left=pb.Length(percent=5))),
     {"crop": "true", "crop_margin": "10px 5%"}),
    (dict(roi=pb.Region(x1=pb.Length(pixels=10), y2=pb.Length(percent=50))), {"roi": "10px 0% 100% 50%"}),
    (dict(scale_percent=80, position=pb.Position(point=pb.PercentPoint(horizontal=25, vertical=75))),
     {"scale": "80%", "position": "25% 75%"}),
    (dict(scale_percent=50, position=pb.Position(original=True)), {"scale": "50%", "position": "original"}),
    (dict(position=pb.Position(original=True)), {"position": "original"}),
    (dict(add_shadow=True), {"add_shadow": "true"}),
    (dict(add_shadow=True, shadow_type=pb.SHADOW_TYPE_AUTO, shadow_opacity=80),
     {"add_shadow": "true", "shadow_type": "auto", "shadow_opacity": "80"}),
    (dict(add_shadow=True, shadow_opacity=0), {"add_shadow": "1", "shadow_opacity": "0"}),
    (dict(shadow_type=pb.SHADOW_TYPE_3D), {"shadow_type": "3D"}),  # without add_shadow: nothing drawn, nothing refused
    (dict(semitransparency=True), {"semitransparency": "true"}),
    (dict(bg_image=b"background"), {"bg_image_file": b"background"}),
]


@pytest.mark.parametrize("options, fields", SAME, ids=[str(sorted(f)) for _, f in SAME])
def test_the_typed_door_builds_what_the_rest_door_builds(options, fields):
    assert typed(**options) == parse_fields({"image_file": IMAGE, **fields}, CAP)


def test_defaults_are_the_shared_ones():
    request = typed()
    assert request.size == rules.DEFAULT_SIZE and request.report_type and not request.fine_type
    options = request.options
    assert (options.output_format, options.channels, options.foreground_type) == (
        rules.DEFAULT_FORMAT, rules.DEFAULT_CHANNELS, rules.DEFAULT_TYPE)
    assert options.shadow_opacity is None and options.crop_margin == rules.NO_MARGIN


def test_a_shadow_defaults_to_half_opacity_and_an_absent_alpha_is_opaque():
    assert typed(add_shadow=True).options.shadow_opacity == rules.DEFAULT_SHADOW_OPACITY / 100
    assert typed(bg_color=pb.Color(green=128)).options.bg_color == (0, 128, 0, 255)
    assert typed(bg_color=pb.Color(green=128, alpha=0)).options.bg_color == (0, 128, 0, 0)


def test_a_url_source_needs_no_chunks():
    request = typed(b"", image_url="https://example.com/a.jpg", bg_image_url="https://example.com/b.jpg")
    assert (request.image, request.image_url, request.bg_image_url) == (b"", "https://example.com/a.jpg",
                                                                       "https://example.com/b.jpg")


@pytest.mark.parametrize(
    "options, field, code",
    [
        (dict(scale_percent=5), "scale_percent", "invalid_scale"),
        (dict(scale_percent=100.5), "scale_percent", "invalid_scale"),
        (dict(scale_percent=float("nan")), "scale_percent", "invalid_scale"),
        (dict(scale_percent=-50), "scale_percent", "invalid_scale"),
        (dict(roi=pb.Region(x1=pb.Length(percent=-1))), "roi.x1.percent", "invalid_roi"),
        (dict(roi=pb.Region(y2=pb.Length(percent=float("inf")))), "roi.y2.percent", "invalid_roi"),
        (dict(crop_margin=pb.Margin(top=pb.Length(pixels=501))), "crop_margin.top.pixels", "invalid_crop_margin"),
        (dict(crop_margin=pb.Margin(left=pb.Length(percent=50.5))), "crop_margin.left.percent", "invalid_crop_margin"),
        (dict(crop_margin=pb.Margin(bottom=pb.Length(percent=-3))), "crop_margin.bottom.percent", "invalid_crop_margin"),
        (dict(position=pb.Position(point=pb.PercentPoint(horizontal=-5, vertical=50))), "position.point.horizontal",
         "invalid_position"),
        (dict(position=pb.Position(point=pb.PercentPoint(horizontal=5, vertical=101))), "position.point.vertical",
         "invalid_position"),
        (dict(position=pb.Position(original=False)), "position.original", "invalid_position"),
        (dict(position=pb.Position()), "position", "invalid_position"),
        (dict(bg_color=pb.Color(red=256)), "bg_color.red", "invalid_bg_color"),
        (dict(bg_color=pb.Color(blue=3, alpha=300)), "bg_color.alpha", "invalid_bg_color"),
        (dict(shadow_opacity=101), "shadow_opacity", "invalid_shadow_opacity"),
        (dict(size=42), "size", "invalid_size"),
        (dict(type=-1), "type", "invalid_type"),
        (dict(format=9), "format", "invalid_format"),
        (dict(channels=7), "channels", "invalid_channels"),
        (dict(type_level=5), "type_level", "invalid_type_level"),
        (dict(shadow_type=11), "shadow_type", "invalid_shadow_type"),
        (dict(add_shadow=True, shadow_type=pb.SHADOW_TYPE_CAR), "shadow_type", "unsupported_parameter"),
        (dict(semitransparency=False), "semitransparency", "unsupported_parameter"),
    ],
)
def test_a_value_out_of_range_names_its_field(options, field, code):
    error = refused(**options)
    assert (error.field, error.code) == (field, code)
    assert error.detail.startswith(field) or repr(field.split(".")[0]) in error.detail, error.detail


def test_sources_and_backgrounds_are_counted_in_the_typed_doors_terms():
    missing = refused(b"")
    assert missing.code == "missing_source" and "image_chunk" in missing.detail
    both = refused(image_url="https://example.com/a.jpg")
    assert both.code == "multiple_sources" and "image_chunk, image_url" in both.detail
    backgrounds = refused(bg_color=pb.Color(red=1), bg_image=b"x")
    assert backgrounds.code == "multiple_bg_sources" and "bg_color, bg_image" in backgrounds.detail
    assert refused(b"x" * (CAP + 1)).code == "file_too_large"
    assert refused(bg_image=b"x" * (CAP + 1)).code == "file_too_large"


def test_the_limits_are_the_rest_doors():
    """One set of bounds: the largest value each door accepts is the same, one step beyond is refused by both."""
    for options, fields in [
        (dict(scale_percent=rules.SCALE_PERCENT.high), {"scale": f"{rules.SCALE_PERCENT.high:g}%"}),
        (dict(scale_percent=rules.SCALE_PERCENT.low), {"scale": f"{rules.SCALE_PERCENT.low:g}%"}),
        (dict(crop_margin=pb.Margin(top=pb.Length(pixels=int(rules.MARGIN_PX.high)))),
         {"crop_margin": f"{rules.MARGIN_PX.high:g}px 0 0 0"}),
        (dict(add_shadow=True, shadow_opacity=int(rules.SHADOW_OPACITY.high)),
         {"add_shadow": "true", "shadow_opacity": f"{rules.SHADOW_OPACITY.high:g}"}),
    ]:
        assert typed(**options) == parse_fields({"image_file": IMAGE, **fields}, CAP)
    with pytest.raises(ApiError):
        parse_fields({"image_file": IMAGE, "scale": f"{rules.SCALE_PERCENT.high + 1:g}%"}, CAP)
    refused(scale_percent=rules.SCALE_PERCENT.high + 1)
    with pytest.raises(ApiError):
        parse_fields({"image_file": IMAGE, "crop_margin": f"{rules.MARGIN_PX.high + 1:g}px"}, CAP)
    refused(crop_margin=pb.Margin(top=pb.Length(pixels=int(rules.MARGIN_PX.high) + 1)))


def test_length_pixels_cannot_be_negative_in_the_message():
    with pytest.raises(ValueError):
        pb.Length(pixels=-1)
    assert typed(roi=pb.Region(x2=pb.Length(pixels=4_000_000_000))).options.roi[2] == Length(4_000_000_000, "px")
