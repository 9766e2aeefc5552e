"""Further looks at each view (Segmenter.looks, EngineConfig.looks, CLEARBG_NET_LOOKS): the net's
answer for the view scaled or shifted against its stride grid, brought back to the view's shape
and averaged in where the first answer is unsure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.models import families
from engine.models.families import Segmenter


@pytest.fixture(scope="module")
def segmenters(model_manifest):
    def make(looks: tuple[tuple[float, int], ...]) -> Segmenter:
        return Segmenter(model_manifest.preference(), "isnet", threads=2,
                         openvino_cache=model_manifest.openvino_cache, looks=looks)

    return {looks: make(looks) for looks in ((), ((0.75, 0),), ((1.0, 16),), ((1.0, 16), (0.75, 0)))}


def recorded(segmenter: Segmenter, photo) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The segmenter's matte of `photo` and the (h, w) of each tensor the net was given."""
    ran = []
    infer = segmenter._infer
    segmenter._infer = lambda tensor, size: ran.append(tensor.shape[-2:]) or infer(tensor, size)
    try:
        return segmenter.matte(photo), ran
    finally:
        del segmenter._infer


def test_a_look_runs_the_net_scaled_or_padded_and_answers_at_the_view_shape(segmenters, person_photo):
    plain = segmenters[()]
    shape = plain.input_shape(*person_photo.size)
    width, height = plain.scaled_shape(shape, 0.75)
    assert (width, height) == tuple(round(side * 0.75 / 32) * 32 for side in shape)
    matte, ran = recorded(segmenters[((1.0, 16), (0.75, 0))], person_photo)
    assert ran == [(shape[1], shape[0]), (shape[1] + 32, shape[0] + 32), (height, width)]
    assert matte.shape == plain.matte(person_photo).shape == (shape[1], shape[0])


@pytest.mark.parametrize("look", [(0.75, 0), (1.0, 16)])
def test_the_looks_are_averaged_in_only_where_the_first_answer_is_unsure(segmenters, person_photo, look):
    first = segmenters[()].matte(person_photo)
    matte = segmenters[(look,)].matte(person_photo)
    low, high = families.UNSURE
    sure = (first <= low) | (first >= high)
    # A look answers otherwise (it is why the mean helps) ...
    assert np.abs(matte - first).max() > 0.05
    # ... but only near where the first answer hesitated: beyond that the first answer stands.
    reach = 2 * families.UNSURE_REACH + 1
    far = cv2.erode(sure.astype(np.uint8), np.ones((reach, reach), np.uint8)).astype(bool)
    assert far.mean() > 0.5
    np.testing.assert_allclose(matte[far], first[far], atol=1e-6)  # two sessions of one net
    assert np.abs(matte - first)[~far].max() > 0.05


def test_the_matte_is_the_mean_of_the_first_answer_and_each_look_where_unsure(segmenters, person_photo, monkeypatch):
    """With answers made up per shape: the first 0.5 but for a sure corner, the shifted look 0,
    the scaled one 0.9."""
    segmenter = segmenters[((1.0, 16), (0.75, 0))]
    shape = segmenter.input_shape(*person_photo.size)
    width, height = shape

    def infer(tensor, size):
        if size == shape:
            answer = np.full((height, width), 0.5, np.float32)
            answer[:40, :40] = 1.0
            return answer
        return np.full((size[1], size[0]), 0.0 if size[0] == width + 32 else 0.9, np.float32)

    monkeypatch.setattr(segmenter, "_infer", infer)
    matte = segmenter.matte(person_photo)
    assert matte[20, 20] == 1.0  # sure in the first answer, and not within reach of the unsure
    np.testing.assert_allclose(matte[200:, 200:], (0.5 + 0.0 + 0.9) / 3, atol=1e-6)


def test_the_engine_takes_no_further_look_by_default_and_the_setting_names_them():
    from engine.config import EngineConfig
    from service.config import Settings

    assert EngineConfig(cache_dir=None).looks == ()
    assert Settings.from_environ({}).engine_config().looks == EngineConfig.looks
    assert Settings.from_environ({"CLEARBG_NET_LOOKS": "1:16, 0.875"}).engine_config().looks == ((1.0, 16), (0.875, 0))
    assert Settings.from_environ({"CLEARBG_NET_LOOKS": "none"}).engine_config().looks == ()
    for bad in ("yes", "0.1", "2", "0.875,0.875", " ,1:16", "1", "1:0", "1:-8", "1:65", "1:8.5"):
        with pytest.raises(ValueError, match="CLEARBG_NET_LOOKS must"):
            Settings.from_environ({"CLEARBG_NET_LOOKS": bad})


def test_warming_up_shows_the_net_every_look_shape(segmenters):
    class Recording:
        def __init__(self):
            self.shapes = []

        def run(self, outputs, feed):
            self.shapes.append(next(iter(feed.values())).shape[-2:])

    session = Recording()
    segmenters[((1.0, 16), (0.75, 0))].warm_up([(1024, 768), (768, 1024)], session)
    assert session.shapes == [(768, 1024), (800, 1056), (576, 768), (1024, 768), (1056, 800), (768, 576)]
