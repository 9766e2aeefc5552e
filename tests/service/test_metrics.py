"""service/metrics: what the real in-process server (fake engine) records, read back from the
registry and through the /metrics endpoint itself.

Counters are process-wide and other tests in the session record too, so each test compares the
values before and after its own calls."""

from __future__ import annotations

import urllib.request
from decimal import Decimal

import grpc
import pytest
import requests
from google.api import httpbody_pb2
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from clearbg.v1 import account_pb2, account_pb2_grpc, removebg_pb2, removebg_pb2_grpc
from service import metrics
from service.servicers import ROUTES
from service_fakes import DEV_KEY, png_bytes

REMOVEBG = "POST /v1.0/removebg"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Sample values now; `.of(name, **labels)` is how much each grew since."""

    def __init__(self, *samples: tuple[str, dict]):
        self._before = {(name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in samples}

    def of(self, name: str, labels: dict | None = None, **more: str) -> float:
        labels = {**(labels or {}), **more}
        return value(name, **labels) - self._before[(name, tuple(sorted(labels.items())))]


def calls(status: str, code: str = "", route: str = REMOVEBG) -> tuple[str, dict]:
    return "clearbg_calls_total", {"route": route, "status": status, "code": code}


@pytest.fixture
def stub(grpc_server, account):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield removebg_pb2_grpc.RemoveBgServiceStub(channel), account_pb2_grpc.AccountServiceStub(channel)


def multipart(**data) -> removebg_pb2.RemoveBackgroundHttpRequest:
    parts = {k: ("upload.png", v) if isinstance(v, bytes) else (None, v) for k, v in data.items()}
    prepared = requests.Request("POST", "http://x", files=parts).prepare()
    return removebg_pb2.RemoveBackgroundHttpRequest(
        body=httpbody_pb2.HttpBody(content_type=prepared.headers["Content-Type"], data=prepared.body)
    )


def test_routes_are_the_rest_paths_or_the_grpc_method():
    assert ROUTES["RemoveBackgroundHttp"] == REMOVEBG
    assert ROUTES["GetAccountHttp"] == "GET /v1.0/account"
    assert ROUTES["RevokeKey"] == "POST /dashboard/api/keys/{key_id}/revoke"
    assert ROUTES["RemoveBackground"] == "/clearbg.v1.RemoveBgService/RemoveBackground"


def test_a_paid_call_is_counted_with_its_charge_and_its_times(stub, storage, account):
    removebg, _ = stub
    delta = Delta(
        calls("200"), ("clearbg_charges_total", {"kind": "charge"}), ("clearbg_credits_charged_total", {}),
        ("clearbg_refunds_total", {"kind": "charge"}), ("clearbg_admitted_total", {}),
        ("clearbg_queue_wait_seconds_count", {}), ("clearbg_inference_seconds_count", {}),
        ("clearbg_call_seconds_count", {"route": REMOVEBG}),
    )
    removebg.RemoveBackgroundHttp(multipart(image_file=png_bytes(30, 20), size="auto"), metadata=[("x-api-key", DEV_KEY)])
    assert delta.of(*calls("200")) == 1
    assert delta.of("clearbg_charges_total", kind="charge") == 1
    assert delta.of("clearbg_credits_charged_total") == 1
    assert delta.of("clearbg_refunds_total", kind="charge") == 0
    assert delta.of("clearbg_admitted_total") == 1
    assert delta.of("clearbg_queue_wait_seconds_count") == 1
    assert delta.of("clearbg_inference_seconds_count") == 1
    assert delta.of("clearbg_call_seconds_count", route=REMOVEBG) == 1
    # Nothing waits or runs once the call is answered.
    assert value("clearbg_queue_depth") == 0 and value("clearbg_engine_busy") == 0
    assert storage.get_account(account[0].id).total == Decimal(49)


def test_a_preview_counts_a_free_call_and_no_credit(stub):
    removebg, _ = stub
    delta = Delta(("clearbg_charges_total", {"kind": "free_call"}), ("clearbg_credits_charged_total", {}))
    removebg.RemoveBackgroundHttp(multipart(image_file=png_bytes(30, 20), size="preview"), metadata=[("x-api-key", DEV_KEY)])
    assert delta.of("clearbg_charges_total", kind="free_call") == 1
    assert delta.of("clearbg_credits_charged_total") == 0


def test_a_call_failing_in_the_engine_is_a_500_and_a_counted_refund(stub, engine, storage, account):
    removebg, _ = stub
    engine.fail_with = RuntimeError("boom")
    delta = Delta(
        calls("500", "internal_error"), ("clearbg_charges_total", {"kind": "charge"}),
        ("clearbg_refunds_total", {"kind": "charge"}), ("clearbg_credits_refunded_total", {}),
    )
    with pytest.raises(grpc.RpcError):
        removebg.RemoveBackgroundHttp(multipart(image_file=png_bytes(8, 8), size="full"), metadata=[("x-api-key", DEV_KEY)])
    assert delta.of(*calls("500", "internal_error")) == 1
    # Reserved, then given back: the ledger and the counters agree.
    assert delta.of("clearbg_charges_total", kind="charge") == 1
    assert delta.of("clearbg_refunds_total", kind="charge") == 1
    assert delta.of("clearbg_credits_refunded_total") == 1
    assert [entry.kind for entry in storage.ledger(account[0].id)][-2:] == ["charge", "refund"]


@pytest.mark.parametrize(
    "request_, key, status, code",
    [
        (multipart(image_file=png_bytes(8, 8)), None, "401", "missing_api_key"),
        (multipart(image_file=png_bytes(8, 8), size="huge"), DEV_KEY, "400", "invalid_size"),
        (multipart(image_file=b"not an image"), DEV_KEY, "400", "invalid_file_type"),
    ],
)
def test_refused_calls_are_counted_by_status_and_code_and_charge_nothing(stub, request_, key, status, code):
    removebg, _ = stub
    delta = Delta(calls(status, code), ("clearbg_charges_total", {"kind": "charge"}), ("clearbg_admitted_total", {}))
    with pytest.raises(grpc.RpcError):
        removebg.RemoveBackgroundHttp(request_, metadata=[("x-api-key", key)] if key else [])
    assert delta.of(*calls(status, code)) == 1
    assert delta.of("clearbg_charges_total", kind="charge") == 0
    assert delta.of("clearbg_admitted_total") == 0


def test_the_account_call_and_the_typed_one_have_their_own_routes(stub):
    _, account = stub
    delta = Delta(calls("200", route="GET /v1.0/account"), calls("200", route="/clearbg.v1.AccountService/GetAccount"))
    account.GetAccountHttp(account_pb2.GetAccountHttpRequest(), metadata=[("x-api-key", DEV_KEY)])
    account.GetAccount(account_pb2.GetAccountRequest(), metadata=[("x-api-key", DEV_KEY)])
    assert delta.of(*calls("200", route="GET /v1.0/account")) == 1
    assert delta.of(*calls("200", route="/clearbg.v1.AccountService/GetAccount")) == 1


@pytest.mark.parametrize(
    "status, code, limit",
    [(429, "rate_limit_exceeded", "key"), (403, "ip_rate_limit_exceeded", "ip"), (400, "invalid_size", None)],
)
def test_rate_limit_refusals_are_the_calls_refused_by_a_limit(status, code, limit):
    delta = Delta(*(("clearbg_rate_limit_refusals_total", {"limit": name}) for name in ("key", "ip")))
    metrics.record_call("test-route", status, code, 0.01)
    assert {name: delta.of("clearbg_rate_limit_refusals_total", limit=name) for name in ("key", "ip")} == {
        name: 1.0 if name == limit else 0.0 for name in ("key", "ip")
    }


def test_the_model_in_use_is_an_info_metric(grpc_server):
    # The fixture's server loaded the fake engine, which describes itself as variant "fake".
    assert value("clearbg_model_info", model=grpc_server.server.settings.model, variant="fake", provider="none") == 1


def test_metrics_are_served_in_prometheus_text_format():
    stop, port = metrics.serve("127.0.0.1", 0)
    try:
        metrics.record_call("served-route", 200, "", 0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/plain")
            text = response.read().decode()
    finally:
        stop()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    served = [s for s in families["clearbg_calls"].samples if s.labels.get("route") == "served-route"]
    assert served and served[0].value >= 1
    for name in ("clearbg_call_seconds", "clearbg_queue_wait_seconds", "clearbg_inference_seconds", "clearbg_queue_depth",
                 "clearbg_credits_charged", "clearbg_credits_refunded", "clearbg_rate_limit_refusals", "clearbg_model_info"):
        assert name in families, name


def test_a_taken_metrics_port_is_an_error_at_start():
    stop, port = metrics.serve("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            metrics.serve("127.0.0.1", port)
    finally:
        stop()
