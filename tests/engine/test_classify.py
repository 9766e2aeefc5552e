"""X-Type classifier: real photos from ../shared/quality, bad input (its networks are prepared by
modelprep/xtype: tests/modelprep/test_xtype.py)."""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import threading

import numpy as np
import pytest
from PIL import Image

from engine.classify import TYPES, ForegroundClassifier

QUALITY = pathlib.Path(__file__).resolve().parents[3] / "shared" / "quality" / "grabcut50"
needs_photos = pytest.mark.skipif(not QUALITY.is_dir(), reason="../shared/quality is not here")


@pytest.fixture(scope="module")
def classifier(model_manifest) -> ForegroundClassifier:
    return ForegroundClassifier(model_manifest.xtype["detector"], model_manifest.xtype["classifier"],
                                model_manifest.openvino_cache)


def _photo(name: str) -> tuple[Image.Image, np.ndarray]:
    rows = {pathlib.Path(r["image"]).name: r for r in csv.DictReader((QUALITY / "meta.csv").open())}
    row = rows[name]
    image = Image.open(QUALITY / row["image"]).convert("RGB")
    return image, np.asarray(Image.open(QUALITY / row["mask"]).convert("L"))


@needs_photos
@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        ("person1.jpg", "person"),
        ("tennis.jpg", "person"),
        ("21077.jpg", "car"),  # race car
        ("37073.jpg", "car"),  # jet: vehicles are "car"
        ("sheep.jpg", "animal"),
        ("326038.jpg", "animal"),  # leopard
        ("banana1.png", "product"),
        ("teddy.jpg", "product"),
        ("bush.jpg", "other"),  # potted plant
        ("grave.jpg", "other"),
    ],
)
def test_known_photos(classifier: ForegroundClassifier, photo: str, expected: str) -> None:
    image, matte = _photo(photo)
    assert classifier.classify(image, matte) == expected


@needs_photos
def test_matte_as_float_or_uint8_gives_the_same_answer(classifier: ForegroundClassifier) -> None:
    image, matte = _photo("sheep.jpg")
    as_uint8 = classifier.predict(image, matte)
    as_float = classifier.predict(image, matte.astype(np.float32) / 255.0)
    assert as_uint8.type == as_float.type == "animal"
    assert as_uint8.detail == as_float.detail


@needs_photos
def test_the_matte_picks_the_foreground(classifier: ForegroundClassifier) -> None:
    """A person stands in front of a matte that covers only the background's corner: no person."""
    image, matte = _photo("person3.jpg")
    assert classifier.classify(image, matte) == "person"
    corner = np.zeros_like(matte)
    corner[:40, :40] = 255
    assert classifier.classify(image, corner) != "person"


@needs_photos
def test_threads_share_one_classifier(classifier: ForegroundClassifier) -> None:
    photos = ["person1.jpg", "sheep.jpg", "21077.jpg", "banana1.png"]
    inputs = [_photo(p) for p in photos]
    expected = [classifier.classify(i, m) for i, m in inputs]
    results: dict[int, list[str]] = {}

    def work(k: int) -> None:
        results[k] = [classifier.classify(i, m) for i, m in inputs]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))
    assert expected == ["person", "animal", "car", "product"]


def test_empty_or_odd_mattes_still_give_a_type(classifier: ForegroundClassifier) -> None:
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    for matte in (np.zeros((48, 64), np.uint8), np.full((48, 64), 255, np.uint8),
                  np.zeros((10, 10), np.float32), np.ones((48, 64, 4), np.uint8) * 255):
        assert classifier.classify(image, matte) in TYPES
    assert classifier.classify(Image.new("L", (30, 30), 9), np.ones((30, 30))) in TYPES


@pytest.mark.parametrize("box", [(40, 30, 120, 90), (-20, -10, 60, 50), (100, 70, 190, 150), (-5, -5, 170, 130)])
def test_the_object_alone_view_is_the_whole_composite_cropped(box) -> None:
    """The classifier composites only the box it looks at (outside the photo: black, as Pillow's
    crop): the same pixels, to rounding, as compositing the whole photo on grey and cropping."""
    from engine.classify.classifier import _alone, _box_of

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    matte = np.zeros((120, 160), np.float32)
    matte[20:100, 30:140] = rng.random((80, 110), dtype=np.float32)
    whole = rgb.astype(np.float32) * matte[..., None] + 128.0 * (1.0 - matte[..., None])
    expected = np.asarray(Image.fromarray(whole.astype(np.uint8)).crop(box))
    alone = _alone(rgb, matte, box)
    assert alone.shape == expected.shape and alone.dtype == np.uint8
    assert np.abs(alone.astype(int) - expected).max() <= 1  # rounded where the float sum was cut
    assert (alone[np.asarray(Image.fromarray(np.ones_like(rgb)).crop(box)) == 0] == 0).all()
    ys, xs = np.nonzero(matte > 0.5)
    assert _box_of(matte > 0.5) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert _box_of(np.zeros((4, 4), bool)) is None


def test_peaks_are_the_local_maxima_above_the_floor_strongest_first() -> None:
    from engine.classify.classifier import MAX_DETECTIONS, MIN_DETECTION_SCORE, _peaks

    rng = np.random.default_rng(3)
    heat = (rng.random((6, 20, 24), dtype=np.float32) ** 6).astype(np.float32)  # mostly faint
    heat[2, 5, 5], heat[2, 5, 6] = 0.9, 0.9  # a tie of neighbours: both stand, row order
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), mode="edge")
    expected = []
    for c, y, x in zip(*np.nonzero(heat >= MIN_DETECTION_SCORE)):
        if heat[c, y, x] >= padded[c, y:y + 3, x:x + 3].max():
            expected.append((int(c), int(y), int(x), float(heat[c, y, x])))
    expected.sort(key=lambda p: -p[3])  # stable: class, row, column among equals
    assert len(expected) > MAX_DETECTIONS  # the cap is exercised
    assert _peaks(heat) == expected[:MAX_DETECTIONS]
    assert _peaks(np.zeros((3, 4, 4), np.float32)) == []


class _FakeNet:
    """A session that answers one fixed output, or fails the test when run."""

    def __init__(self, outputs: list[np.ndarray] | None):
        self.outputs, self.runs = outputs, 0

    def run(self, names, feeds):
        self.runs += 1
        if self.outputs is None:
            raise AssertionError("the classifier ran although the detection decides alone")
        return self.outputs


def _classifier_with_one_detection(label: str, score: float, logits: np.ndarray | None) -> ForegroundClassifier:
    """The decision logic with fake networks: the detector sees one `label` at `score` over
    the middle of its heat map, its box over the middle half of the photo, as the matte below."""
    from engine.classify import labels as label_names
    from engine.classify.classifier import DETECTOR_SIZE, DETECTOR_STRIDE

    cells = DETECTOR_SIZE // DETECTOR_STRIDE
    heat = np.zeros((1, 80, cells, cells), np.float32)
    wh = np.zeros((1, 4, cells, cells), np.float32)
    heat[0, label_names.COCO_LABELS.index(label), cells // 2, cells // 2] = score
    wh[0, :, cells // 2, cells // 2] = DETECTOR_SIZE / 4  # a box over the middle half
    found = ForegroundClassifier.__new__(ForegroundClassifier)
    found._detector = _FakeNet([heat, wh])
    found._classifier = _FakeNet(None if logits is None else [logits])
    return found


@pytest.mark.parametrize(("label", "score"), [("dog", 0.6), ("car", 0.5), ("person", 0.3)])
def test_a_detection_that_stands_alone_skips_the_classifier(label: str, score: float) -> None:
    """A person, or any type the detector is sure of, decides without the classifier's views
    (which could not overturn it): the classifier network is never run."""
    from engine.classify import labels as label_names

    image = Image.new("RGB", (256, 256), (90, 120, 60))
    matte = np.zeros((256, 256), np.uint8)
    matte[80:176, 80:176] = 255
    found = _classifier_with_one_detection(label, score, None)
    prediction = found.predict(image, matte)
    assert prediction.type == label_names.coco_type(label_names.COCO_LABELS.index(label))
    assert prediction.imagenet_top is None and prediction.type_scores is None
    assert found._detector.runs == 1 and found._classifier.runs == 0


def test_a_weak_detection_still_asks_the_classifier() -> None:
    """Under SURE_SCORE a dog needs most views to back "animal": here they all see a car."""
    from engine.classify.classifier import SURE_SCORE

    image = Image.new("RGB", (256, 256), (90, 120, 60))
    matte = np.zeros((256, 256), np.uint8)
    matte[80:176, 80:176] = 255
    logits = np.zeros((3, 1000), np.float32)
    logits[:, 817] = 20.0  # ImageNet 817: sports car
    found = _classifier_with_one_detection("dog", SURE_SCORE - 0.1, logits)
    prediction = found.predict(image, matte)
    assert found._classifier.runs == 1
    assert prediction.type == "car" and prediction.imagenet_top == 817


def test_views_are_averaged_blocks_then_area_resized() -> None:
    from engine.classify.classifier import _crop, _resized

    checker = np.indices((97, 130)).sum(axis=0) % 2 * 255  # a pattern only averaging turns grey
    rgb = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    small = _resized(rgb, (31, 23))
    assert small.shape == (23, 31, 3) and small.dtype == np.uint8
    assert np.abs(small.astype(int) - 128).max() <= 8
    assert _resized(rgb, (130, 97)) is rgb
    assert np.array_equal(_crop(rgb, (-2, -3, 5, 4))[3:, 2:], rgb[:4, :5])
    assert not _crop(rgb, (-2, -3, 5, 4))[:3].any() and not _crop(rgb, (-2, -3, 5, 4))[:, :2].any()


def test_the_engine_from_its_manifest_uses_the_classifier(model_manifest, engine_config) -> None:
    from engine.pipeline import Engine

    engine = Engine.from_manifest(model_manifest, engine_config)
    assert isinstance(getattr(engine.classify, "__self__", None), ForegroundClassifier)
    image, matte = Image.new("RGB", (32, 32)), np.zeros((32, 32), np.float32)
    assert engine.classify(image, matte) in TYPES
    assert Engine.from_manifest(model_manifest, engine_config, classify=lambda i, m: "car").classify(image, matte) == "car"


@pytest.mark.parametrize(
    "kind, coco, label",
    [("animal", "dog", "animal-dog"), ("person", "person", "person"), ("car", "car", "car"),
     ("car", "truck", "car-truck"), ("product", "cell phone", "product-cell_phone"), ("other", None, "other")],
)
def test_fine_label_for_type_level_2(kind, coco, label):
    from engine.classify.labels import fine_label

    assert fine_label(kind, coco) == label




def test_x_type_networks_fall_back_to_the_cpu_provider(monkeypatch, model_manifest):
    """An OpenVINO failure while loading (a broken install, a cache another process is writing)
    must not stop a server: the networks load on the CPU provider instead."""
    from engine.models import providers

    real = providers.inference_session
    asked = []

    def openvino_fails(path, options, provider_options):
        asked.append(provider_options)
        if any(isinstance(p, tuple) and p[0] == providers.OPENVINO for p in provider_options):
            raise RuntimeError("cannot set permissions: No such file or directory")
        return real(path, options, provider_options)

    monkeypatch.setattr(providers, "inference_session", openvino_fails)
    on_openvino = {name: dataclasses.replace(m, provider=providers.OPENVINO) for name, m in model_manifest.xtype.items()}
    loaded = ForegroundClassifier(on_openvino["detector"], on_openvino["classifier"])
    assert loaded._detector.get_providers() == [providers.CPU]
    assert asked[-1] == [providers.CPU] and len(asked) == 4  # OpenVINO, then CPU, for each network
