"""The server's metrics in Prometheus's text format, on an operator port of their own.

Every metric is declared here and recorded through the functions below, nowhere else: a new
one (a sweeper's refunds, the limiter's fail-open count) is one more declaration and one more
function in this module. Each `python -m service` process serves its own /metrics on
CLEARBG_METRICS_HOST:CLEARBG_METRICS_PORT (127.0.0.1:9464); several servers on one machine get
one port each (service/launcher.py), as they would get one pod each, and Prometheus adds them
up. That is why this is not prometheus_client's multiprocess mode: our servers are independent
processes, not forks of one parent, and a scrape of one must not depend on another living.

Envoy's own statistics are its admin interface's /stats/prometheus (README, Operations).
"""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, Info

# Seconds, for calls that may wait in the queue (up to CLEARBG_MAX_QUEUE_WAIT_S, 20 s) and then
# run a 50 MP photo for minutes; prometheus_client's default stops at 10 s.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)

CALLS = Counter(
    "clearbg_calls", "Calls the server answered, by route, HTTP status and error code (empty on success).",
    ["route", "status", "code"],
)
CALL_SECONDS = Histogram(
    "clearbg_call_seconds", "Whole calls as the server saw them (authentication to answer), by route.",
    ["route"], buckets=SECONDS_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "clearbg_queue_wait_seconds", "Time admitted calls waited for an engine worker.", buckets=SECONDS_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "clearbg_inference_seconds",
    "Time in the engine per call (decode, segmentation network, matte, encode).", buckets=SECONDS_BUCKETS,
)
QUEUE_DEPTH = Gauge("clearbg_queue_depth", "Admitted calls waiting for an engine worker.")
ENGINE_BUSY = Gauge("clearbg_engine_busy", "Calls running in the engine now.")
ADMITTED = Counter("clearbg_admitted", "Calls admitted to the engine queue.")
REFUSED = Counter(
    "clearbg_refused", "Calls refused by admission (503), by reason: overloaded, shutting_down.", ["reason"],
)
CHARGES = Counter(
    "clearbg_charges", "Reservations written to the ledger, by kind: charge (credits), free_call (a preview).",
    ["kind"],
)
CREDITS_CHARGED = Counter("clearbg_credits_charged", "Credits reserved by calls (kept, or refunded below).")
REFUNDS = Counter("clearbg_refunds", "Reservations given back (the call failed), by the kind they gave back.", ["kind"])
CREDITS_REFUNDED = Counter("clearbg_credits_refunded", "Credits given back to accounts by refunds.")
LIMIT_REFUSALS = Counter(
    "clearbg_rate_limit_refusals",
    "Calls refused by a rate limit: key (429 rate_limit_exceeded), ip (403 ip_rate_limit_exceeded).", ["limit"],
)
LIMITER_UNAVAILABLE = Counter(
    "clearbg_rate_limiter_unavailable",
    "Calls that found the shared limiter (Redis) unreachable, by the policy applied: open (served "
    "unlimited) or closed (503 limiter_unavailable); CLEARBG_RATE_LIMIT_ON_REDIS_DOWN.", ["policy"],
)
MATTE_CACHE = Gauge(
    "clearbg_net_inputs", "Net inputs since start, by how they were answered: the net ran (miss) or "
    "a repeat of the same photo by the same account reused its matte (hit; CLEARBG_MATTE_CACHE_MB).", ["answer"],
)
MODEL = Info("clearbg_model", "The segmentation model in use: checkpoint, variant and execution provider.")

# The error codes that are a rate limit's refusal, and which limit.
_LIMIT_CODES = {"rate_limit_exceeded": "key", "ip_rate_limit_exceeded": "ip"}


def record_call(route: str, status: int, code: str, seconds: float) -> None:
    """One answered call (every call is recorded once, by the servicer that answered it)."""
    CALLS.labels(route, str(status), code).inc()
    CALL_SECONDS.labels(route).observe(max(0.0, seconds))
    if code in _LIMIT_CODES:
        LIMIT_REFUSALS.labels(_LIMIT_CODES[code]).inc()


def record_limiter_unavailable(policy: str) -> None:
    LIMITER_UNAVAILABLE.labels(policy).inc()


def record_admitted() -> None:
    ADMITTED.inc()


def record_refused(reason: str) -> None:
    REFUSED.labels(reason).inc()


def record_queue(running: int, waiting: int) -> None:
    """The admission queue as it is now (set on every change)."""
    ENGINE_BUSY.set(running)
    QUEUE_DEPTH.set(waiting)


def record_queue_wait(seconds: float) -> None:
    QUEUE_WAIT_SECONDS.observe(max(0.0, seconds))


def record_inference(seconds: float) -> None:
    INFERENCE_SECONDS.observe(max(0.0, seconds))


def record_charge(credits: float, free_call: bool) -> None:
    CHARGES.labels("free_call" if free_call else "charge").inc()
    CREDITS_CHARGED.inc(credits)


def record_refund(credits: float, free_call: bool) -> None:
    REFUNDS.labels("free_call" if free_call else "charge").inc()
    CREDITS_REFUNDED.inc(credits)


def record_model(model: str, variant: str, provider: str) -> None:
    MODEL.info({"model": model, "variant": variant, "provider": provider})


def watch_matte_cache(counts: Callable[[], tuple[int, int]]) -> None:
    MATTE_CACHE.labels("hit").set_function(lambda: counts()[0])
    MATTE_CACHE.labels("miss").set_function(lambda: counts()[1])


def serve(host: str, port: int) -> tuple[Callable[[], None], int]:
    """Starts /metrics (any path answers the same) on a thread; returns a stop function and the
    bound port. OSError when the port is taken: a server whose metrics cannot be seen should say
    so at start, not run blind."""
    server, thread = prometheus_client.start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(2)

    return stop, server.server_port
