"""engine/allocator: the malloc settings the server and the benchmark start with."""

import platform

import pytest

from engine import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_settings_and_again():
    assert allocator.tune() is True
    assert allocator.tune() is True  # idempotent: the server and a benchmark may both call it


def test_refused_setting_is_reported(monkeypatch):
    class Libc:
        def mallopt(self, option, value):
            return 0

        def gnu_get_libc_version(self):
            return b"2.36"

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: Libc())
    assert allocator.tune() is False
