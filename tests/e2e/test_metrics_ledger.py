"""The operator's metrics through the real stack: what the server's /metrics counts agrees with
the ledger it wrote (charges, free calls, refunds, credits) and with the answers callers got
(calls by status and code, rate-limit refusals); Envoy's own statistics are served too.

A stack of its own (its counters and ledger start empty, so every figure is exact), with a
preview limit of 1 per IP a minute and an account limited to 1 megapixel-image a minute, so
each kind of refusal happens once. Then the shared stack, at whatever point of the suite this
file runs: its whole ledger against its counters. Last, two servers behind one Envoy: one
/metrics each."""

from __future__ import annotations

import collections
import io
import os
from decimal import Decimal

import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from api_calls import PERSON, account_maker, assert_error, ok, removebg, wait_until_every_server_gets_calls
from service.launcher import Stack
from service.storage import open_storage

pytestmark = pytest.mark.e2e

REMOVEBG = "POST /v1.0/removebg"
START_TIMEOUT_S = 300.0  # two servers loading the model at once on a busy machine


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    response = requests.get(url, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def calls_by_outcome(samples: dict, route: str = REMOVEBG) -> dict[tuple[str, str], float]:
    found = {}
    for (name, labels), count in samples.items():
        labels = dict(labels)
        if name == "clearbg_calls_total" and labels["route"] == route and count:
            found[(labels["status"], labels["code"])] = count
    return found


def ledger_figures(database_url: str) -> dict[str, Decimal]:
    """What every account's ledger holds, in the counters' terms."""
    storage = open_storage(database_url)
    try:
        entries = [entry for account in storage.list_accounts() for entry in storage.ledger(account.id)]
    finally:
        storage.close()
    by_id = {entry.id: entry for entry in entries}
    kinds = collections.Counter(entry.kind for entry in entries)
    refunds = [entry for entry in entries if entry.kind == "refund"]
    return {
        "charges": Decimal(kinds["charge"]),
        "free_calls": Decimal(kinds["free_call"]),
        "credits_charged": sum((e.amount for e in entries if e.kind == "charge"), Decimal(0)),
        "refunds_of_charges": Decimal(sum(1 for e in refunds if by_id[e.reverses].kind == "charge")),
        "refunds_of_free_calls": Decimal(sum(1 for e in refunds if by_id[e.reverses].kind == "free_call")),
        "credits_refunded": sum((e.amount for e in refunds), Decimal(0)),
    }


def counted_figures(samples: dict) -> dict[str, Decimal]:
    def get(name: str, **labels: str) -> Decimal:
        return Decimal(str(sample(samples, name, **labels)))

    return {
        "charges": get("clearbg_charges_total", kind="charge"),
        "free_calls": get("clearbg_charges_total", kind="free_call"),
        "credits_charged": get("clearbg_credits_charged_total"),
        "refunds_of_charges": get("clearbg_refunds_total", kind="charge"),
        "refunds_of_free_calls": get("clearbg_refunds_total", kind="free_call"),
        "credits_refunded": get("clearbg_credits_refunded_total"),
    }


@pytest.fixture(scope="module")
def limited_stack(stack_factory):
    with stack_factory(CLEARBG_PREVIEW_IP_LIMIT="1") as running:
        yield running


def test_the_counts_match_the_ledger_and_the_answers(limited_stack, quality):
    stack = limited_stack
    person = (quality / PERSON).read_bytes()
    with account_maker(stack.database_url) as make:
        key = make("metrics", payg=Decimal(10), free_calls=10)
        slow_key = make("metrics-limited", payg=Decimal(10), rate_limit_per_minute=1)
    answers = collections.Counter()

    def call(response: requests.Response) -> requests.Response:
        code = "" if response.status_code == 200 else response.json()["errors"][0]["code"]
        answers[(str(response.status_code), code)] += 1
        return response

    ok(call(removebg(stack, key, person, size="small")))  # a charge, kept
    ok(call(removebg(stack, key, person, size="preview")))  # a free call, kept
    # The preview limit (1 per IP a minute): reserved, refused, given back.
    assert_error(call(removebg(stack, key, person, size="preview")), 403, "ip_rate_limit_exceeded")
    # Half a JPEG: its header reads, so a credit is reserved; decoding fails, so it is refunded.
    assert_error(call(removebg(stack, key, person[: len(person) // 2], size="small")), 400, "invalid_file_type")
    assert_error(call(removebg(stack, key, person, size="huge")), 400, "invalid_size")  # nothing reserved
    assert_error(call(removebg(stack, "not-a-key", person)), 401, "invalid_api_key")
    ok(call(removebg(stack, slow_key, person, size="small")))
    assert_error(call(removebg(stack, slow_key, person, size="small")), 429, "rate_limit_exceeded")

    [metrics_url] = stack.metrics_urls
    samples = scrape(metrics_url)
    assert calls_by_outcome(samples) == answers
    ledger = ledger_figures(stack.database_url)
    assert counted_figures(samples) == ledger
    # The figures this test made, so that agreeing on zeros cannot pass for agreeing.
    assert ledger == {
        "charges": 3, "free_calls": 2, "credits_charged": 3,
        "refunds_of_charges": 1, "refunds_of_free_calls": 1, "credits_refunded": 1,
    }
    assert sample(samples, "clearbg_rate_limit_refusals_total", limit="key") == 1
    assert sample(samples, "clearbg_rate_limit_refusals_total", limit="ip") == 1
    # Admitted: the calls that reached the engine's queue (three delivered, the half JPEG).
    assert sample(samples, "clearbg_admitted_total") == 5
    assert sample(samples, "clearbg_inference_seconds_count") == 4
    assert sample(samples, "clearbg_queue_wait_seconds_count") == 4
    assert sample(samples, "clearbg_call_seconds_count", route=REMOVEBG) == sum(answers.values())
    assert sample(samples, "clearbg_queue_depth") == 0
    # The net ran for the first call of each account; the preview of the same photo by the same
    # account reused its mattes (CLEARBG_MATTE_CACHE_MB), the other account's call did not. Two
    # net inputs a call: the photo is 2:3, seen with its aspect kept and squashed square.
    assert sample(samples, "clearbg_net_inputs", answer="miss") == 2 * 2
    assert sample(samples, "clearbg_net_inputs", answer="hit") == 1 * 2
    [model] = [dict(labels) for (name, labels), v in samples.items() if name == "clearbg_model_info" and v == 1]
    assert model["model"] and model["variant"] and model["provider"].endswith("ExecutionProvider")


def test_envoy_statistics_are_served_in_prometheus_format(limited_stack):
    assert limited_stack.envoy_metrics_url is not None
    samples = scrape(limited_stack.envoy_metrics_url)
    answered = sum(
        value for (name, labels), value in samples.items()
        if name == "envoy_http_downstream_rq_xx_total" and dict(labels).get("envoy_http_conn_manager_prefix") == "rest"
    )
    assert answered >= 8  # at least the calls of the test above (the parser names counters *_total)


def test_the_shared_stack_counts_what_its_ledger_holds(stack, new_account):
    """Whatever the suite did before this test on the shared stack (one server process), its
    counters and its ledger agree; one call of our own makes sure there is something to agree on."""
    key = new_account("metrics-shared", payg=Decimal(2))
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(image, "JPEG")
    ok(removebg(stack, key, image.getvalue(), size="small"))
    [metrics_url] = stack.metrics_urls
    ledger = ledger_figures(stack.database_url)
    assert counted_figures(scrape(metrics_url)) == ledger
    assert ledger["charges"] >= 1


def test_each_of_several_servers_serves_its_own_counts(tmp_path, free_port):
    """Two server processes behind one Envoy (as the launcher starts them): each counts the calls
    it answered on its own port, and together they count every call made."""
    env = dict(os.environ, CLEARBG_DATABASE_URL=f"sqlite:///{tmp_path / 'two.db'}", PYTHONUNBUFFERED="1")
    with open(tmp_path / "stack.log", "w") as out:
        stack = Stack(http_port=free_port(), grpc_port=free_port(), more_grpc_ports=(free_port(),), env=env, out=out)
        try:
            stack.start()
            stack.wait_healthy(START_TIMEOUT_S)
            assert len(set(stack.metrics_ports)) == 2
            wait_until_every_server_gets_calls(stack)  # /healthz may pass before Envoy routes to both
            route = "GET /v1.0/account"
            before = [sample(scrape(url), "clearbg_calls_total", route=route, status="401", code="missing_api_key")
                      for url in stack.metrics_urls]
            for _ in range(20):  # no key: answered at once by whichever server Envoy picks
                assert requests.get(stack.rest_url + "/v1.0/account", timeout=30).status_code == 401
            after = [sample(scrape(url), "clearbg_calls_total", route=route, status="401", code="missing_api_key")
                     for url in stack.metrics_urls]
        finally:
            stack.stop()
    assert sum(after) - sum(before) == 20
    assert all(count > 0 for count in after), after  # round robin: both answered some
