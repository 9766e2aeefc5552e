"""Settings read once from CLEARBG_* environment variables; the engine gets its part as an
EngineConfig (`Settings.engine_config`): it reads no environment itself."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.config import DEFAULT_CHECKPOINT, EngineConfig

MIB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise ValueError(f"{name} must be more than 0 and at most 3600, got {raw!r}")
    return value


def _looks(env: Mapping[str, str], name: str, default: tuple[tuple[float, int], ...]) -> tuple[tuple[float, int], ...]:
    """A comma-separated list of distinct further looks at each view, each `scale` or
    `scale:shift` (scale 0.25 to 1.5, shift 0 to 64 pixels; "none" for none)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw == "none":
        return ()
    try:
        looks = tuple((float(scale), int(shift or 0)) for scale, _, shift in (part.strip().partition(":") for part in raw.split(",")))
    except ValueError:
        raise ValueError(f"{name} must be comma-separated scale or scale:shift (e.g. 1:16,0.875), got {raw!r}") from None
    if (not all(0.25 <= scale <= 1.5 and 0 <= shift <= 64 for scale, shift in looks) or len(set(looks)) != len(looks)
            or (1.0, 0) in looks):
        raise ValueError(f"{name} must list distinct looks other than the view itself (1), scales from 0.25 to 1.5, "
                         f"shifts from 0 to 64, got {raw!r}")
    return looks


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _admin_token(env: Mapping[str, str]) -> str | None:
    token = env.get("CLEARBG_ADMIN_TOKEN", "").strip()
    if token and len(token) < 16:
        raise ValueError("CLEARBG_ADMIN_TOKEN must be at least 16 characters (a random secret)")
    return token or None


def default_cache_dir(env: Mapping[str, str]) -> pathlib.Path:
    """CLEARBG_CACHE_DIR, else $XDG_CACHE_HOME/clearbg, else ~/.cache/clearbg (as modelprep's)."""
    root = env.get("CLEARBG_CACHE_DIR", "").strip() or os.path.join(
        env.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache"), "clearbg"
    )
    return pathlib.Path(root)


def _variant(env: Mapping[str, str]) -> str:
    value = env.get("CLEARBG_MODEL_VARIANT", "").strip().lower() or "auto"
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
        raise ValueError(f"CLEARBG_MODEL_VARIANT must be auto, fp32, int8 or a candidate's name, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    http_port: int = 8080
    grpc_port: int = 50051
    grpc_host: str = "127.0.0.1"
    dev_api_key: str | None = None
    database_url: str = "sqlite:///var/clearbg.db"
    # Upload cap (the documented 22 MB), checked before any decode.
    max_file_bytes: int = 22 * MIB
    # Engine threads working on requests at once. As many inferences may run at once (Engine's
    # concurrent_inferences): a request alone gets every core, a second one a lane of its own
    # (engine/models/lanes.py). Two workers: +30 % images a minute at 12 MP and 4 clients
    # (bench/speed.py), and with the second lane 1 MP at 2 clients 241 -> 307 a minute.
    engine_workers: int = 2
    # Admission (service/admission.py): a call is queued only if it can expect to start within
    # this many seconds, by the server's own measured service times; else 503 with Retry-After.
    # The gateway's timeouts are rendered from it (service/launcher.py), so no admitted call is
    # cut by Envoy. max_queue caps the uploads held in memory while they wait.
    max_queue_wait_s: float = 20.0
    max_queue: int = 64
    # On SIGTERM / Ctrl-C: how long calls already in the engine may take to finish.
    shutdown_grace_s: float = 10.0
    # image_url / bg_image_url downloads: the whole download's time cap (DNS, redirects, body),
    # how many run at once (503 beyond), and hosts exempt from the address checks (for tests
    # and trusted internal sources; empty by default: loopback and private addresses refused).
    url_fetch_timeout_s: float = 10.0
    url_fetch_concurrency: int = 8
    url_fetch_allow_hosts: tuple[str, ...] = ()
    # Rate limits (service/limits): shared through Redis when set (several servers, one limit),
    # in process otherwise; and the free previews per client IP per minute (403 beyond).
    redis_url: str | None = None
    preview_ip_limit: int = 50
    # With Redis unreachable: "closed" refuses the calls it would have limited (503
    # limiter_unavailable), "open" lets them through unlimited; either way logged and counted.
    rate_limit_on_redis_down: str = "closed"
    # Crash-safe credits (service/reservations.py): a reservation not settled within this many
    # seconds is refunded by any server's sweeper (longer than any call may take: the admission
    # bound plus the gateway's allowance for one call, service/launcher.py); each server writes a
    # heartbeat this often and sweeps; a server silent this long counts as gone, and what it
    # held is refunded.
    reservation_deadline_s: float = 600.0
    heartbeat_s: float = 5.0
    instance_stale_s: float = 30.0
    # The gRPC AdminService is served only when this is set, to callers presenting it
    # (service/admin/servicer.py); None: not served at all.
    admin_token: str | None = None
    # Answers kept for replays of calls with an Idempotency-Key (service/idempotency.py): their
    # total size (oldest dropped first), and how long a repeat waits for a call still running.
    idempotency_max_bytes: int = 512 * MIB
    idempotency_wait_s: float = 30.0
    # The model (engine/config.py): a catalog checkpoint or a prepared file, the variant and
    # provider `make model` chose unless these force others, and where its manifest lives.
    model: str = DEFAULT_CHECKPOINT
    model_path: pathlib.Path | None = None
    model_variant: str = "auto"
    execution_provider: str | None = None
    # A GPU candidate batches concurrent requests (engine/models/batching.py): at most this many
    # inputs a batch, the first waiting at most this many milliseconds for others.
    batch_max: int = 32
    batch_wait_ms: float = 5.0
    # The net's answers kept in memory for repeats of a photo by the same account (a preview,
    # then the full size; PNG, then JPG): the size budget, 0 off (engine/models/matte_cache.py).
    matte_cache_mb: int = 64
    # The net also sees each view mirrored and the two answers are averaged (engine/config.py):
    # better edges and fewer misses for twice the net's time; 0 trades them for speed.
    mirror: bool = True
    # ... and these further looks at each view (EngineConfig.looks), averaged in where it is unsure.
    net_looks: tuple[tuple[float, int], ...] = EngineConfig.looks
    cache_dir: pathlib.Path = field(default_factory=lambda: default_cache_dir(os.environ))
    # The operator's /metrics (service/metrics.py), one port per server process; loopback by
    # default like Envoy's admin (0.0.0.0 in a pod, where Prometheus scrapes it).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464

    def engine_config(self, **overrides) -> EngineConfig:
        """The engine these settings name; `overrides` replace any field (the benchmarks run one
        inference at a time)."""
        fields = dict(
            cache_dir=self.cache_dir, checkpoint=self.model, model_path=self.model_path,
            variant=self.model_variant, provider=self.execution_provider,
            concurrent_inferences=self.engine_workers, batch_max=self.batch_max, batch_wait_ms=self.batch_wait_ms,
            matte_cache_mb=self.matte_cache_mb, mirror=self.mirror, looks=self.net_looks,
        )
        return EngineConfig(**{**fields, **overrides})
    # The dashboard (service/dashboard): whether anyone may sign up (closed: the operator's
    # `clearbg-admin create-user` makes users), the previews a month a signed-up account gets,
    # and session cookies marked Secure even when Envoy itself sees plain HTTP (TLS ended by a
    # proxy in front of it; over Envoy's own TLS they are Secure anyway).
    sign_up_open: bool = False
    sign_up_free_calls: int = 50
    secure_cookies: bool = False

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        settings = cls._read(env)
        if settings.instance_stale_s <= 2 * settings.heartbeat_s:
            raise ValueError("CLEARBG_INSTANCE_STALE_S must be more than twice CLEARBG_HEARTBEAT_S (a missed beat is no death)")
        if settings.reservation_deadline_s <= settings.max_queue_wait_s:
            raise ValueError("CLEARBG_RESERVATION_DEADLINE_S must be longer than CLEARBG_MAX_QUEUE_WAIT_S plus a call's run")
        return settings

    @classmethod
    def _read(cls, env: Mapping[str, str]) -> "Settings":
        return cls(
            http_port=_int(env, "CLEARBG_HTTP_PORT", cls.http_port, 1),
            grpc_port=_int(env, "CLEARBG_GRPC_PORT", cls.grpc_port, 0),
            grpc_host=env.get("CLEARBG_GRPC_HOST", "").strip() or cls.grpc_host,
            dev_api_key=env.get("CLEARBG_DEV_API_KEY", "").strip() or None,
            database_url=env.get("CLEARBG_DATABASE_URL", "").strip() or cls.database_url,
            max_file_bytes=_int(env, "CLEARBG_MAX_FILE_MB", cls.max_file_bytes // MIB, 1) * MIB,
            engine_workers=_int(env, "CLEARBG_ENGINE_WORKERS", cls.engine_workers, 1),
            matte_cache_mb=_int(env, "CLEARBG_MATTE_CACHE_MB", cls.matte_cache_mb, 0),
            mirror=_choice(env, "CLEARBG_MIRROR", ("0", "1"), "1" if cls.mirror else "0") == "1",
            net_looks=_looks(env, "CLEARBG_NET_LOOKS", cls.net_looks),
            max_queue=_int(env, "CLEARBG_MAX_QUEUE", cls.max_queue, 0),
            max_queue_wait_s=_seconds(env, "CLEARBG_MAX_QUEUE_WAIT_S", cls.max_queue_wait_s),
            shutdown_grace_s=_seconds(env, "CLEARBG_SHUTDOWN_GRACE_S", cls.shutdown_grace_s),
            url_fetch_timeout_s=_seconds(env, "CLEARBG_URL_FETCH_TIMEOUT_S", cls.url_fetch_timeout_s),
            url_fetch_concurrency=_int(env, "CLEARBG_URL_FETCH_CONCURRENCY", cls.url_fetch_concurrency, 1),
            url_fetch_allow_hosts=tuple(
                h.strip() for h in env.get("CLEARBG_URL_FETCH_ALLOW_HOSTS", "").split(",") if h.strip()
            ),
            redis_url=env.get("CLEARBG_REDIS_URL", "").strip() or None,
            preview_ip_limit=_int(env, "CLEARBG_PREVIEW_IP_LIMIT", cls.preview_ip_limit, 1),
            rate_limit_on_redis_down=_choice(
                env, "CLEARBG_RATE_LIMIT_ON_REDIS_DOWN", ("closed", "open"), cls.rate_limit_on_redis_down
            ),
            reservation_deadline_s=_seconds(env, "CLEARBG_RESERVATION_DEADLINE_S", cls.reservation_deadline_s),
            heartbeat_s=_seconds(env, "CLEARBG_HEARTBEAT_S", cls.heartbeat_s),
            instance_stale_s=_seconds(env, "CLEARBG_INSTANCE_STALE_S", cls.instance_stale_s),
            admin_token=_admin_token(env),
            idempotency_max_bytes=_int(env, "CLEARBG_IDEMPOTENCY_MAX_MB", cls.idempotency_max_bytes // MIB, 0) * MIB,
            idempotency_wait_s=_seconds(env, "CLEARBG_IDEMPOTENCY_WAIT_S", cls.idempotency_wait_s),
            model=env.get("CLEARBG_MODEL", "").strip() or cls.model,
            model_path=pathlib.Path(path) if (path := env.get("CLEARBG_MODEL_PATH", "").strip()) else None,
            model_variant=_variant(env),
            execution_provider=env.get("CLEARBG_EXECUTION_PROVIDER", "").strip() or None,
            batch_max=_int(env, "CLEARBG_BATCH_MAX", cls.batch_max, 1),
            batch_wait_ms=_seconds(env, "CLEARBG_BATCH_WAIT_MS", cls.batch_wait_ms),
            cache_dir=default_cache_dir(env),
            metrics_host=env.get("CLEARBG_METRICS_HOST", "").strip() or cls.metrics_host,
            metrics_port=_int(env, "CLEARBG_METRICS_PORT", cls.metrics_port, 0),
            sign_up_open=_choice(env, "CLEARBG_SIGN_UP", ("open", "closed"), "closed") == "open",
            sign_up_free_calls=_int(env, "CLEARBG_SIGN_UP_FREE_CALLS", cls.sign_up_free_calls, 0),
            secure_cookies=_choice(env, "CLEARBG_SECURE_COOKIES", ("0", "1"), "0") == "1",
        )
