"""Strict parsing of the URLs a caller asks the server to fetch.

Browsers (WHATWG), curl, urllib and the resolver read odd spellings differently: `0177.0.0.1`
is octal to one and a host name to another, `http://2130706433/` is 127.0.0.1 to a browser,
`\\` ends the host for WHATWG but not for urllib, `a@b` hides a user name. Whatever we check
must be what we connect to, so only one plain spelling of each thing is accepted and
everything else is refused with a reason, never repaired or guessed.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from service.errors import shown
from service.fetching.addresses import IPAddress

MAX_URL_CHARS = 8192  # signed storage URLs are long; request lines beyond this are not
DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_AUTHORITY = re.compile(r"//([^/?#]*)(.*)", re.DOTALL)
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?")
_HOST_PORT = re.compile(r"([^:\[\]]*)(?::(\d{1,5}))?")
_NUMERIC_LABEL = re.compile(r"\d+|0x[0-9a-f]*")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class UrlRefused(ValueError):
    """The URL cannot be fetched; `reason` is safe to show the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    scheme: str  # "http" or "https"
    host: str  # lower-case DNS name, or the IP address in its canonical text (no brackets)
    address: IPAddress | None  # set when the URL names an IP address rather than a name
    port: int
    path: str  # path and query as sent on the request line, ASCII, starts with "/"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"

    @property
    def origin(self) -> str:
        """Scheme, host and port, for reasons and logs (paths may carry signed tokens)."""
        return self.url[: len(self.url) - len(self.path)]


def parse_url(text: str) -> Target:
    if len(text) > MAX_URL_CHARS:
        raise UrlRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise UrlRefused("the URL contains spaces or control characters")
    if "\\" in text:
        raise UrlRefused("the URL contains a backslash")
    match = _SCHEME.fullmatch(text)
    if match is None:
        raise UrlRefused("it is not an absolute http:// or https:// URL")
    scheme = match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlRefused(f"only http and https URLs can be fetched, not {shown(scheme + ':', 20)}")
    parts = _AUTHORITY.fullmatch(match.group(2))
    if parts is None or not parts.group(1):
        raise UrlRefused(f"expected {scheme}:// followed by a host")
    authority, rest = parts.group(1), parts.group(2)
    if "@" in authority:
        raise UrlRefused("user names and passwords in the URL are not allowed")
    host, address, port_text = _host(authority)
    port = DEFAULT_PORTS[scheme] if port_text is None else int(port_text)
    if not 1 <= port <= 65535:
        raise UrlRefused(f"port {port} is out of range")
    return Target(scheme, host, address, port, _path(rest))


def _host(authority: str) -> tuple[str, IPAddress | None, str | None]:
    if authority.startswith("["):
        match = _BRACKETED.fullmatch(authority)
        if match is None:  # zone ids (%eth0) and anything else inside the brackets end here
            raise UrlRefused(f"the host {shown(authority)} is not a plain IPv6 address and port")
        try:
            address = ipaddress.IPv6Address(match.group(1))
        except ValueError:
            raise UrlRefused(f"the host {shown(authority)} is not a valid IPv6 address") from None
        return address.compressed, address, match.group(2)
    match = _HOST_PORT.fullmatch(authority)
    if match is None:
        raise UrlRefused(f"the host and port {shown(authority)} are malformed")
    host, port_text = match.group(1).lower(), match.group(2)
    if not host:
        raise UrlRefused("the URL has no host")
    if not host.isascii():
        raise UrlRefused("internationalised host names must be sent in their ASCII (xn--) form")
    # WHATWG reads a host whose last label is a number as an IPv4 address in any of its
    # spellings (decimal, octal, hex, fewer parts); only the plain dotted quad is accepted.
    labels = host.split(".")
    last = labels[-2] if labels[-1] == "" and len(labels) > 1 else labels[-1]
    if _NUMERIC_LABEL.fullmatch(last):
        if not _DOTTED_QUAD.fullmatch(host):
            raise UrlRefused(
                f"the host {shown(host)} is a numeric address in an unusual spelling (decimal, octal, hex or "
                "shortened); write an IPv4 address as four decimal numbers"
            )
        address = ipaddress.IPv4Address(host)
        return str(address), address, port_text
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise UrlRefused(f"the host {shown(host)} is not a valid host name")
    return host, None, port_text


def _path(rest: str) -> str:
    """Path and query, fragment dropped; non-ASCII characters percent-encoded as UTF-8."""
    path = rest.split("#", 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    try:
        return "".join(ch if ch.isascii() else urllib.parse.quote(ch, safe="") for ch in path)
    except UnicodeEncodeError:
        raise UrlRefused("the URL's path is not valid text") from None


def redirect_target(current: Target, location: str) -> Target:
    """The next hop of a redirect, resolved against the current URL and parsed as strictly."""
    location = location.strip()
    if not location:
        raise UrlRefused("a redirect had an empty Location")
    # urljoin would pass some odd forms through untouched; parse_url sees the result either way.
    if "\\" in location or any(ord(ch) < 0x20 for ch in location):
        raise UrlRefused("a redirect's Location is malformed")
    try:
        joined = urllib.parse.urljoin(current.url, location)
    except ValueError:  # urllib's own refusal, e.g. "Invalid IPv6 URL" for an unclosed "["
        raise UrlRefused("a redirect's Location is malformed") from None
    return parse_url(joined)
