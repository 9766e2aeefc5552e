"""What goes into the engine and what comes out: plain data, no gRPC, no storage.

The service turns REST fields or typed gRPC options into `RemovalOptions`; the engine turns
bytes and options into a `RemovalResult`. Both sides import only this module from each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ForegroundType = Literal["auto", "person", "product", "animal", "car", "other"]
OutputFormat = Literal["png", "jpg", "webp", "zip", "auto"]
Channels = Literal["rgba", "alpha"]
RGBA = tuple[int, int, int, int]


@dataclass(frozen=True)
class Length:
    """A length in pixels, or in percent of a reference size."""

    value: float
    unit: Literal["px", "%"] = "px"

    def resolve(self, reference: float) -> float:
        return self.value if self.unit == "px" else self.value * reference / 100.0


@dataclass(frozen=True)
class RemovalOptions:
    # Largest output in pixels (width * height) the caller's `size` allows; None: no cap but
    # the format's own. The engine scales down to fit, never refuses for it.
    max_output_pixels: int | None = None
    foreground_type: ForegroundType = "auto"
    output_format: OutputFormat = "png"
    channels: Channels = "rgba"
    bg_color: RGBA | None = None
    bg_image: bytes | None = None  # already fetched/decoded-able bytes
    roi: tuple[Length, Length, Length, Length] | None = None  # x1 y1 x2 y2
    crop: bool = False
    crop_margin: tuple[Length, Length, Length, Length] = field(
        default=(Length(0), Length(0), Length(0), Length(0))
    )  # top right bottom left
    scale_percent: float | None = None  # None: original
    # Percent (h, v) of the free space; "original": where the subject was, as a share of the
    # free space (matters only with scale_percent); None: original, or centred when scaled.
    position: tuple[float, float] | Literal["original"] | None = None
    shadow_opacity: float | None = None  # add_shadow: a drop shadow of this opacity (0..1); None: none
    # Not the caller's choice: whose calls may reuse each other's net results (the service's
    # account id; engine/models/matte_cache.py).
    cache_scope: str = ""
    # The engine may answer JSON-friendly extras (foreground box) regardless of format.


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    width: int
    height: int


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, read before any decode (for pricing, limits and bomb checks)."""

    width: int
    height: int
    format: str

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


@dataclass(frozen=True)
class RemovalResult:
    data: bytes
    content_type: str
    width: int
    height: int
    foreground_type: ForegroundType  # never "auto": what was detected or given
    foreground: Box
    input: ImageInfo
    # type_level 2: the finer class where the detector names one ("animal-dog", "car-truck",
    # "product-cup"), else the type itself; the given type when the caller set one.
    foreground_label: str = ""
    # False when every net input came from the matte cache (the call took a fraction of the
    # usual time: the service's admission does not learn its speed from it).
    net_ran: bool = True


class EngineError(Exception):
    """A problem with the caller's input, safe to show: `code` is the API error code."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail
