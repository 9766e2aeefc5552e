"""The typed `RemoveBackgroundOptions` message rewritten as REST fields, so the typed door is
validated by exactly the same code (`service.params.parse_fields`) as the REST door."""

from __future__ import annotations

from clearbg.v1 import common_pb2, removebg_pb2

from service.errors import bad_request

_SIZES = {
    removebg_pb2.SIZE_AUTO: "auto",
    removebg_pb2.SIZE_PREVIEW: "preview",
    removebg_pb2.SIZE_SMALL: "small",
    removebg_pb2.SIZE_MEDIUM: "medium",
    removebg_pb2.SIZE_HD: "hd",
    removebg_pb2.SIZE_FULL: "full",
    removebg_pb2.SIZE_50MP: "50MP",
}
_TYPES = {
    common_pb2.FOREGROUND_TYPE_AUTO: "auto",
    common_pb2.FOREGROUND_TYPE_PERSON: "person",
    common_pb2.FOREGROUND_TYPE_PRODUCT: "product",
    common_pb2.FOREGROUND_TYPE_ANIMAL: "animal",
    common_pb2.FOREGROUND_TYPE_CAR: "car",
    common_pb2.FOREGROUND_TYPE_OTHER: "other",
}
TYPE_ENUMS = {name: value for value, name in _TYPES.items() if name != "auto"}
_TYPE_LEVELS = {
    removebg_pb2.TYPE_LEVEL_1: "1",
    removebg_pb2.TYPE_LEVEL_NONE: "none",
    removebg_pb2.TYPE_LEVEL_2: "2",
    removebg_pb2.TYPE_LEVEL_LATEST: "latest",
}
_FORMATS = {
    removebg_pb2.OUTPUT_FORMAT_PNG: "png",
    removebg_pb2.OUTPUT_FORMAT_JPG: "jpg",
    removebg_pb2.OUTPUT_FORMAT_WEBP: "webp",
    removebg_pb2.OUTPUT_FORMAT_ZIP: "zip",
    removebg_pb2.OUTPUT_FORMAT_AUTO: "auto",
}
_CHANNELS = {removebg_pb2.CHANNELS_RGBA: "rgba", removebg_pb2.CHANNELS_ALPHA: "alpha"}


def _position(position: removebg_pb2.Position) -> str | None:
    kind = position.WhichOneof("placement")
    if kind == "point":
        return f"{position.point.horizontal:g}% {position.point.vertical:g}%"
    return "original" if kind == "original" else None


def _length(length: removebg_pb2.Length, default: str) -> str:
    kind = length.WhichOneof("value")
    if kind == "pixels":
        return f"{length.pixels}px"
    if kind == "percent":
        return f"{length.percent:g}%"
    return default


def _enum(table: dict[int, str], value: int, name: str) -> str | None:
    if value == 0:  # *_UNSPECIFIED: the default
        return None
    try:
        return table[value]
    except KeyError:
        raise bad_request(f"invalid_{name}", f"{name} enum value {value} is unknown.") from None


def typed_fields(options: removebg_pb2.RemoveBackgroundOptions, image: bytes) -> dict[str, str | bytes]:
    fields: dict[str, str | bytes | None] = {
        "size": _enum(_SIZES, options.size, "size"),
        "type": _enum(_TYPES, options.type, "type"),
        "type_level": _enum(_TYPE_LEVELS, options.type_level, "type_level"),
        "format": _enum(_FORMATS, options.format, "format"),
        "channels": _enum(_CHANNELS, options.channels, "channels"),
        "bg_image_file": options.bg_image or None,
        "bg_image_url": options.bg_image_url or None,
        "image_url": options.image_url or None,
        "crop": "true" if options.crop else None,
        "roi": " ".join(
            _length(getattr(options.roi, name), default)
            for name, default in (("x1", "0%"), ("y1", "0%"), ("x2", "100%"), ("y2", "100%"))
        )
        if options.HasField("roi")
        else None,
        "crop_margin": " ".join(
            _length(getattr(options.crop_margin, side), "0px") for side in ("top", "right", "bottom", "left")
        )
        if options.HasField("crop_margin")
        else None,
        "scale": f"{options.scale_percent:g}%" if options.HasField("scale_percent") else None,
        "position": _position(options.position) if options.HasField("position") else None,
        "image_file": image or None,
    }
    if options.HasField("bg_color"):
        c = options.bg_color
        if max(c.red, c.green, c.blue, c.alpha) > 255:
            raise bad_request("invalid_bg_color", "bg_color components must be 0..255.")
        fields["bg_color"] = f"#{c.red:02x}{c.green:02x}{c.blue:02x}{c.alpha:02x}"
    return {name: value for name, value in fields.items() if value is not None}
