"""Settings from the environment: defaults, overrides, clear errors for bad values."""

import pytest

from service.config import MIB, Settings


def test_defaults_match_the_documented_ones():
    settings = Settings.from_environ({})
    assert (settings.http_port, settings.grpc_port, settings.grpc_host) == (8080, 50051, "127.0.0.1")
    assert settings.database_url == "sqlite:///var/clearbg.db"
    assert settings.dev_api_key is None
    assert settings.max_file_bytes == 22 * MIB


def test_overrides():
    settings = Settings.from_environ(
        {
            "CLEARBG_GRPC_PORT": "6000",
            "CLEARBG_HTTP_PORT": " 9000 ",
            "CLEARBG_DEV_API_KEY": "cbg_x",
            "CLEARBG_DATABASE_URL": "sqlite:///tmp/x.db",
            "CLEARBG_MAX_FILE_MB": "5",
            "CLEARBG_ENGINE_WORKERS": "3",
            "CLEARBG_MAX_QUEUE": "0",
        }
    )
    assert (settings.grpc_port, settings.http_port, settings.dev_api_key) == (6000, 9000, "cbg_x")
    assert settings.database_url == "sqlite:///tmp/x.db"
    assert (settings.max_file_bytes, settings.engine_workers, settings.max_queue) == (5 * MIB, 3, 0)


@pytest.mark.parametrize("name, value", [("CLEARBG_GRPC_PORT", "abc"), ("CLEARBG_ENGINE_WORKERS", "0"), ("CLEARBG_HTTP_PORT", "-1")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_environ({name: value})


def test_idempotency_settings():
    defaults = Settings.from_environ({})
    assert (defaults.idempotency_max_bytes, defaults.idempotency_wait_s) == (512 * MIB, 30.0)
    settings = Settings.from_environ({"CLEARBG_IDEMPOTENCY_MAX_MB": "64", "CLEARBG_IDEMPOTENCY_WAIT_S": "2.5"})
    assert (settings.idempotency_max_bytes, settings.idempotency_wait_s) == (64 * MIB, 2.5)
    with pytest.raises(ValueError, match="CLEARBG_IDEMPOTENCY_WAIT_S"):
        Settings.from_environ({"CLEARBG_IDEMPOTENCY_WAIT_S": "0"})


def test_the_engine_is_configured_from_the_settings_not_its_environment(tmp_path):
    import pathlib

    settings = Settings.from_environ({
        "CLEARBG_CACHE_DIR": str(tmp_path), "CLEARBG_MODEL_PATH": "/models/mine.onnx",
        "CLEARBG_MODEL_VARIANT": " FP32-CPU ", "CLEARBG_EXECUTION_PROVIDER": "cpu", "CLEARBG_ENGINE_WORKERS": "3",
    })
    config = settings.engine_config(threads=1)
    assert config.cache_dir == tmp_path and config.model_path == pathlib.Path("/models/mine.onnx")
    assert (config.variant, config.provider, config.concurrent_inferences, config.threads) == ("fp32-cpu", "cpu", 3, 1)
    # A caller may replace any field (the benchmarks run one inference at a time).
    assert settings.engine_config(concurrent_inferences=1).concurrent_inferences == 1
    default = Settings.from_environ({"XDG_CACHE_HOME": str(tmp_path)}).engine_config()
    assert default.cache_dir == tmp_path / "clearbg" and default.checkpoint == "isnet-imgly-medium"
    assert default.variant == "auto" and default.provider is None and default.model_path is None
    assert default.matte_cache_mb == 64
    assert Settings.from_environ({"CLEARBG_MATTE_CACHE_MB": "0"}).engine_config().matte_cache_mb == 0
    with pytest.raises(ValueError, match="CLEARBG_MODEL_VARIANT"):
        Settings.from_environ({"CLEARBG_MODEL_VARIANT": "int8; rm -rf /"})

def test_dashboard_settings():
    defaults = Settings.from_environ({})
    assert (defaults.sign_up_open, defaults.sign_up_free_calls, defaults.secure_cookies) == (False, 50, False)
    settings = Settings.from_environ(
        {"CLEARBG_SIGN_UP": " Open ", "CLEARBG_SIGN_UP_FREE_CALLS": "0", "CLEARBG_SECURE_COOKIES": "1"}
    )
    assert (settings.sign_up_open, settings.sign_up_free_calls, settings.secure_cookies) == (True, 0, True)
    with pytest.raises(ValueError, match="CLEARBG_SIGN_UP must be one of open, closed"):
        Settings.from_environ({"CLEARBG_SIGN_UP": "yes"})
    with pytest.raises(ValueError, match="CLEARBG_SECURE_COOKIES"):
        Settings.from_environ({"CLEARBG_SECURE_COOKIES": "true"})


def test_reservation_and_limiter_settings():
    settings = Settings.from_environ({
        "CLEARBG_RESERVATION_DEADLINE_S": "120", "CLEARBG_HEARTBEAT_S": "0.5", "CLEARBG_INSTANCE_STALE_S": "3",
        "CLEARBG_RATE_LIMIT_ON_REDIS_DOWN": "Open",
    })
    assert (settings.reservation_deadline_s, settings.heartbeat_s, settings.instance_stale_s) == (120, 0.5, 3)
    assert settings.rate_limit_on_redis_down == "open"
    assert Settings.from_environ({}).rate_limit_on_redis_down == "closed"
    # One missed beat must not make a live server's reservations look orphaned.
    with pytest.raises(ValueError, match="CLEARBG_INSTANCE_STALE_S"):
        Settings.from_environ({"CLEARBG_HEARTBEAT_S": "5", "CLEARBG_INSTANCE_STALE_S": "10"})
    # A deadline a queued call could outlive would refund calls still running.
    with pytest.raises(ValueError, match="CLEARBG_RESERVATION_DEADLINE_S"):
        Settings.from_environ({"CLEARBG_RESERVATION_DEADLINE_S": "15"})
    with pytest.raises(ValueError, match="CLEARBG_RATE_LIMIT_ON_REDIS_DOWN"):
        Settings.from_environ({"CLEARBG_RATE_LIMIT_ON_REDIS_DOWN": "maybe"})
