"""REST fields (or typed gRPC options, turned into the same fields) -> what the engine needs.

One validator for every door: `typed_fields` rewrites the typed options as REST fields and
`parse_fields` checks them, so each rule and error code lives in one place.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from PIL import ImageColor

from engine.types import RGBA, Length, RemovalOptions
from service.errors import ApiError, bad_request, shown

# Largest output, in pixels, that each `size` allows. `auto` is resolved against the balance.
SIZE_PIXELS: dict[str, int] = {
    "preview": 250_000,  # 625 x 400
    "small": 250_000,
    "medium": 1_500_000,
    "hd": 4_000_000,
    "full": 25_000_000,
    "50MP": 50_000_000,
}
SIZE_ALIASES = {"regular": "small", "4k": "full", "50mp": "50MP"}
PAID_SIZES = ("small", "medium", "hd", "full", "50MP")
AUTO_SIZE = "full"  # the best `auto` gives, for an account that can pay

TYPES = {
    "auto": "auto",
    "person": "person",
    "product": "product",
    "animal": "animal",
    "car": "car",
    "other": "other",
    "graphic": "other",
    "transportation": "car",
}
FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp", "zip": "zip", "auto": "auto"}
CHANNELS = ("rgba", "alpha")

# Not implemented yet. Answered with 400 `unsupported_parameter` unless the value is the one
# that changes nothing (so clients that always send the defaults keep working):
# semitransparency=true is remove.bg's default (soft regions stay soft, as they do here).
UNSUPPORTED: dict[str, frozenset[str]] = {
    "semitransparency": frozenset({"true", "1"}),
}
# add_shadow draws a soft drop shadow from the matte; remove.bg's car and 3D shadows are not
# implemented and are refused by name. `auto` picks drop, the only kind there is.
SHADOW_TYPES = {"drop": "drop", "auto": "drop", "car": "car", "3d": "3D"}
DEFAULT_SHADOW_OPACITY = 50

# A unitless number counts as pixels ("0" is the usual way to write no margin).
_LENGTH = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(px|%)?", re.IGNORECASE)
MAX_MARGIN_PX = 500
MAX_MARGIN_PERCENT = 50
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%")
MIN_SCALE_PERCENT, MAX_SCALE_PERCENT = 10, 100
_HEX = re.compile(r"#?([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_DATA_URL = re.compile(r"data:[\w.+/-]*(;[\w=.+-]*)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class RemovalRequest:
    image: bytes
    size: str  # canonical: auto, preview, small, medium, hd, full, 50MP
    report_type: bool  # False for type_level=none: no X-Type
    options: RemovalOptions  # max_output_pixels is set once `size` is resolved
    fine_type: bool = False  # type_level=2/latest: X-Type names the finer class where known
    # Set when the caller gave URLs: `image` (empty until then) and `options.bg_image` are
    # downloaded by the caller of parse_fields (service.fetching), after these cheap checks.
    image_url: str | None = None
    bg_image_url: str | None = None


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB ({n:,} bytes)"


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


def _choice(fields: Mapping[str, str | bytes], name: str, table: Mapping[str, str], default: str) -> str:
    value = _text(fields, name)
    if value is None:
        return default
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
        return "auto"
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
        limit = MAX_MARGIN_PERCENT if length.unit == "%" else MAX_MARGIN_PX
        if length.value > limit:
            raise bad_request(
                "invalid_crop_margin", f"crop_margin is at most {MAX_MARGIN_PERCENT}% or {MAX_MARGIN_PX}px a side."
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
    if match is None or not MIN_SCALE_PERCENT <= float(match.group(1)) <= MAX_SCALE_PERCENT:
        raise bad_request(
            "invalid_scale",
            f"scale {shown(value)} is not 'original' or a percentage from {MIN_SCALE_PERCENT}% to {MAX_SCALE_PERCENT}%.",
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
    if len(parts) not in (1, 2) or not all(matches) or any(float(m.group(1)) > 100 for m in matches):  # type: ignore[union-attr]
        raise bad_request(
            "invalid_position",
            f"position {shown(value)} is not 'original', 'center' or one or two percentages (0% to 100%), e.g. '50% 70%'.",
        )
    values = [float(m.group(1)) for m in matches]  # type: ignore[union-attr]
    return (values[0], values[-1])


def parse_shadow(fields: Mapping[str, str | bytes]) -> float | None:
    """add_shadow, shadow_type, shadow_opacity (0..100, default 50) -> shadow opacity 0..1 or None."""
    add = parse_bool(fields, "add_shadow")
    kind = _choice(fields, "shadow_type", SHADOW_TYPES, "drop")
    text = _text(fields, "shadow_opacity")
    opacity = float(DEFAULT_SHADOW_OPACITY)
    if text is not None:
        match = _LENGTH.fullmatch(text)
        if match is None or match.group(2) is not None or float(match.group(1)) > 100:
            raise bad_request("invalid_shadow_opacity", f"shadow_opacity {shown(text)} is not a number from 0 to 100.")
        opacity = float(match.group(1))
    if not add:
        return None
    if kind != "drop":
        raise bad_request(
            "unsupported_parameter", f"The parameter 'shadow_type' {kind!r} is not supported by this server: use 'drop'."
        )
    return opacity / 100.0


def _decode_b64(value: str | bytes, max_file_bytes: int) -> bytes:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())
    # Refuse before decoding: base64 is 4 characters for 3 bytes.
    if len(text) // 4 * 3 > max_file_bytes + 3:
        raise _too_large(len(text) // 4 * 3, max_file_bytes)
    text += "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(text, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise bad_request("invalid_image_file_b64", "image_file_b64 is not valid base64.")


def _too_large(size: int, limit: int) -> ApiError:
    return bad_request("file_too_large", f"The file is {_mb(size)}; the limit is {_mb(limit)}.")


def check_file_size(size: int, max_file_bytes: int) -> None:
    if size > max_file_bytes:
        raise _too_large(size, max_file_bytes)


def _check_unsupported(fields: Mapping[str, str | bytes]) -> None:
    for name, harmless in UNSUPPORTED.items():
        value = present(fields, name)
        if value is None:
            continue
        if isinstance(value, str) and " ".join(value.lower().split()) in harmless:
            continue
        raise bad_request("unsupported_parameter", f"The parameter {name!r} is not supported by this server yet.")


def parse_fields(fields: Mapping[str, str | bytes], max_file_bytes: int) -> RemovalRequest:
    """Validates everything that needs no decode; the caller probes the image next."""
    sources = [name for name in ("image_file", "image_file_b64", "image_url") if present(fields, name) is not None]
    if not sources:
        raise bad_request("missing_source", "No image given: send one of image_file, image_file_b64 or image_url.")
    if len(sources) > 1:
        raise bad_request("multiple_sources", f"Send exactly one image source; got {', '.join(sources)}.")
    bg_sources = [name for name in ("bg_color", "bg_image_file", "bg_image_url") if present(fields, name) is not None]
    if len(bg_sources) > 1:
        raise bad_request("multiple_bg_sources", f"Send at most one background; got {', '.join(bg_sources)}.")

    size = parse_size(fields)
    foreground_type = _choice(fields, "type", TYPES, "auto")
    output_format = _choice(fields, "format", FORMATS, "png")
    channels = _choice(fields, "channels", {c: c for c in CHANNELS}, "rgba")
    type_level = _choice(fields, "type_level", {"1": "1", "none": "none", "2": "2", "latest": "latest"}, "1")
    crop = parse_bool(fields, "crop")
    roi_text = _text(fields, "roi")
    roi = parse_roi(roi_text) if roi_text is not None else None
    margin_text = _text(fields, "crop_margin")
    crop_margin = parse_crop_margin(margin_text) if margin_text is not None else RemovalOptions().crop_margin
    shadow = parse_shadow(fields)
    scale_text = _text(fields, "scale")
    scale = parse_scale(scale_text) if scale_text is not None else None
    position_text = _text(fields, "position")
    position = parse_position(position_text) if position_text is not None else None
    if position == "original" and scale is None:
        position = None  # unscaled and unmoved: nothing to place
    bg_text = _text(fields, "bg_color")
    bg_color = parse_color(bg_text) if bg_text is not None else None
    _check_unsupported(fields)

    bg_image = present(fields, "bg_image_file")
    if isinstance(bg_image, str):
        raise bad_request("invalid_bg_image_file", "bg_image_file must be a file upload.")
    if bg_image is not None:
        check_file_size(len(bg_image), max_file_bytes)

    image_url = _text(fields, "image_url")
    if image_url is not None:
        image = b""
    elif sources == ["image_file"]:
        image = present(fields, "image_file")
        if isinstance(image, str):  # a form field rather than a file part
            image = image.encode("utf-8")
    else:
        image = _decode_b64(present(fields, "image_file_b64"), max_file_bytes)  # type: ignore[arg-type]
    check_file_size(len(image), max_file_bytes)

    options = RemovalOptions(
        foreground_type=foreground_type,  # type: ignore[arg-type]
        output_format=output_format,  # type: ignore[arg-type]
        channels=channels,  # type: ignore[arg-type]
        bg_color=bg_color,
        bg_image=bg_image,
        crop=crop,
        crop_margin=crop_margin,
        roi=roi,
        scale_percent=scale,  # the engine centres a scaled subject unless `position` says otherwise
        position=position,
        shadow_opacity=shadow,
    )
    return RemovalRequest(
        image=image,
        size=size,
        report_type=type_level != "none",
        options=options,
        fine_type=type_level in ("2", "latest"),
        image_url=image_url,
        bg_image_url=_text(fields, "bg_image_url"),
    )
