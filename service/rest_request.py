"""The raw REST body (as the gateway forwards it) turned into named fields.

Files (`image_file`, `bg_image_file`) come out as bytes, everything else as text. JSON
booleans and numbers become the strings a form would carry ("true", "2"), so one
validator handles all three body types.
"""

from __future__ import annotations

import json
import urllib.parse

import python_multipart

from service.errors import ApiError, bad_request, shown

FILE_FIELDS = frozenset({"image_file", "bg_image_file"})

Fields = dict[str, "str | bytes"]


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_body(content_type: str, data: bytes) -> Fields:
    media_type = _media_type(content_type)
    if not data.strip():
        return {}
    if media_type == "multipart/form-data":
        return _multipart(content_type, data)
    if media_type == "application/x-www-form-urlencoded":
        return _urlencoded(data)
    if media_type == "application/json" or media_type.endswith("+json"):
        return _json(data)
    raise ApiError(
        400,
        "unsupported_content_type",
        f"Content-Type {shown(media_type) if media_type else '(none)'} is not supported: send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json.",
    )


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("invalid_body", f"Field {shown(name)} is not valid UTF-8 text.") from None


def _multipart(content_type: str, data: bytes) -> Fields:
    fields: Fields = {}

    def on_field(field: python_multipart.multipart.Field) -> None:
        name = _text("name", field.field_name or b"")
        raw = field.value or b""
        fields[name] = raw if name in FILE_FIELDS else _text(name, raw)

    def on_file(file: python_multipart.multipart.File) -> None:
        name = _text("name", file.field_name or b"")
        file.file_object.seek(0)
        raw = file.file_object.read()
        fields[name] = raw if name in FILE_FIELDS else _text(name, raw)

    try:
        parser = python_multipart.create_form_parser(
            {"Content-Type": content_type.encode("latin-1"), "Content-Length": str(len(data)).encode()},
            on_field,
            on_file,
            # Keep every part in memory: the body is already in memory and capped upstream.
            config={"MAX_MEMORY_FILE_SIZE": len(data) + 1, "MAX_BODY_SIZE": len(data) + 1},
        )
        parser.write(data)
        parser.finalize()
    except ApiError:
        raise
    except Exception:
        raise bad_request(
            "invalid_body", "The multipart/form-data body could not be parsed (check the boundary and the parts)."
        ) from None
    return fields


def _urlencoded(data: bytes) -> Fields:
    try:
        pairs = urllib.parse.parse_qsl(data.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise bad_request("invalid_body", "The application/x-www-form-urlencoded body could not be parsed.") from None
    return {name: value for name, value in pairs}


def _json_scalar(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float, str)):
        return str(value)
    # Objects and arrays: kept as JSON text, so a known field fails its own validation and
    # an unknown one is ignored like any other unknown field.
    return json.dumps(value)


def _json(data: bytes) -> Fields:
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise bad_request("invalid_body", "The JSON body must be an object.")
        return {str(name): _json_scalar(str(name), value) for name, value in document.items()}
    except (UnicodeDecodeError, ValueError):
        raise bad_request("invalid_body", "The JSON body could not be parsed.") from None
    except RecursionError:  # "[[[[..." a few thousand deep: json recurses per level (found by fuzzing)
        raise bad_request("invalid_body", "The JSON body is nested too deeply.") from None
