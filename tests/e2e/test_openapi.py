"""gateway/openapi.json kept true: served by the real Envoy at /openapi.json, and schemathesis
sends what it generates from it (valid and invalid bodies of every documented kind, headers,
path parameters) through the real Envoy to the real server. Every answer must be documented
(status, content type, headers, JSON body), none may be a 5xx, and an error charges nothing:
the ledger holds no charge kept for the request id of any error.

Bounded: a fixed number of examples per operation (EXAMPLES), each within DEADLINE. (Driven by
hand, one pytest test per operation, rather than by schemathesis's pytest plugin, whose lazy
fixture loading does not work with pytest 9.)"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import pathlib
from decimal import Decimal

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from PIL import Image

from api_calls import balance
from service.storage import open_storage

pytestmark = pytest.mark.e2e

DOCUMENT = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "openapi.json"
# Per operation (16 operations): the generated requests are answered in milliseconds (none is a
# real image); the hand-picked real photos run the engine. About a minute in all on 2 cores.
EXAMPLES = 25
DEADLINE = dt.timedelta(seconds=20)
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance,
]
INITIAL = Decimal(1000)
# What the calls that delivered an image took (X-Credits-Charged), for the balance check at the end.
DELIVERED: list[Decimal] = []


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(7).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def hand_picked(operation) -> list:
    """What generation cannot make, for the removal: a real photo (a 200 to hold against the
    document, and a charge) and one whose header reads but whose pixels do not (a credit
    reserved, then given back), in each body kind that carries base64."""
    if operation.path != "/v1.0/removebg":
        return []
    photo = _jpeg(64, 48)
    real, cut = base64.b64encode(photo).decode(), base64.b64encode(photo[: len(photo) // 2]).decode()
    return [
        operation.as_strategy(body={"image_file_b64": real, "size": "small"}, media_type="application/json"),
        operation.as_strategy(body={"image_file_b64": real, "size": "preview", "format": "jpg"},
                              media_type="application/x-www-form-urlencoded", headers={"Accept": "application/json"}),
        operation.as_strategy(body={"image_file_b64": cut, "size": "small"}, media_type="application/json"),
        operation.as_strategy(body={"image_file_b64": cut, "size": "preview"}, media_type="application/x-www-form-urlencoded"),
    ]


def test_the_gateway_serves_the_document(stack):
    response = requests.get(stack.rest_url + "/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOCUMENT.read_bytes()
    document = response.json()
    assert document["openapi"].startswith("3.1")
    # Every REST route the gateway transcodes is described (the dashboard's from its protos).
    assert {"/v1.0/removebg", "/v1.0/account", "/dashboard/api/session", "/dashboard/api/try"} <= set(document["paths"])


def test_the_document_names_every_rest_route_of_the_protos():
    from service.servicers import ROUTES

    documented = {
        f"{method.upper()} {path}"
        for path, operations in json.loads(DOCUMENT.read_text())["paths"].items()
        for method in operations
    }
    transcoded = {route for route in ROUTES.values() if not route.startswith("/clearbg.")}
    assert transcoded <= documented, transcoded - documented


@pytest.fixture(scope="module")
def fuzzed_account(stack, new_account):
    """An account with credits to lose, so a wrongly kept charge would show."""
    return new_account("openapi", payg=INITIAL, free_calls=1000, rate_limit_per_minute=100_000)


@pytest.fixture(scope="module")
def ledger(stack):
    storage = open_storage(stack.database_url)
    yield storage
    storage.close()


# Loaded from the file here (collection needs the operations before any stack runs); that the
# gateway serves this very file is the first test above.
SCHEMA = schemathesis.openapi.from_path(DOCUMENT)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_the_server_keeps_the_document(operation, stack, fuzzed_account, ledger):
    """Valid and invalid requests (schemathesis's positive and negative modes) for one operation."""
    headers = {"X-Api-Key": fuzzed_account}
    generated = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE),
        *hand_picked(operation),
    )

    @given(case=generated)
    @settings(
        max_examples=EXAMPLES, deadline=DEADLINE, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def keeps_it(case):
        response = case.call(base_url=stack.rest_url, headers=headers, timeout=60)
        case.validate_response(response, checks=CHECKS, headers=headers)
        replay = response.headers.get("idempotent-replayed") == ["true"]  # a kept answer, charged nothing now
        if response.status_code == 200 and case.path == "/v1.0/removebg" and not replay:
            [charged] = response.headers["x-credits-charged"]  # schemathesis: lower-case names, lists
            DELIVERED.append(Decimal(charged))
        if response.status_code >= 400:
            assert "x-credits-charged" not in response.headers
            [request_id] = response.headers.get("x-request-id") or [None]
            assert request_id, "every answer carries the gateway's request id"
            entries = [e for a in ledger.list_accounts() for e in ledger.ledger(a.id) if e.request_id == request_id]
            taken = {e.id for e in entries if e.kind in ("charge", "free_call")}
            given_back = {e.reverses for e in entries if e.kind == "refund"}
            assert taken <= given_back, f"{case.method} {case.path} answered {response.status_code} and kept a charge"

    keeps_it()

def test_only_the_delivered_images_cost_anything(stack, fuzzed_account):
    """After the test above: the balance lost exactly what the 200s said they charged, and one
    free call per delivered preview; every error gave back what it reserved."""
    assert DELIVERED, "the hand-picked real photos were delivered"
    previews = sum(1 for charged in DELIVERED if charged == 0)
    assert balance(stack, fuzzed_account) == (INITIAL - sum(DELIVERED), 1000 - previews)
