"""The typed door: `RemoveBackgroundOptions` checked as typed values and handed to the shared
rules (service/rules.py) that the REST door uses too; nothing is turned back into REST text.

A value out of range is a 400 (INVALID_ARGUMENT) naming the field's path (`roi.x1.percent`,
`scale_percent`), with the REST door's error code (`invalid_roi`, `invalid_scale`).
"""

from __future__ import annotations

from collections.abc import Mapping

from clearbg.v1 import common_pb2, removebg_pb2

from engine.types import RGBA, Length
from service import rules
from service.rules import Bounds, InvalidField, RemovalRequest

SIZES = {
    removebg_pb2.SIZE_AUTO: "auto",
    removebg_pb2.SIZE_PREVIEW: "preview",
    removebg_pb2.SIZE_SMALL: "small",
    removebg_pb2.SIZE_MEDIUM: "medium",
    removebg_pb2.SIZE_HD: "hd",
    removebg_pb2.SIZE_FULL: "full",
    removebg_pb2.SIZE_50MP: "50MP",
}
TYPES = {
    common_pb2.FOREGROUND_TYPE_AUTO: "auto",
    common_pb2.FOREGROUND_TYPE_PERSON: "person",
    common_pb2.FOREGROUND_TYPE_PRODUCT: "product",
    common_pb2.FOREGROUND_TYPE_ANIMAL: "animal",
    common_pb2.FOREGROUND_TYPE_CAR: "car",
    common_pb2.FOREGROUND_TYPE_OTHER: "other",
}
TYPE_ENUMS = {name: value for value, name in TYPES.items() if name != "auto"}
TYPE_LEVELS = {
    removebg_pb2.TYPE_LEVEL_1: "1",
    removebg_pb2.TYPE_LEVEL_NONE: "none",
    removebg_pb2.TYPE_LEVEL_2: "2",
    removebg_pb2.TYPE_LEVEL_LATEST: "latest",
}
FORMATS = {
    removebg_pb2.OUTPUT_FORMAT_PNG: "png",
    removebg_pb2.OUTPUT_FORMAT_JPG: "jpg",
    removebg_pb2.OUTPUT_FORMAT_WEBP: "webp",
    removebg_pb2.OUTPUT_FORMAT_ZIP: "zip",
    removebg_pb2.OUTPUT_FORMAT_AUTO: "auto",
}
CHANNELS = {removebg_pb2.CHANNELS_RGBA: "rgba", removebg_pb2.CHANNELS_ALPHA: "alpha"}
SHADOW_TYPES = {
    removebg_pb2.SHADOW_TYPE_AUTO: "auto",
    removebg_pb2.SHADOW_TYPE_DROP: "drop",
    removebg_pb2.SHADOW_TYPE_CAR: "car",
    removebg_pb2.SHADOW_TYPE_3D: "3D",
}


def _enum(table: Mapping[int, str], value: int, field: str, code: str) -> str | None:
    if value == 0:  # *_UNSPECIFIED: the default
        return None
    try:
        return table[value]
    except KeyError:
        raise InvalidField(code, f"{field}: {value} is not a known value.", field) from None


def _number(value: float, bounds: Bounds, field: str, code: str, unit: str = "") -> float:
    if not bounds.contains(value):
        raise InvalidField(code, f"{field} must be {bounds.describe(unit)}; got {value:g}.", field)
    return float(value)


def _length(length: removebg_pb2.Length, field: str, code: str, default: Length) -> Length:
    kind = length.WhichOneof("value")
    if kind == "pixels":
        return Length(_number(length.pixels, rules.LENGTH_PX, f"{field}.pixels", code), "px")
    if kind == "percent":
        return Length(_number(length.percent, rules.LENGTH_PERCENT, f"{field}.percent", code), "%")
    return default


def _roi(region: removebg_pb2.Region) -> tuple[Length, Length, Length, Length]:
    x1, y1, x2, y2 = (
        _length(getattr(region, name), f"roi.{name}", "invalid_roi", default)
        for name, default in zip(("x1", "y1", "x2", "y2"), rules.WHOLE_IMAGE)
    )
    return (x1, y1, x2, y2)


def _margin(margin: removebg_pb2.Margin) -> tuple[Length, Length, Length, Length]:
    sides = []
    for name in ("top", "right", "bottom", "left"):
        side = _length(getattr(margin, name), f"crop_margin.{name}", "invalid_crop_margin", Length(0))
        path = f"crop_margin.{name}.{'percent' if side.unit == '%' else 'pixels'}"
        _number(side.value, rules.margin_bounds(side), path, "invalid_crop_margin", side.unit)
        sides.append(side)
    top, right, bottom, left = sides
    return (top, right, bottom, left)


def _color(color: removebg_pb2.Color) -> RGBA:
    def component(name: str, value: int) -> int:
        return int(_number(value, rules.COLOR_COMPONENT, f"bg_color.{name}", "invalid_bg_color"))

    alpha = color.alpha if color.HasField("alpha") else 255
    return (component("red", color.red), component("green", color.green), component("blue", color.blue),
            component("alpha", alpha))


def _position(position: removebg_pb2.Position) -> tuple[float, float] | str:
    kind = position.WhichOneof("placement")
    if kind == "point":
        return (
            _number(position.point.horizontal, rules.POSITION_PERCENT, "position.point.horizontal", "invalid_position"),
            _number(position.point.vertical, rules.POSITION_PERCENT, "position.point.vertical", "invalid_position"),
        )
    if kind == "original" and position.original:
        return "original"
    if kind == "original":
        raise InvalidField("invalid_position", "position.original must be true when set (or give position.point).",
                           "position.original")
    raise InvalidField("invalid_position", "position needs original set to true, or a point.", "position")


def typed_request(options: removebg_pb2.RemoveBackgroundOptions, image: bytes, max_file_bytes: int) -> RemovalRequest:
    """The typed options checked field by field, then the shared rules."""
    asked = rules.Asked(
        image=image,
        image_url=options.image_url or None,
        size=_enum(SIZES, options.size, "size", "invalid_size"),
        foreground_type=_enum(TYPES, options.type, "type", "invalid_type"),
        type_level=_enum(TYPE_LEVELS, options.type_level, "type_level", "invalid_type_level"),
        output_format=_enum(FORMATS, options.format, "format", "invalid_format"),
        channels=_enum(CHANNELS, options.channels, "channels", "invalid_channels"),
        bg_color=_color(options.bg_color) if options.HasField("bg_color") else None,
        bg_image=options.bg_image or None,
        bg_image_url=options.bg_image_url or None,
        roi=_roi(options.roi) if options.HasField("roi") else None,
        crop=options.crop,
        crop_margin=_margin(options.crop_margin) if options.HasField("crop_margin") else None,
        scale_percent=(
            _number(options.scale_percent, rules.SCALE_PERCENT, "scale_percent", "invalid_scale", "%")
            if options.HasField("scale_percent") else None
        ),
        position=_position(options.position) if options.HasField("position") else None,  # type: ignore[arg-type]
        add_shadow=options.add_shadow,
        shadow_type=_enum(SHADOW_TYPES, options.shadow_type, "shadow_type", "invalid_shadow_type"),
        shadow_opacity=(
            _number(options.shadow_opacity, rules.SHADOW_OPACITY, "shadow_opacity", "invalid_shadow_opacity")
            if options.HasField("shadow_opacity") else None
        ),
        semitransparency=options.semitransparency if options.HasField("semitransparency") else None,
    )
    return rules.build_request(asked, max_file_bytes)
