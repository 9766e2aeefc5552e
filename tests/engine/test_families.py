"""Family arithmetic (no model file needed): input normalisation and output read-back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.models.families import FAMILIES, BiRefNet, ISNet, U2Net, family

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def solid(colour, size):
    return Image.new("RGB", (size, size), colour)


@pytest.mark.parametrize(
    ("cls", "size", "mean", "std"),
    [
        (ISNet, 1024, np.full(3, 0.5, np.float32), np.ones(3, np.float32)),
        (U2Net, 320, IMAGENET_MEAN, IMAGENET_STD),
        (BiRefNet, 1024, IMAGENET_MEAN, IMAGENET_STD),
    ],
)
def test_preprocess_normalises_per_channel(cls, size, mean, std):
    colour = (255, 128, 0)
    tensor = cls().preprocess(solid(colour, 50))  # resized up to the net's square
    assert tensor.shape == (1, 3, size, size) and tensor.dtype == np.float32
    expected = (np.array(colour, np.float32) / 255 - mean) / std
    assert np.allclose(tensor[0, :, size // 2, size // 2], expected, atol=1e-5)
    assert np.allclose(tensor[0, :, 0, 0], expected, atol=1e-5)


def test_preprocess_keeps_layout_channels_first():
    image = Image.new("RGB", (320, 320), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 160, 320))  # left half white
    tensor = U2Net().preprocess(image)
    assert tensor[0, :, 100, 10].min() > 1.5  # white, all channels
    assert tensor[0, :, 100, 300].max() < -1.5  # black


def test_isnet_postprocess_stretches_to_unit_range():
    raw = np.linspace(0.2, 0.8, 16, dtype=np.float32).reshape(1, 1, 4, 4)
    matte = ISNet().postprocess(raw)
    assert matte.shape == (4, 4) and matte.dtype == np.float32
    assert matte.min() == 0.0 and matte.max() == pytest.approx(1.0)
    assert np.all(np.diff(matte.ravel()) > 0)  # order kept


def test_birefnet_postprocess_applies_sigmoid_first():
    logits = np.array([[[[-4.0, 0.0], [0.0, 4.0]]]], dtype=np.float32)
    matte = BiRefNet().postprocess(logits)
    sig = 1 / (1 + np.exp(-np.array([-4.0, 0.0, 4.0])))
    assert matte[0, 1] == pytest.approx((sig[1] - sig[0]) / (sig[2] - sig[0]), abs=1e-5)


def test_flat_output_stays_flat():
    assert ISNet().postprocess(np.zeros((1, 1, 8, 8), np.float32)).max() == 0.0


def test_faint_output_is_not_stretched_into_a_subject():
    faint = np.zeros((1, 1, 8, 8), np.float32)
    faint[0, 0, 3, 3] = 0.02  # what IS-Net answers on a blank wall
    assert ISNet().postprocess(faint).max() == pytest.approx(0.02)


def test_family_lookup():
    assert set(FAMILIES) == {"isnet", "u2net", "birefnet"}
    assert isinstance(family("ISNet"), ISNet)
    with pytest.raises(ValueError, match="unknown model family"):
        family("nope")


@pytest.mark.parametrize(
    ("photo", "shape"),
    [
        ((1000, 750), (1024, 768)),  # 4:3: the long side at the net's size, aspect kept
        ((750, 1000), (768, 1024)),
        ((3000, 2000), (1024, 672)),  # 3:2: 682.7 rounded to the stride
        ((500, 500), (1024, 1024)),
        ((4000, 300), (1024, 256)),  # a banner: the short side's floor
        ((1024, 768), (1024, 768)),  # a view already at its shape stays there
    ],
)
def test_input_shape_keeps_the_aspect_where_the_net_allows(photo, shape):
    isnet = ISNet()
    assert isnet.input_shape(*photo, keep_aspect=True) == shape
    assert isnet.input_shape(*photo) == (1024, 1024)  # a fixed-size net: its square
    tensor = isnet.preprocess(Image.new("RGB", photo, (10, 20, 30)), shape)
    assert tensor.shape == (1, 3, shape[1], shape[0])
