"""The dashboard's routes (service/dashboard/static.py) as rendered, and as the real Envoy
serves them: its pages straight from the files with the security headers, and its calls
through the transcoder."""

from __future__ import annotations

import requests

from service.dashboard import static


def test_routes_serve_every_file_then_fall_back_to_the_page():
    routes = static.routes()
    assert routes[0]["match"] == {"prefix": "/dashboard/api/"} and routes[0]["route"]["cluster"] == "grpc_server"
    files = {r["match"].get("path"): r["direct_response"]["body"]["filename"] for r in routes[1:-1]}
    expected = {f"/dashboard/{p.relative_to(static.PAGES).as_posix()}" for p in static.page_files()} - {"/dashboard/index.html"}
    assert set(files) == expected and "/dashboard/app.js" in files and "/dashboard/pages/keys.js" in files
    assert routes[-1]["match"] == {"path_separated_prefix": "/dashboard"}
    assert routes[-1]["direct_response"]["body"]["filename"].endswith("gateway/dashboard/index.html")
    for route in routes[1:]:
        disabled = route["typed_per_filter_config"][static.TRANSCODER]
        assert disabled["disabled"] is True


def test_content_security_policy_allows_no_inline_script_nor_framing():
    csp = static.CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for route in static.routes():
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert headers["content-security-policy"] == csp and headers["x-frame-options"] == "DENY"


def test_envoy_serves_the_pages_with_their_headers(gateway):
    for path in ("/dashboard", "/dashboard/", "/dashboard/keys", "/dashboard/usage/whatever"):
        page = requests.get(gateway.url + path, timeout=10)
        assert page.status_code == 200, path
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.content == (static.PAGES / "index.html").read_bytes()
        assert page.headers["content-security-policy"] == static.CONTENT_SECURITY_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"
    script = requests.get(gateway.url + "/dashboard/app.js", timeout=10)
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.content == (static.PAGES / "app.js").read_bytes()
    assert requests.get(gateway.url + "/dashboardx", timeout=10).status_code == 404


def test_unknown_dashboard_calls_are_a_shaped_404(gateway):
    answer = requests.get(gateway.url + "/dashboard/api/nothing-here", timeout=10)
    assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "not_found"
    assert answer.headers["cache-control"] == "no-store"
