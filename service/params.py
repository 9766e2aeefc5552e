"""REST text fields -> typed values -> the shared rules (service/rules.py) -> what the engine needs.

Only the REST door's text parsing lives here (aliases, "10px 5%", hex colours, base64); limits,
defaults and the rules between options are service/rules.py's, shared with the typed door.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Literal

from PIL import ImageColor

from engine.types import RGBA, Length
from service import rules
from service.errors import bad_request, shown
from service.rules import (  # noqa: F401  (the service's callers read these here too)
    AUTO_SIZE,
    PAID_SIZES,
    SIZE_PIXELS,
    RemovalRequest,
    check_file_size,
)

SIZE_ALIASES = {"regular": "small", "4k": "full", "50mp": "50MP"}
TYPES = {**{name: name for name in rules.FOREGROUND_TYPES}, "graphic": "other", "transportation": "car"}
FORMATS = {**{name: name for name in rules.OUTPUT_FORMATS}, "jpeg": "jpg"}
SHADOW_TYPES = {"drop": "drop", "auto": "auto", "car": "car", "3d": "3D"}
# semitransparency=true is remove.bg's default (soft regions stay soft, as they do here): the
# value that changes nothing passes, so clients that always send the defaults keep working.
SEMITRANSPARENCY_HARMLESS = frozenset({"true", "1"})

# A unitless number counts as pixels ("0" is the usual way to write no margin).
_LENGTH = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(px|%)?", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%")
_HEX = re.compile(r"#?([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_DATA_URL = re.compile(r"data:[\w.+/-]*(;[\w=.+-]*)*;base64,", re.IGNORECASE)


def present(fields: Mapping[str, str | bytes], name: str) -> str | bytes | None:
    """The field's value, or None where the contract counts it as absent."""
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("", "undefined"):
        return None
    if isinstance(value, bytes) and not value:
        return None
    return value.strip() if isinstance(value, str) else value


def _text(fields: Mapping[str, str | bytes], name: str) -> str | None:
    value = present(fields, name)
    if isinstance(value, bytes):
        raise bad_request(f"invalid_{name}", f"{name} must be a text field, not a file.")
    return value


def _choice(fields: Mapping[str, str | bytes], name: str, table: Mapping[str, str]) -> str | None:
    value = _text(fields, name)
    if value is None:
        return None
    try:
        return table[value.lower()]
    except KeyError:
        allowed = ", ".join(dict.fromkeys(table))
        raise bad_request(f"invalid_{name}", f"{name} {shown(value)} is not one of: {allowed}.") from None


def parse_bool(fields: Mapping[str, str | bytes], name: str, default: bool = False) -> bool:
    value = _text(fields, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_request(f"invalid_{name}", f"{name} must be true or false, got {shown(value)}.")


def parse_size(fields: Mapping[str, str | bytes]) -> str:
    value = _text(fields, "size")
    if value is None:
        return rules.DEFAULT_SIZE
    name = SIZE_ALIASES.get(value.lower(), value.lower())
    if name == "auto" or name in SIZE_PIXELS:
        return name
    raise bad_request(
        "invalid_size",
        f"size {shown(value)} is not one of: auto, preview, small, regular, medium, hd, full, 4k, 50MP.",
    )


def parse_color(value: str) -> RGBA:
    """Hex with 3, 4, 6 or 8 digits (with or without '#'; 4 and 8 carry alpha) or a CSS name."""
    match = _HEX.fullmatch(value)
    if match:
        digits = match.group(1)
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        if len(digits) == 6:
            digits += "ff"
        r, g, b, a = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
        return (r, g, b, a)
    if value.lower() in ImageColor.colormap:
        r, g, b = ImageColor.getrgb(value.lower())[:3]
        return (r, g, b, 255)
    raise bad_request(
        "invalid_bg_color",
        f"bg_color {shown(value)} is neither a hex colour (3, 4, 6 or 8 digits) nor a CSS colour name.",
    )


def _lengths(name: str, value: str, counts: tuple[int, ...], example: str) -> list[Length]:
    parts = value.replace(",", " ").split()
    if len(parts) not in counts:
        raise bad_request(f"invalid_{name}", f"{name} needs {' or '.join(map(str, counts))} values, e.g. {example!r}.")
    lengths = []
    for part in parts:
        match = _LENGTH.fullmatch(part)
        if match is None:
            raise bad_request(
                f"invalid_{name}", f"{name} value {shown(part)} is not a non-negative number with px or %, e.g. {example!r}."
            )
        lengths.append(Length(float(match.group(1)), "%" if match.group(2) == "%" else "px"))
    return lengths


def parse_roi(value: str) -> tuple[Length, Length, Length, Length]:
    """`x1 y1 x2 y2`, each px or %; the bounds are checked against the image by the engine."""
    x1, y1, x2, y2 = _lengths("roi", value, (4,), "10% 10% 90% 90%")
    return (x1, y1, x2, y2)


def parse_crop_margin(value: str) -> tuple[Length, Length, Length, Length]:
    """1 value (all sides), 2 (vertical horizontal) or 4 (top right bottom left), like CSS."""
    lengths = _lengths("crop_margin", value, (1, 2, 4), "10px 5%")
    for length in lengths:
        if not rules.margin_bounds(length).contains(length.value):
            raise bad_request(
                "invalid_crop_margin",
                f"crop_margin is at most {rules.MARGIN_PERCENT.high:g}% or {rules.MARGIN_PX.high:g}px a side.",
            )
    if len(lengths) == 1:
        lengths *= 4
    elif len(lengths) == 2:
        lengths = [lengths[0], lengths[1], lengths[0], lengths[1]]
    top, right, bottom, left = lengths
    return (top, right, bottom, left)


def parse_scale(value: str) -> float | None:
    """`original` (None) or 10%..100%: the subject's size relative to the canvas."""
    if value.lower() == "original":
        return None
    match = _PERCENT.fullmatch(value)
    if match is None or not rules.SCALE_PERCENT.contains(float(match.group(1))):
        raise bad_request(
            "invalid_scale", f"scale {shown(value)} is not 'original' or a percentage {rules.SCALE_PERCENT.describe('%')}."
        )
    return float(match.group(1))


def parse_position(value: str) -> tuple[float, float] | Literal["original"]:
    """`original`, `center`, or one (both axes) or two (horizontal vertical) percentages."""
    lowered = value.lower()
    if lowered == "original":
        return "original"
    if lowered in ("center", "centre"):
        return (50.0, 50.0)
    parts = value.replace(",", " ").split()
    matches = [_PERCENT.fullmatch(part) for part in parts]
    if (
        len(parts) not in (1, 2)
        or not all(matches)
        or not all(rules.POSITION_PERCENT.contains(float(m.group(1))) for m in matches)  # type: ignore[union-attr]
    ):
        raise bad_request(
            "invalid_position",
            f"position {shown(value)} is not 'original', 'center' or one or two percentages "
            f"({rules.POSITION_PERCENT.describe('%')}), e.g. '50% 70%'.",
        )
    values = [float(m.group(1)) for m in matches]  # type: ignore[union-attr]
    return (values[0], values[-1])


def parse_shadow_opacity(fields: Mapping[str, str | bytes]) -> float | None:
    text = _text(fields, "shadow_opacity")
    if text is None:
        return None
    match = _LENGTH.fullmatch(text)
    if match is None or match.group(2) is not None or not rules.SHADOW_OPACITY.contains(float(match.group(1))):
        raise bad_request(
            "invalid_shadow_opacity", f"shadow_opacity {shown(text)} is not a number {rules.SHADOW_OPACITY.describe()}."
        )
    return float(match.group(1))


def parse_semitransparency(fields: Mapping[str, str | bytes]) -> bool | None:
    """Only the value that changes nothing is accepted (see SEMITRANSPARENCY_HARMLESS)."""
    value = present(fields, "semitransparency")
    if value is None:
        return None
    if isinstance(value, str) and " ".join(value.lower().split()) in SEMITRANSPARENCY_HARMLESS:
        return True
    return False  # refused by the rules as unsupported, whatever else it says


def _decode_b64(value: str | bytes, max_file_bytes: int) -> bytes:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())
    # Refuse before decoding: base64 is 4 characters for 3 bytes.
    if len(text) // 4 * 3 > max_file_bytes + 3:
        raise rules.too_large(len(text) // 4 * 3, max_file_bytes)
    text += "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(text, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise bad_request("invalid_image_file_b64", "image_file_b64 is not valid base64.")


def parse_fields(fields: Mapping[str, str | bytes], max_file_bytes: int) -> RemovalRequest:
    """Validates everything that needs no decode; the caller probes the image next."""
    rules.check_sources(
        [name for name in ("image_file", "image_file_b64", "image_url") if present(fields, name) is not None],
        [name for name in ("bg_color", "bg_image_file", "bg_image_url") if present(fields, name) is not None],
        "send one of image_file, image_file_b64 or image_url",
    )
    size = parse_size(fields)
    foreground_type = _choice(fields, "type", TYPES)
    output_format = _choice(fields, "format", FORMATS)
    channels = _choice(fields, "channels", {c: c for c in rules.CHANNELS})
    type_level = _choice(fields, "type_level", {level: level for level in rules.TYPE_LEVELS})
    crop = parse_bool(fields, "crop")
    roi_text = _text(fields, "roi")
    margin_text = _text(fields, "crop_margin")
    add_shadow = parse_bool(fields, "add_shadow")
    shadow_type = _choice(fields, "shadow_type", SHADOW_TYPES)
    shadow_opacity = parse_shadow_opacity(fields)
    scale_text = _text(fields, "scale")
    position_text = _text(fields, "position")
    bg_text = _text(fields, "bg_color")
    asked = dict(
        size=size, foreground_type=foreground_type, output_format=output_format, channels=channels,
        type_level=type_level, crop=crop,
        roi=parse_roi(roi_text) if roi_text is not None else None,
        crop_margin=parse_crop_margin(margin_text) if margin_text is not None else None,
        add_shadow=add_shadow, shadow_type=shadow_type, shadow_opacity=shadow_opacity,
        scale_percent=parse_scale(scale_text) if scale_text is not None else None,
        position=parse_position(position_text) if position_text is not None else None,
        bg_color=parse_color(bg_text) if bg_text is not None else None,
        semitransparency=parse_semitransparency(fields),
    )

    bg_image = present(fields, "bg_image_file")
    if isinstance(bg_image, str):
        raise bad_request("invalid_bg_image_file", "bg_image_file must be a file upload.")

    image_url = _text(fields, "image_url")
    if image_url is not None:
        image = b""
    elif present(fields, "image_file") is not None:
        image = present(fields, "image_file")
        if isinstance(image, str):  # a form field rather than a file part
            image = image.encode("utf-8")
    else:
        image = _decode_b64(present(fields, "image_file_b64"), max_file_bytes)  # type: ignore[arg-type]
    return rules.build_request(
        rules.Asked(image=image, image_url=image_url, bg_image=bg_image, bg_image_url=_text(fields, "bg_image_url"), **asked),
        max_file_bytes,
    )
