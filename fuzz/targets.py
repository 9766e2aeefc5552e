"""The fuzz targets: each takes libFuzzer's bytes and feeds them to one reader of untrusted
input. A reader may refuse its input only with its own documented error (ApiError, EngineError,
UrlRefused); any other exception is a crash, which atheris reports with the input that caused it.

Run them with `python -m fuzz.run` (fuzz/run.py); one under libFuzzer directly with
`python -m fuzz TARGET [libFuzzer arguments]` (fuzz/__main__.py, which instruments the code
under test). Seeds: fuzz/corpus/TARGET/.
"""

from __future__ import annotations

from collections.abc import Callable

import atheris

from engine import decode
from engine.types import EngineError
from service import params, rest_request
from service.dashboard.web import WebRequest, parse_cookies
from service.errors import ApiError
from service.fetching import urls

# Small caps keep every input cheap (a header claiming 50 MP is refused, not decoded).
MAX_FILE_BYTES = 1 << 20
MAX_PIXELS = 1 << 20
FIELD_NAMES = [
    "image_file", "image_file_b64", "image_url", "size", "type", "type_level", "format", "bg_color",
    "bg_image_url", "bg_image_file", "channels", "roi", "crop", "crop_margin", "scale", "position",
    "semitransparency", "add_shadow", "shadow_type", "shadow_opacity",
]
BASE_URL = urls.parse_url("https://images.example.com/photos/a.jpg?sig=1")


def _fields(fields: dict) -> None:
    """The option parsers after a body parser, as the server runs them."""
    try:
        params.parse_fields(fields, MAX_FILE_BYTES)
    except ApiError:
        pass


def _body(content_type: str, data: bytes) -> None:
    try:
        fields = rest_request.parse_body(content_type, data)
    except ApiError:
        return
    _fields(fields)


def multipart(data: bytes) -> None:
    """A multipart body with a boundary taken from the input (as a Content-Type carries it)."""
    fdp = atheris.FuzzedDataProvider(data)
    boundary = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70)).decode("latin-1")
    _body(f"multipart/form-data; boundary={boundary}", fdp.ConsumeBytes(fdp.remaining_bytes()))


def urlencoded(data: bytes) -> None:
    _body("application/x-www-form-urlencoded", data)


def json_body(data: bytes) -> None:
    _body("application/json", data)


def content_type(data: bytes) -> None:
    """Any Content-Type header (the first line) with any body (the rest)."""
    header, _, body = data.partition(b"\n")
    _body(header.decode("utf-8", "replace"), body)


def options(data: bytes) -> None:
    """The option parsers on fields named as the API names them, text or file valued."""
    fdp = atheris.FuzzedDataProvider(data)
    fields: dict[str, str | bytes] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        name = fdp.PickValueInList(FIELD_NAMES) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(12)
        length = fdp.ConsumeIntInRange(0, 64)
        fields[name] = fdp.ConsumeBytes(length) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(length)
    _fields(fields)


def image(data: bytes) -> None:
    """The header probe, then (if it passed) the decoder, as the engine runs them."""
    try:
        decode.probe(data, MAX_PIXELS)
        decode.decode(data, MAX_PIXELS)
    except EngineError:
        pass


def image_url(data: bytes) -> None:
    """An image_url as the caller sends it, and a redirect's Location as a server sends it."""
    text = data.decode("utf-8", "replace")
    for check in (urls.parse_url, lambda location: urls.redirect_target(BASE_URL, location)):
        try:
            target = check(text)
        except urls.UrlRefused:
            continue
        # What passes is plain: what the fetcher connects to is what was checked.
        assert target.scheme in urls.DEFAULT_PORTS and 1 <= target.port <= 65535 and target.path.startswith("/")
        assert target.path.isascii() and not any(ch.isspace() for ch in target.url)


def _lines(data: bytes, count: int) -> list[str]:
    """The input as `count` lines of text (headers hold no newline), for mutations that splice
    dictionary tokens straight into them."""
    lines = data.decode("utf-8", "replace").split("\n", count - 1)
    return lines + [""] * (count - len(lines))


def browser_headers(data: bytes) -> None:
    """The dashboard's reading of a browser's headers, one a line: Cookie, the CSRF token,
    Origin, Sec-Fetch-Site, the Host Envoy passes on; then its same-origin and CSRF checks."""
    cookie, token, origin, fetch_site, host = _lines(data, 5)
    request = WebRequest(cookies=parse_cookies([cookie]), csrf_token=token, origin=origin or None,
                         fetch_site=fetch_site or None, host=host or None)
    try:
        request.check_csrf(request.csrf_cookie)
    except ApiError as exc:
        assert exc.status == 403


TARGETS: dict[str, Callable[[bytes], None]] = {
    "multipart": multipart,
    "urlencoded": urlencoded,
    "json": json_body,
    "content_type": content_type,
    "options": options,
    "image": image,
    "image_url": image_url,
    "browser_headers": browser_headers,
}

