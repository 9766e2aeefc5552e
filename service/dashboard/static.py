"""The gateway routes of the dashboard, rendered into Envoy's configuration by the launcher.

Its calls (/dashboard/api/...) go to the gRPC server through the transcoder; its pages,
scripts and styles (gateway/dashboard/, plain ES modules: nothing to bundle) are answered by
Envoy itself as direct responses read from the files when Envoy starts, so no second web
server runs. Any other path under /dashboard gets the page (index.html), whose script shows
the view the path names. Every answer carries the security headers below.
"""

from __future__ import annotations

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = ROOT / "gateway" / "dashboard"
PREFIX = "/dashboard"
API_PREFIX = "/dashboard/api/"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# No inline script or style anywhere; images may be blob: URLs (the photos "Try it" shows).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def _headers(headers: dict[str, str]) -> list[dict]:
    return [
        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for key, value in headers.items()
    ]


def _page(match: dict, path: pathlib.Path) -> dict:
    return {
        "match": match,
        "direct_response": {"status": 200, "body": {"filename": str(path.resolve())}},
        # The files change with each release; browsers check again rather than keep old ones.
        "response_headers_to_add": _headers(
            {"content-type": CONTENT_TYPES[path.suffix], "cache-control": "no-cache", **SECURITY_HEADERS}
        ),
        # Page paths are no gRPC method: the transcoder would refuse them (reject_unknown_method).
        "typed_per_filter_config": {
            TRANSCODER: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
        },
    }


def page_files(pages: pathlib.Path = PAGES) -> list[pathlib.Path]:
    return sorted(p for p in pages.rglob("*") if p.is_file() and p.suffix in CONTENT_TYPES)


def routes(pages: pathlib.Path = PAGES) -> list[dict]:
    """The dashboard's routes, in the order Envoy must try them."""
    index = pages / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"{index} is missing: the dashboard's pages live in gateway/dashboard/")
    api = {
        "match": {"prefix": API_PREFIX},
        # "Try it" waits for the engine like an API call.
        "route": {"cluster": "grpc_server", "timeout": "300s"},
        "response_headers_to_add": _headers({"cache-control": "no-store", **SECURITY_HEADERS}),
    }
    files = [
        _page({"path": f"{PREFIX}/{path.relative_to(pages).as_posix()}"}, path)
        for path in page_files(pages)
        if path != index
    ]
    return [api, *files, _page({"path_separated_prefix": PREFIX}, index)]


def render_routes(indent: str, pages: pathlib.Path = PAGES) -> str:
    """The routes as YAML list items (JSON flow mappings) for the template's ${DASHBOARD_ROUTES},
    which stands at `indent` in a block list."""
    return f"\n{indent}".join(f"- {json.dumps(route)}" for route in routes(pages))
