"""The rules both doors share: limits, defaults and the checks between options.

Each door parses its own input into typed values (service/params.py: REST text fields;
service/typed_options.py: the typed gRPC message) and hands them to `build_request`, which
applies the same defaults and cross-field rules and builds what the engine needs. The limits
below are checked by each door on its own values (`Bounds.contains`), with errors in its own
terms: REST quotes the text it got, the typed door names the field's path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from engine.types import RGBA, Length, RemovalOptions
from service.errors import ApiError, bad_request

# Largest output, in pixels, that each `size` allows. `auto` is resolved against the balance.
SIZE_PIXELS: dict[str, int] = {
    "preview": 250_000,  # 625 x 400
    "small": 250_000,
    "medium": 1_500_000,
    "hd": 4_000_000,
    "full": 25_000_000,
    "50MP": 50_000_000,
}
PAID_SIZES = ("small", "medium", "hd", "full", "50MP")
AUTO_SIZE = "full"  # the best `auto` gives, for an account that can pay

FOREGROUND_TYPES = ("auto", "person", "product", "animal", "car", "other")
OUTPUT_FORMATS = ("png", "jpg", "webp", "zip", "auto")
CHANNELS = ("rgba", "alpha")
TYPE_LEVELS = ("1", "none", "2", "latest")
# add_shadow draws a soft drop shadow from the matte; remove.bg's car and 3D shadows are not
# implemented and are refused by name. `auto` picks drop, the only kind there is.
SHADOW_TYPES = ("drop", "auto", "car", "3D")

# Defaults of absent options (remove.bg's).
DEFAULT_SIZE = "auto"
DEFAULT_TYPE = "auto"
DEFAULT_FORMAT = "png"
DEFAULT_CHANNELS = "rgba"
DEFAULT_TYPE_LEVEL = "1"
DEFAULT_SHADOW_TYPE = "drop"
DEFAULT_SHADOW_OPACITY = 50.0
NO_MARGIN = RemovalOptions().crop_margin
WHOLE_IMAGE = (Length(0, "%"), Length(0, "%"), Length(100, "%"), Length(100, "%"))  # roi x1 y1 x2 y2


@dataclass(frozen=True)
class Bounds:
    """An inclusive range of finite numbers."""

    low: float
    high: float = math.inf

    def contains(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high

    def describe(self, unit: str = "") -> str:
        if math.isinf(self.high):
            return f"{self.low:g}{unit} or more"
        return f"from {self.low:g}{unit} to {self.high:g}{unit}"


MARGIN_PX = Bounds(0, 500)  # crop_margin, a side
MARGIN_PERCENT = Bounds(0, 50)
LENGTH_PX = Bounds(0)  # roi and crop_margin lengths; roi's bounds against the image are the engine's
LENGTH_PERCENT = Bounds(0)
SCALE_PERCENT = Bounds(10, 100)
POSITION_PERCENT = Bounds(0, 100)
SHADOW_OPACITY = Bounds(0, 100)
COLOR_COMPONENT = Bounds(0, 255)


def margin_bounds(length: Length) -> Bounds:
    return MARGIN_PERCENT if length.unit == "%" else MARGIN_PX


class InvalidField(ApiError):
    """A 400 naming the request field at fault (`field`: its path, e.g. `roi.x1.percent`); the
    typed door sends it as a google.rpc.BadRequest field violation."""

    def __init__(self, code: str, detail: str, field: str):
        super().__init__(400, code, detail, field=field)


@dataclass(frozen=True)
class RemovalRequest:
    image: bytes
    size: str  # canonical: auto, preview, small, medium, hd, full, 50MP
    report_type: bool  # False for type_level=none: no X-Type
    options: RemovalOptions  # max_output_pixels is set once `size` is resolved
    fine_type: bool = False  # type_level=2/latest: X-Type names the finer class where known
    # Set when the caller gave URLs: `image` (empty until then) and `options.bg_image` are
    # downloaded by the caller (service.fetching), after these cheap checks.
    image_url: str | None = None
    bg_image_url: str | None = None


@dataclass(frozen=True)
class Asked:
    """One call's options as typed values, before defaults and cross-field rules; None (or
    empty) is "not given". Each value is already one of the tables above or within its bounds."""

    image: bytes = b""
    image_url: str | None = None
    size: str | None = None
    foreground_type: str | None = None
    type_level: str | None = None
    output_format: str | None = None
    channels: str | None = None
    bg_color: RGBA | None = None
    bg_image: bytes | None = None
    bg_image_url: str | None = None
    roi: tuple[Length, Length, Length, Length] | None = None
    crop: bool = False
    crop_margin: tuple[Length, Length, Length, Length] | None = None
    scale_percent: float | None = None
    position: tuple[float, float] | Literal["original"] | None = None
    add_shadow: bool = False
    shadow_type: str | None = None
    shadow_opacity: float | None = None  # percent
    semitransparency: bool | None = None


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB ({n:,} bytes)"


def too_large(size: int, limit: int) -> ApiError:
    return bad_request("file_too_large", f"The file is {_mb(size)}; the limit is {_mb(limit)}.")


def check_file_size(size: int, max_file_bytes: int) -> None:
    if size > max_file_bytes:
        raise too_large(size, max_file_bytes)


def check_sources(sources: list[str], backgrounds: list[str], choices: str) -> None:
    """Exactly one image source and at most one background, by the names the caller used;
    `choices` says how a caller of this door gives an image."""
    if not sources:
        raise bad_request("missing_source", f"No image given: {choices}.")
    if len(sources) > 1:
        raise bad_request("multiple_sources", f"Send exactly one image source; got {', '.join(sources)}.")
    if len(backgrounds) > 1:
        raise bad_request("multiple_bg_sources", f"Send at most one background; got {', '.join(backgrounds)}.")


def unsupported(name: str, value: str | None = None, hint: str = "") -> ApiError:
    what = f"The parameter {name!r}" + (f" {value!r}" if value is not None else "")
    return InvalidField("unsupported_parameter", f"{what} is not supported by this server{hint}.", name)


def build_request(asked: Asked, max_file_bytes: int) -> RemovalRequest:
    """Defaults and the rules between options, then what the engine needs. The caller has
    checked each value on its own (tables, bounds)."""
    # The REST door has checked its own fields by their names already: these are the typed door's.
    check_sources(
        [name for name, given in (("image_chunk", bool(asked.image)), ("image_url", asked.image_url)) if given],
        [name for name, given in (("bg_color", asked.bg_color), ("bg_image", asked.bg_image),
                                  ("bg_image_url", asked.bg_image_url)) if given],
        "stream image_chunk messages after the options, or set image_url",
    )
    check_file_size(len(asked.image), max_file_bytes)
    if asked.bg_image:
        check_file_size(len(asked.bg_image), max_file_bytes)
    if asked.semitransparency is False:  # soft regions always stay soft here
        raise unsupported("semitransparency", hint=" yet: soft regions always stay soft")
    shadow = None
    if asked.add_shadow:
        kind = asked.shadow_type or DEFAULT_SHADOW_TYPE
        if kind not in ("drop", "auto"):
            raise InvalidField(
                "unsupported_parameter",
                f"The parameter 'shadow_type' {kind!r} is not supported by this server: use 'drop'.",
                "shadow_type",
            )
        opacity = DEFAULT_SHADOW_OPACITY if asked.shadow_opacity is None else asked.shadow_opacity
        shadow = opacity / 100.0
    position = asked.position
    if position == "original" and asked.scale_percent is None:
        position = None  # unscaled and unmoved: nothing to place
    type_level = asked.type_level or DEFAULT_TYPE_LEVEL
    options = RemovalOptions(
        foreground_type=asked.foreground_type or DEFAULT_TYPE,  # type: ignore[arg-type]
        output_format=asked.output_format or DEFAULT_FORMAT,  # type: ignore[arg-type]
        channels=asked.channels or DEFAULT_CHANNELS,  # type: ignore[arg-type]
        bg_color=asked.bg_color,
        bg_image=asked.bg_image or None,
        crop=asked.crop,
        crop_margin=asked.crop_margin or NO_MARGIN,
        roi=asked.roi,
        scale_percent=asked.scale_percent,  # the engine centres a scaled subject unless `position` says otherwise
        position=position,
        shadow_opacity=shadow,
    )
    return RemovalRequest(
        image=asked.image,
        size=asked.size or DEFAULT_SIZE,
        report_type=type_level != "none",
        options=options,
        fine_type=type_level in ("2", "latest"),
        image_url=asked.image_url or None,
        bg_image_url=asked.bg_image_url or None,
    )
