"""Inference lanes: the all-core session for a request alone, a lane of its own for each further one."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.models import providers
from engine.models.families import Segmenter
from engine.models.lanes import Lanes


def hold(lanes: Lanes, taken: list, release: threading.Event) -> threading.Thread:
    """A thread that takes a session, notes it in `taken` and keeps it until `release` is set."""

    def run():
        with lanes.session() as session:
            taken.append(session)
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_lone_inference_runs_on_the_wide_session_and_a_second_on_a_lane():
    lanes = Lanes("wide", ["narrow"])
    with lanes.session() as alone:
        assert alone == "wide"
    taken, release = [], threading.Event()
    first = hold(lanes, taken, release)
    wait_for(lambda: len(taken) == 1)
    with lanes.session() as second:
        assert (taken[0], second) == ("wide", "narrow")
    release.set()
    first.join()


def test_the_wide_session_serves_when_free_and_no_lane_is():
    lanes = Lanes("wide", ["narrow"])
    taken, release_first, release_second = [], threading.Event(), threading.Event()
    first = hold(lanes, taken, release_first)
    wait_for(lambda: len(taken) == 1)
    second = hold(lanes, taken, release_second)
    wait_for(lambda: len(taken) == 2)
    release_first.set()  # the wide one is free again; the lane is still busy
    first.join()
    with lanes.session() as third:
        assert third == "wide"
    release_second.set()
    second.join()


def test_a_third_inference_waits_until_a_session_is_free_or_a_lane_is_added():
    lanes = Lanes("wide", ["narrow"])
    taken, release = [], threading.Event()
    holders = [hold(lanes, taken, release) for _ in range(2)]
    wait_for(lambda: len(taken) == 2)
    third = hold(lanes, taken, release)
    time.sleep(0.2)
    assert len(taken) == 2  # both sessions busy: it waits
    lanes.add("added")
    wait_for(lambda: len(taken) == 3)
    assert taken[2] == "added"
    release.set()
    for thread in (*holders, third):
        thread.join()


def test_openvino_threads_are_not_pinned():
    """OpenVINO put every one-thread model on the same core: two lanes shared one core."""
    import json

    options = dict(providers.provider_list(providers.OPENVINO, 1)[0][1])
    assert "cache_dir" not in options  # none given: OpenVINO compiles afresh
    assert json.loads(options["load_config"])["CPU"]["ENABLE_CPU_PINNING"] == "NO"


@pytest.fixture(scope="module")
def two_lanes(model_manifest):
    segmenter = Segmenter(model_manifest.preference(), "isnet", threads=2, concurrent_runs=2,
                          openvino_cache=model_manifest.openvino_cache)
    assert segmenter.open_lanes([(1024, 768)]) == 1
    return segmenter


def test_two_inferences_at_once_agree_with_one_alone(two_lanes, grabcut):
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(grabcut("person1")[0])).convert("RGB")
    alone = two_lanes.matte(image)
    results = [None, None]

    def run(i):
        results[i] = two_lanes.matte(image)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for matte in results:  # one ran on the wide session, one on the lane: the same net
        assert matte.shape == alone.shape
        assert float(np.abs(matte - alone).mean()) < 0.005
        assert ((matte > 0.5) == (alone > 0.5)).mean() > 0.995


class _Recording:
    """A session that notes the input shapes it ran."""

    def __init__(self, name: str):
        self.name, self.shapes = name, []

    def run(self, outputs, feeds):
        self.shapes.append(next(iter(feeds.values())).shape[2:])
        return [np.zeros((1, 1, 4, 4), np.float32)]


def test_warm_up_free_shows_the_shapes_to_a_free_session_not_to_a_busy_one(two_lanes, monkeypatch):
    wide, narrow = _Recording("wide"), _Recording("narrow")
    monkeypatch.setattr(two_lanes, "_lanes", Lanes(wide, [narrow]))
    two_lanes.warm_up_free([(1024, 768), (768, 1024)])
    assert wide.shapes == [(768, 1024), (1024, 768)] and narrow.shapes == []  # alone: the wide one
    taken, release = [], threading.Event()
    busy = hold(two_lanes._lanes, taken, release)  # a request on the wide session meanwhile
    wait_for(lambda: taken)
    two_lanes.warm_up_free([(1024, 1024)])
    release.set()
    busy.join()
    assert taken == [wide] and wide.shapes == [(768, 1024), (1024, 768)] and narrow.shapes == [(1024, 1024)]


def test_a_server_warms_its_lanes_at_4_3_alone_on_the_cpu(two_lanes, monkeypatch):
    """Each warm run is a whole inference at every start, and on the CPU a shape's first sight
    costs little more than a later run: Engine.open_lanes runs a new lane once at 4:3 and the
    all-core session, which warm_up showed 4:3, not at all."""
    from engine.pipeline import Engine

    wide, narrow = _Recording("wide"), _Recording("narrow")
    monkeypatch.setattr(two_lanes, "_lanes", Lanes(wide, []))
    monkeypatch.setattr(two_lanes, "_lanes_wanted", 1)
    monkeypatch.setattr(two_lanes, "_session", lambda candidate, threads: narrow)
    assert Engine(two_lanes).open_lanes() == 1
    assert narrow.shapes == [(768, 1024)] and wide.shapes == []  # (height, width): 4:3 landscape


def test_a_batching_session_is_shown_the_square_and_portrait_too(two_lanes, monkeypatch):
    from engine.pipeline import Engine

    engine = Engine(two_lanes)
    assert engine._warm_shapes() == [(1024, 768)]
    monkeypatch.setattr(two_lanes, "batcher", object())  # a GPU session sets each shape up slowly
    assert engine._warm_shapes() == [(768, 1024), (1024, 768), (1024, 1024)]
