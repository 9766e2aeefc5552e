"""The mirrored view (Segmenter.mirror, on by default): the net's answer for a view averaged with
its answer for the mirror image, flipped back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.models.families import Segmenter


@pytest.fixture(scope="module")
def segmenters(model_manifest):
    def make(mirror: bool) -> Segmenter:
        return Segmenter(model_manifest.preference(), "isnet", threads=2,
                         openvino_cache=model_manifest.openvino_cache, mirror=mirror)

    return make(False), make(True)


def test_the_matte_is_the_mean_of_the_view_and_its_mirror_image(segmenters, person_photo):
    plain, mirrored = segmenters
    flipped = person_photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    expected = (plain.matte(person_photo) + plain.matte(flipped)[:, ::-1]) * np.float32(0.5)
    np.testing.assert_allclose(mirrored.matte(person_photo), expected, atol=1e-6)


def test_a_mirrored_photo_gets_the_mirrored_matte(segmenters, person_photo):
    plain, mirrored = segmenters
    flipped = person_photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # The net alone is not symmetric: what it answers for the mirror image differs ...
    assert np.abs(plain.matte(flipped)[:, ::-1] - plain.matte(person_photo)).max() > 0.05
    # ... and the mean of both answers is the same whichever way round the person_photo came.
    np.testing.assert_allclose(mirrored.matte(flipped)[:, ::-1], mirrored.matte(person_photo), atol=1e-6)


def test_the_engine_mirrors_by_default_and_the_setting_turns_it_off():
    from engine.config import EngineConfig
    from service.config import Settings

    assert EngineConfig(cache_dir=None).mirror is True
    assert Settings.from_environ({}).engine_config().mirror is True
    assert Settings.from_environ({"CLEARBG_MIRROR": "0"}).engine_config().mirror is False
    with pytest.raises(ValueError, match="CLEARBG_MIRROR must be one of 0, 1"):
        Settings.from_environ({"CLEARBG_MIRROR": "yes"})
