"""engine/models/matte_cache.py: repeats of a net input reuse its matte, within one scope, within
a byte budget; a repeat arriving while the first is in the net waits for it. Then the real engine:
a cached call gives the bytes an uncached one gives."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.models.matte_cache import MatteCache
from engine.pipeline import Engine
from engine.types import RemovalOptions

MIB = 2**20


def matte(value: float, side: int = 256) -> np.ndarray:
    return np.full((side, side), value, np.float32)  # 256 KiB


def key(pixels: bytes, scope: str = "1") -> tuple:
    return MatteCache.key(scope, (256, 256), pixels)


def test_a_repeat_is_the_first_answer_and_the_net_runs_once():
    cache, runs = MatteCache(MIB), []
    first, first_held = cache.get(key(b"photo"), lambda: runs.append(1) or matte(0.5))
    again, again_held = cache.get(key(b"photo"), lambda: runs.append(1) or matte(0.9))
    assert len(runs) == 1 and np.array_equal(first, again) and (first_held, again_held) == (False, True)
    assert (cache.hits, cache.misses) == (1, 1)


def test_changing_an_answer_in_place_does_not_change_the_next_one():
    cache = MatteCache(MIB)
    cache.get(key(b"photo"), lambda: matte(0.5))[0][:] = 0
    cache.get(key(b"photo"), lambda: matte(0.9))[0][:] = 0
    assert cache.get(key(b"photo"), lambda: matte(0.9))[0].min() == 0.5


def test_other_pixels_another_shape_or_another_scope_run_the_net():
    cache, runs = MatteCache(MIB), []

    def run():
        runs.append(1)
        return matte(0.5)

    cache.get(key(b"photo"), run)
    cache.get(key(b"photo2"), run)
    cache.get(key(b"photo", scope="2"), run)  # another account's identical photo
    cache.get(MatteCache.key("1", (256, 192), b"photo"), run)
    assert len(runs) == 4 and cache.hits == 0


def test_the_least_recently_used_goes_first_when_the_budget_is_spent():
    cache = MatteCache(3 * 256 * MIB // 1024)  # room for three 256 KiB mattes
    for name in (b"a", b"b", b"c"):
        cache.get(key(name), lambda: matte(0.5))
    cache.get(key(b"a"), lambda: pytest.fail("a is held"))  # a is now the most recent
    cache.get(key(b"d"), lambda: matte(0.5))  # drops b
    cache.get(key(b"a"), lambda: pytest.fail("a is held"))
    runs = []
    cache.get(key(b"b"), lambda: runs.append(1) or matte(0.5))
    assert runs == [1]


def test_zero_bytes_is_off_and_a_matte_over_the_budget_is_not_kept():
    off, runs = MatteCache(0), []
    for _ in range(2):
        off.get(key(b"photo"), lambda: runs.append(1) or matte(0.5))
    small = MatteCache(MIB // 8)
    for _ in range(2):
        small.get(key(b"photo"), lambda: runs.append(1) or matte(0.5))
    assert len(runs) == 4


def test_a_repeat_while_the_first_is_in_the_net_waits_for_its_answer():
    cache, started, release, runs = MatteCache(MIB), threading.Event(), threading.Event(), []

    def slow():
        runs.append(1)
        started.set()
        assert release.wait(30)
        return matte(0.5)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(cache.get, key(b"photo"), slow)
        assert started.wait(30)
        repeats = [pool.submit(cache.get, key(b"photo"), slow) for _ in range(2)]
        time.sleep(0.2)  # the repeats are waiting (a shorter sleep only weakens the check)
        assert not any(r.done() for r in repeats)
        release.set()
        answers = [f.result(30)[0] for f in (first, *repeats)]
    assert len(runs) == 1 and all(np.array_equal(a, answers[0]) for a in answers)


def test_when_the_first_run_fails_a_waiting_repeat_runs_the_net_itself():
    cache, started, release = MatteCache(MIB), threading.Event(), threading.Event()

    def failing():
        started.set()
        assert release.wait(30)
        raise RuntimeError("the net failed")

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get, key(b"photo"), failing)
        assert started.wait(30)
        repeat = pool.submit(cache.get, key(b"photo"), lambda: matte(0.7))
        release.set()
        with pytest.raises(RuntimeError):
            first.result(30)
        assert repeat.result(30)[0].min() == pytest.approx(0.7)


@pytest.fixture(scope="module")
def cached_engine(engine):
    """The session's engine with a cache of its own (the same onnxruntime session: no second load)."""
    segmenter = copy.copy(engine.segmenter)
    segmenter.cache = MatteCache(64 * MIB)
    return Engine(segmenter)


def test_the_real_engine_repeats_a_photo_without_the_net_and_with_the_same_bytes(engine, cached_engine, grabcut):
    photo = grabcut("person1")[0]  # 600x450: one view
    account = RemovalOptions(cache_scope="7")
    assert cached_engine.remove(photo, account).net_ran
    hits, misses = cached_engine.matte_cache_counts()
    as_jpg = dataclasses.replace(account, output_format="jpg", bg_color=(255, 255, 255, 255))
    # A smaller size of a photo under the net's size: the net sees the same decoded pixels.
    preview = dataclasses.replace(account, max_output_pixels=400 * 300)
    again = cached_engine.remove(photo, as_jpg)
    assert again.data == engine.remove(photo, as_jpg).data and not again.net_ran
    assert cached_engine.remove(photo, preview).data == engine.remove(photo, preview).data
    assert cached_engine.matte_cache_counts() == (hits + 2, misses)
    assert cached_engine.remove(photo, dataclasses.replace(account, cache_scope="8")).net_ran  # another account
    assert cached_engine.matte_cache_counts() == (hits + 2, misses + 1)
