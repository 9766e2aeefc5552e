"""The scaled views (Segmenter.scales, EngineConfig.scales, CLEARBG_NET_SCALES): the net's answer
for a view averaged with its answers for the view scaled, each brought back to the view's shape."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.families import Segmenter


@pytest.fixture(scope="module")
def segmenters(model_manifest):
    def make(scales: tuple[float, ...]) -> Segmenter:
        return Segmenter(model_manifest.preference(), "isnet", threads=2,
                         openvino_cache=model_manifest.openvino_cache, scales=scales)

    return {scales: make(scales) for scales in ((1.0,), (0.75,), (0.75, 1.0))}


def test_a_scaled_view_runs_the_net_smaller_and_answers_at_the_view_shape(segmenters, person_photo):
    plain, scaled = segmenters[(1.0,)], segmenters[(0.75,)]
    shape = plain.input_shape(*person_photo.size)
    assert scaled.scaled_shape(shape, 0.75) == tuple(round(side * 0.75 / 32) * 32 for side in shape)
    ran = []
    infer = scaled._infer
    scaled._infer = lambda tensor, size: ran.append(tensor.shape[-2:]) or infer(tensor, size)
    try:
        matte = scaled.matte(person_photo)
    finally:
        del scaled._infer
    width, height = scaled.scaled_shape(shape, 0.75)
    assert ran == [(height, width)]
    assert matte.shape == plain.matte(person_photo).shape == (shape[1], shape[0])
    # What the net answers at another scale differs (it is why the mean helps) ...
    assert np.abs(matte - plain.matte(person_photo)).max() > 0.05
    # ... though it finds the same subject.
    assert np.count_nonzero((matte >= 0.5) & (plain.matte(person_photo) >= 0.5)) > 0.8 * np.count_nonzero(plain.matte(person_photo) >= 0.5)


def test_the_matte_is_the_mean_of_the_answers_at_each_scale(segmenters, person_photo):
    expected = (segmenters[(0.75,)].matte(person_photo) + segmenters[(1.0,)].matte(person_photo)) * np.float32(0.5)
    np.testing.assert_allclose(segmenters[(0.75, 1.0)].matte(person_photo), expected, atol=1e-6)


def test_the_engine_runs_one_scale_by_default_and_the_setting_names_others():
    from engine.config import EngineConfig
    from service.config import Settings

    assert EngineConfig(cache_dir=None).scales == (1.0,)
    assert Settings.from_environ({}).engine_config().scales == (1.0,)
    assert Settings.from_environ({"CLEARBG_NET_SCALES": "0.875, 1"}).engine_config().scales == (0.875, 1.0)
    assert Settings.from_environ({"CLEARBG_NET_SCALES": "1,1.125"}).engine_config().scales == (1.0, 1.125)
    for bad in ("yes", "0.1,1", "1,2", "1,1", " ,1"):
        with pytest.raises(ValueError, match="CLEARBG_NET_SCALES must"):
            Settings.from_environ({"CLEARBG_NET_SCALES": bad})


def test_warming_up_shows_the_net_every_scaled_shape(segmenters):
    class Recording:
        def __init__(self):
            self.shapes = []

        def run(self, outputs, feed):
            self.shapes.append(next(iter(feed.values())).shape[-2:])

    session = Recording()
    segmenters[(0.75, 1.0)].warm_up([(1024, 768), (768, 1024)], session)
    assert session.shapes == [(576, 768), (768, 1024), (768, 576), (1024, 768)]
