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
