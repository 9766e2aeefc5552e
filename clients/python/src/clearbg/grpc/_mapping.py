"""Between the SDK's values and the protos (clearbg.v1): options -> RemoveBackgroundOptions,
RemoveBackgroundResponse + metadata -> RemovalResult, a gRPC failure -> the SDK's errors.

Kept in this one module so that a change of the protos touches only this file. Credits come
as exact decimal strings (the contract since issue 18), as the REST headers give them.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import grpc

from clearbg._base import rate_limit_of
from clearbg._retry import parse_retry_after
from clearbg.errors import APIConnectionError, APIError, APITimeoutError, BadRequestError, error_from_parts
from clearbg.types import Foreground, RemovalResult
from clearbg.v1 import common_pb2, removebg_pb2

SIZES = {
    "auto": removebg_pb2.SIZE_AUTO, "preview": removebg_pb2.SIZE_PREVIEW, "small": removebg_pb2.SIZE_SMALL,
    "regular": removebg_pb2.SIZE_SMALL, "medium": removebg_pb2.SIZE_MEDIUM, "hd": removebg_pb2.SIZE_HD,
    "full": removebg_pb2.SIZE_FULL, "4k": removebg_pb2.SIZE_FULL, "50mp": removebg_pb2.SIZE_50MP,
}
TYPES = {
    "auto": common_pb2.FOREGROUND_TYPE_AUTO, "person": common_pb2.FOREGROUND_TYPE_PERSON,
    "product": common_pb2.FOREGROUND_TYPE_PRODUCT, "animal": common_pb2.FOREGROUND_TYPE_ANIMAL,
    "car": common_pb2.FOREGROUND_TYPE_CAR, "transportation": common_pb2.FOREGROUND_TYPE_CAR,
    "other": common_pb2.FOREGROUND_TYPE_OTHER, "graphic": common_pb2.FOREGROUND_TYPE_OTHER,
}
TYPE_NAMES = {value: name for name, value in TYPES.items() if name in ("person", "product", "animal", "car", "other")}
TYPE_LEVELS = {
    "1": removebg_pb2.TYPE_LEVEL_1, "none": removebg_pb2.TYPE_LEVEL_NONE, "2": removebg_pb2.TYPE_LEVEL_2,
    "latest": removebg_pb2.TYPE_LEVEL_LATEST,
}
FORMATS = {
    "png": removebg_pb2.OUTPUT_FORMAT_PNG, "jpg": removebg_pb2.OUTPUT_FORMAT_JPG,
    "jpeg": removebg_pb2.OUTPUT_FORMAT_JPG, "webp": removebg_pb2.OUTPUT_FORMAT_WEBP,
    "zip": removebg_pb2.OUTPUT_FORMAT_ZIP, "auto": removebg_pb2.OUTPUT_FORMAT_AUTO,
}
CHANNELS = {"rgba": removebg_pb2.CHANNELS_RGBA, "alpha": removebg_pb2.CHANNELS_ALPHA}
SHADOW_TYPES = {
    "auto": removebg_pb2.SHADOW_TYPE_AUTO, "drop": removebg_pb2.SHADOW_TYPE_DROP,
    "car": removebg_pb2.SHADOW_TYPE_CAR, "3d": removebg_pb2.SHADOW_TYPE_3D,
}

# A status without the server's error metadata (e.g. from a proxy), as the gateway maps it.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.FAILED_PRECONDITION: 402, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 404,
}
LENGTH = re.compile(r"^(\d+(?:\.\d+)?)(px|%)?$")


def _invalid(name: str, value: Any, expected: str) -> BadRequestError:
    return BadRequestError(
        400, code=f"invalid_{name}", title="Invalid request", detail=f"{name} {value!r} is not valid: {expected}."
    )


def _choice(table: Mapping[str, int], name: str, value: Any) -> int:
    key = str(value).strip().lower()
    if key not in table:
        raise _invalid(name, value, "one of " + ", ".join(table))
    return table[key]


def _length(name: str, text: str) -> removebg_pb2.Length:
    found = LENGTH.match(text.strip().lower())
    if not found:
        raise _invalid(name, text, "lengths are pixels (10, 10px) or percentages (10%), not negative")
    number, unit = found.groups()
    if unit == "%":
        return removebg_pb2.Length(percent=float(number))
    if "." in number:
        raise _invalid(name, text, "pixels are whole numbers")
    return removebg_pb2.Length(pixels=int(number))


def _color(value: Any) -> removebg_pb2.Color:
    if isinstance(value, (tuple, list)) and len(value) in (3, 4):
        parts = [int(part) for part in value]
        if not all(0 <= part <= 255 for part in parts):
            raise _invalid("bg_color", value, "components are 0..255")
        red, green, blue, *alpha = parts
        return removebg_pb2.Color(red=red, green=green, blue=blue, alpha=alpha[0] if alpha else 255)
    text = str(value).strip().lstrip("#")
    if re.fullmatch(r"[0-9a-fA-F]{3,4}", text):
        text = "".join(digit * 2 for digit in text)
    if not re.fullmatch(r"[0-9a-fA-F]{6}(?:[0-9a-fA-F]{2})?", text):
        raise _invalid("bg_color", value, "the gRPC API takes hex colours (#rgb, #rgba, #rrggbb, #rrggbbaa) or (r, g, b[, a])")
    parts = [int(text[i:i + 2], 16) for i in range(0, len(text), 2)]
    return removebg_pb2.Color(red=parts[0], green=parts[1], blue=parts[2], alpha=parts[3] if len(parts) == 4 else 255)


def _position(value: Any) -> removebg_pb2.Position:
    text = str(value).strip().lower()
    if text == "original":
        return removebg_pb2.Position(original=True)
    if text == "center":
        return removebg_pb2.Position(point=removebg_pb2.PercentPoint(horizontal=50, vertical=50))
    parts = text.split()
    if len(parts) in (1, 2) and all(re.fullmatch(r"\d+(?:\.\d+)?%", part) for part in parts):
        horizontal = float(parts[0][:-1])
        vertical = float(parts[-1][:-1])
        return removebg_pb2.Position(point=removebg_pb2.PercentPoint(horizontal=horizontal, vertical=vertical))
    raise _invalid("position", value, "original, center, or one or two percentages (50% 70%)")


def _margin(value: Any) -> removebg_pb2.Margin:
    parts = [_length("crop_margin", part) for part in str(value).replace(",", " ").split()]
    if len(parts) == 1:
        parts *= 4
    elif len(parts) == 2:
        parts = [parts[0], parts[1], parts[0], parts[1]]
    elif len(parts) != 4:
        raise _invalid("crop_margin", value, "1, 2 (vertical horizontal) or 4 (top right bottom left) lengths")
    return removebg_pb2.Margin(top=parts[0], right=parts[1], bottom=parts[2], left=parts[3])


def _region(value: Any) -> removebg_pb2.Region:
    parts = str(value).split()
    if len(parts) != 4:
        raise _invalid("roi", value, "four lengths: x1 y1 x2 y2")
    x1, y1, x2, y2 = (_length("roi", part) for part in parts)
    return removebg_pb2.Region(x1=x1, y1=y1, x2=x2, y2=y2)


def _scale(value: Any) -> Optional[float]:
    text = str(value).strip().lower()
    if text == "original":
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)%?", text)
    if not found:
        raise _invalid("scale", value, "10%..100% or original")
    return float(found.group(1))


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _invalid(name, value, "true or false")


def _opacity(value: Any) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text):
        raise _invalid("shadow_opacity", value, "a whole number from 0 to 100")
    return int(text)  # over 100 is the server's to refuse, naming the field


def options_message(options: Mapping[str, Any], bg_image: Optional[bytes]) -> removebg_pb2.RemoveBackgroundOptions:
    """The REST-style keyword values (as `ClearBG.remove_background` takes them) as the typed message."""
    message = removebg_pb2.RemoveBackgroundOptions()
    for name, table, field in (
        ("size", SIZES, "size"), ("type", TYPES, "type"), ("type_level", TYPE_LEVELS, "type_level"),
        ("format", FORMATS, "format"), ("channels", CHANNELS, "channels"),
    ):
        if options.get(name) is not None:
            setattr(message, field, _choice(table, name, options[name]))
    if options.get("image_url"):
        message.image_url = str(options["image_url"])
    if options.get("bg_image_url"):
        message.bg_image_url = str(options["bg_image_url"])
    if bg_image is not None:
        message.bg_image = bg_image
    if options.get("bg_color") is not None:
        message.bg_color.CopyFrom(_color(options["bg_color"]))
    if options.get("crop"):
        message.crop = True
    if options.get("crop_margin") is not None:
        message.crop_margin.CopyFrom(_margin(options["crop_margin"]))
    if options.get("roi") is not None:
        message.roi.CopyFrom(_region(options["roi"]))
    if options.get("scale") is not None:
        scale = _scale(options["scale"])
        if scale is not None:
            message.scale_percent = scale
    if options.get("position") is not None:
        message.position.CopyFrom(_position(options["position"]))
    if options.get("add_shadow") is not None:
        message.add_shadow = _flag("add_shadow", options["add_shadow"])
    if options.get("shadow_type") is not None:
        message.shadow_type = _choice(SHADOW_TYPES, "shadow_type", options["shadow_type"])
    if options.get("shadow_opacity") is not None:
        message.shadow_opacity = _opacity(options["shadow_opacity"])
    if options.get("semitransparency") is not None:
        message.semitransparency = _flag("semitransparency", options["semitransparency"])
    return message


def _decimal(metadata: Mapping[str, str], name: str, fallback: str) -> Decimal:
    """Credits: the message's exact decimal text, else the metadata's (the same figure)."""
    for text in (fallback, metadata.get(name)):
        try:
            if text:
                return Decimal(text)
        except ArithmeticError:
            continue
    return Decimal(0)


def metadata_dict(pairs: Optional[Sequence[Tuple[str, Any]]]) -> Dict[str, str]:
    return {key.lower(): value for key, value in (pairs or ()) if isinstance(value, str)}


def removal_result(
    response: removebg_pb2.RemoveBackgroundResponse, metadata: Mapping[str, str], request_id: Optional[str]
) -> RemovalResult:
    box = response.foreground
    kind = response.type_label or metadata.get("x-type") or TYPE_NAMES.get(response.foreground_type)
    return RemovalResult(
        content=response.image,
        content_type=response.content_type,
        width=response.width,
        height=response.height,
        type=kind,
        credits_charged=_decimal(metadata, "x-credits-charged", response.credits_charged),
        credits_remaining=_decimal(metadata, "x-credits-remaining", response.credits_remaining),
        foreground=Foreground(top=box.top, left=box.left, width=box.width, height=box.height),
        rate_limit=rate_limit_of(metadata),
        request_id=metadata.get("x-request-id") or request_id,
        replayed=metadata.get("idempotent-replayed", "").lower() == "true",
        headers=dict(metadata),
    )


def error_of(error: grpc.RpcError, request_id: Optional[str]) -> Exception:
    """The SDK's exception for a failed call: the server's status and error body from its
    trailing metadata (x-http-status, x-error-body), else the gRPC status mapped."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    trailers = metadata_dict(error.trailing_metadata() if hasattr(error, "trailing_metadata") else None)
    headers = {**metadata_dict(error.initial_metadata() if hasattr(error, "initial_metadata") else None), **trailers}
    found_id = headers.get("x-request-id") or request_id
    status_text = headers.get("x-http-status", "")
    if status_text.isdigit():
        body = headers.get("x-error-body", "")
        return error_from_parts(
            int(status_text), "", headers, body.encode("utf-8"), parse_retry_after(headers.get("retry-after")), found_id
        )
    details = (error.details() if hasattr(error, "details") else None) or code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return APITimeoutError(f"No answer within the timeout ({details}).", request_id=found_id)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return APIConnectionError(f"Connection error: {details}", request_id=found_id)
    status = HTTP_STATUS.get(code, 500)
    document = json.dumps({"errors": [{"title": code.name, "code": code.name.lower(), "detail": details}]})
    made: APIError = error_from_parts(status, code.name, headers, document.encode(), request_id=found_id)
    return made
