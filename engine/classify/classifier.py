"""Names the foreground's type from the photo and its matte: person, product, animal, car, other.

Two small networks, each doing what it is good at:
- a COCO detector (CenterNet-MobileNetV3) finds people, animals and vehicles, and the detection
  that overlaps the matte most is taken as the foreground's;
- an ImageNet classifier (MobileNetV2), run on three views (the matte's cut-out on grey, the
  matte's box in its setting, the whole photo), tells made objects (product) from plants,
  buildings and scenery (other), vetoes weak detections most views disagree with, and names
  animals and vehicles the detector missed. ImageNet has no person class, which is why the
  detector is needed at all.

Decision: a person detection stands; another detection stands when it is sure or most views
back its type; otherwise the views vote, and a product becomes other when one view clearly sees
scenery, a monument or a plant. Measured by bench/xtype.py.
"""

from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

from engine.classify import labels
from engine.models import providers
from engine.models.manifest import AuxModel

log = logging.getLogger(__name__)

DETECTOR_SIZE = 512
# The photo is looked at no larger than this (long side). The detector sees 512² and the
# classifier 224² views, each resized straight from the photo (`_resized`): at 1 MP (the net's
# 1024x768 view) ~3 ms for all four, where shrinking it to 640 first and resizing the views with
# Pillow's bilinear filter took ~10 ms of a ~37 ms X-Type step (CPU). bench/xtype.py, grabcut50:
# 43/50 either way with the ground-truth matte and with the model's (42/50 with the model's since
# the int8 variant's RECIPE 4 changed its matte: banana2 on a cluttered background). When Pillow
# resized: 43/50 at 1024 and 640, 42/50 at 512 and 384.
VIEW_SIDE = 1024
DETECTOR_STRIDE = 4
MAX_DETECTIONS = 20
MIN_DETECTION_SCORE = 0.15  # weaker peaks are ignored altogether
PERSON_SCORE = 0.25  # a person detection this strong names the foreground
SURE_SCORE = 0.5  # any detection this strong needs no backing from the classifier
AGREEMENT = 0.3  # a view backs a type when it gives it this much probability
SETTING_SCORE = 0.5  # one view this sure of "other" turns a product into other

# The classifier network's input (torchvision's MobileNetV2, built by modelprep/xtype).
CLASSIFIER_SIZE = 224
CLASSIFIER_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
CLASSIFIER_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_IMAGENET_TYPE_MATRIX = np.zeros((1000, len(labels.TYPES)), np.float32)
for _i in range(1000):
    _IMAGENET_TYPE_MATRIX[_i, labels.TYPES.index(labels.imagenet_type(_i))] = 1.0
_OTHER = labels.TYPES.index("other")
# ImageNet's normalisation, (pixel / 255 - mean) / std, as one multiply and one subtraction.
_CLASSIFIER_SCALE = (1.0 / (255.0 * CLASSIFIER_STD)).astype(np.float32)
_CLASSIFIER_SHIFT = (CLASSIFIER_MEAN / CLASSIFIER_STD).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    label: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels

    @property
    def type(self) -> str:
        return labels.coco_type(self.label)


@dataclass(frozen=True)
class Prediction:
    type: str
    detail: str  # the COCO or ImageNet label the decision rests on
    detection: Detection | None
    imagenet_top: int | None  # None: the classifier was not needed (the detection stood alone)
    type_scores: dict[str, float] | None


def _session(model: AuxModel, threads: int, openvino_cache: pathlib.Path | None) -> ort.InferenceSession:
    """On the provider and precision `make model` measured fastest for it (bench/xtype.py gives
    the same labels in bf16 as in f32); the CPU provider if that one fails to open."""
    opts = providers.session_options(threads)
    if model.provider != providers.CPU:
        try:
            chain = providers.provider_list(model.provider, threads, model.precision, openvino_cache)
            return providers.inference_session(model.file, opts, chain)
        except Exception as exc:  # noqa: BLE001 - any provider failure: the CPU provider, said in the log
            log.warning("X-Type network %s on %s failed (%s); using the CPU provider", model.file.name, model.provider, exc)
    return providers.inference_session(model.file, opts, [providers.CPU])


def _matte_array(matte: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The matte as float32 in [0, 1] at the image's size (w, h): integers are 0..255, floats 0..1."""
    m = np.asarray(matte)
    if m.ndim == 3:
        m = m[..., -1]
    if m.ndim != 2 or m.size == 0:
        return np.zeros((size[1], size[0]), np.float32)
    m = m.astype(np.float32) / 255.0 if m.dtype.kind in "ui" else m.astype(np.float32)
    if (m.shape[1], m.shape[0]) != size:
        m = cv2.resize(m, size, interpolation=cv2.INTER_AREA if m.shape[1] > size[0] else cv2.INTER_LINEAR)
    return np.clip(m, 0.0, 1.0)


def _reduced(image: Image.Image, side: int) -> np.ndarray:
    """`image` as uint8 HxWx3, its long side at most `side` (area-averaged, aspect kept)."""
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    scale = side / max(image.size)
    if scale >= 1:
        return rgb
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`array` resized to `size` (w, h): first averaged over whole k x l blocks (OpenCV's area
    filter at an integer factor, its fast path; the last partial block is left out), then the
    area filter for the remaining factor, under 2, on the smaller array. A 1024x768 photo to
    224²: 0.9 ms, where the area filter in one step took 1.7 ms and Pillow's bilinear filter 2.1
    ms; a bilinear second step (0.2 ms) cost bench/xtype.py a photo (42/50)."""
    kx, ky = max(1, array.shape[1] // size[0]), max(1, array.shape[0] // size[1])
    if kx > 1 or ky > 1:
        height, width = array.shape[0] // ky * ky, array.shape[1] // kx * kx
        array = cv2.resize(array[:height, :width], (width // kx, height // ky), interpolation=cv2.INTER_AREA)
    if (array.shape[1], array.shape[0]) == size:
        return array
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))  # two reductions, not the coordinates of every pixel
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """`box` of the array (it may reach outside: zero there, as Pillow's crop); a view when it
    lies inside."""
    x0, y0, x1, y1 = box
    height, width = array.shape[:2]
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return array[y0:y1, x0:x1]
    out = np.zeros((y1 - y0, x1 - x0, *array.shape[2:]), array.dtype)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = array[iy0:iy1, ix0:ix1]
    return out


def _alone(rgb: np.ndarray, matte: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """`box` of the photo (it may reach outside: black there) with the matte's background grey,
    uint8 HxWx3. Composited only inside the box, by OpenCV's weighted sum (rounded)."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    if ix1 > ix0 and iy1 > iy0:
        alpha = np.ascontiguousarray(matte[iy0:iy1, ix0:ix1], np.float32)
        part = np.ascontiguousarray(rgb[iy0:iy1, ix0:ix1])
        grey = np.full_like(part, 128)
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = cv2.blendLinear(part, grey, alpha, 1.0 - alpha)
    return out


def _peaks(heat: np.ndarray) -> list[tuple[int, int, int, float]]:
    """(class, row, column, score) of CenterNet's peaks in a CxHxW heat map, strongest first
    (ties in class, row, column order), at most MAX_DETECTIONS.

    A peak is a cell that is the maximum of its 3x3 neighbourhood (CenterNet's NMS); only cells
    above the score floor can matter, so only those are compared with neighbours. They are found
    where any class reaches the floor first (one pass over the classes, not a mask of all 80).
    """
    _, hh, ww = heat.shape
    rows, cols = np.nonzero(heat.max(axis=0) >= MIN_DETECTION_SCORE)
    cls_i, at = np.nonzero(heat[:, rows, cols] >= MIN_DETECTION_SCORE)
    ys, xs = rows[at], cols[at]
    neighbours = np.max(
        [heat[cls_i, np.clip(ys + dy, 0, hh - 1), np.clip(xs + dx, 0, ww - 1)]
         for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0,
    ) if cls_i.size else np.empty(0, np.float32)
    scores = heat[cls_i, ys, xs]
    keep = scores >= neighbours
    order = np.argsort(-scores[keep], kind="stable")[:MAX_DETECTIONS]
    return [(int(cls_i[keep][i]), int(ys[keep][i]), int(xs[keep][i]), float(scores[keep][i])) for i in order]


class ForegroundClassifier:
    """Loaded once and shared; onnxruntime sessions are safe to run from several threads."""

    def __init__(self, detector: AuxModel, classifier: AuxModel, openvino_cache: pathlib.Path | None = None,
                 threads: int = 1):
        self._detector = _session(detector, threads, openvino_cache)
        self._classifier = _session(classifier, threads, openvino_cache)

    # -- the two networks ------------------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """COCO detections in a uint8 HxWx3 photo, strongest first."""
        h, w = rgb.shape[:2]
        x = _resized(rgb, (DETECTOR_SIZE, DETECTOR_SIZE)).astype(np.float32)[None]
        heat, wh = self._detector.run(None, {"image": x})
        heat, wh = heat[0], wh[0]
        peaks = _peaks(heat)
        sx, sy = w / DETECTOR_SIZE, h / DETECTOR_SIZE
        out = []
        for cls_, gy, gx, score in peaks:
            cx, cy = gx * DETECTOR_STRIDE, gy * DETECTOR_STRIDE
            l, t, r, b = wh[:, gy, gx]
            box = (max(0.0, (cx - l) * sx), max(0.0, (cy - t) * sy),
                   min(float(w), (cx + r) * sx), min(float(h), (cy + b) * sy))
            out.append(Detection(cls_, score, box))
        return out

    def imagenet_probs(self, rgb: np.ndarray, matte: np.ndarray) -> np.ndarray:
        """ImageNet probabilities for three views of the foreground, shape (3, 1000).

        `rgb`: uint8 HxWx3; `matte`: float32 in [0, 1] at its size. View 0 is the matte's
        square box composited on grey: the object alone, so a busy background cannot name it.
        View 1 is the same box a little larger, unmasked, and view 2 the whole photo: the
        setting, which tells a gravestone in a field or a flower in a pot from an object on a
        table, and backs up a view the matte's cut-out misleads.
        """
        height, width = rgb.shape[:2]
        box = _box_of(matte > 0.5) or (0, 0, width, height)
        x1, y1, x2, y2 = box
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)

        def square(scale: float) -> tuple[int, int, int, int]:
            half = side * scale / 2  # outside the photo the crop is black; the aspect is kept
            return int(cx - half), int(cy - half), int(cx + half), int(cy + half)

        size = (CLASSIFIER_SIZE,) * 2
        views = [_alone(rgb, matte, square(1.1)), _crop(rgb, square(1.3)), rgb]
        x = np.stack([_resized(v, size) for v in views]).astype(np.float32)
        x *= _CLASSIFIER_SCALE
        x -= _CLASSIFIER_SHIFT
        logits = self._classifier.run(None, {"image": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # -- the decision ----------------------------------------------------------------------------

    def predict(self, image_rgb: Image.Image, matte: np.ndarray) -> Prediction:
        rgb = _reduced(image_rgb, VIEW_SIDE)
        m = _matte_array(matte, (rgb.shape[1], rgb.shape[0]))
        # The detector first: a detection that stands without the classifier's views (a
        # person: ImageNet has no person class; any type the detector is sure of) decides
        # alone, and the classifier's three views are only run when it does not (1 MP: ~19 ms
        # of one core saved on such photos). The two networks side by side would answer a lone
        # request sooner on an idle core, but a request is never alone in its CPU: the network
        # and edge work of the same or other requests take every core (1 MP in process, the
        # speed benchmark's three photos in turn, one at a time: 200 -> 196 ms a request).
        detections = self.detect(rgb)
        best = self._foreground_detection(detections, m)
        if best is not None and self._detection_stands(best, None):
            return Prediction(best.type, labels.COCO_LABELS[best.label], best, None, None)
        probs = self.imagenet_probs(rgb, m)
        views = probs @ _IMAGENET_TYPE_MATRIX  # (views, types): each view's mass per type
        fused = views.mean(axis=0)
        type_scores = dict(zip(labels.TYPES, (float(v) for v in fused)))
        top = int(np.argmax(probs.mean(axis=0)))
        if best is not None and self._detection_stands(best, views):
            return Prediction(best.type, labels.COCO_LABELS[best.label], best, top, type_scores)
        kind = labels.TYPES[self._vote(views)]
        if kind == "product" and views[:, _OTHER].max() >= SETTING_SCORE:
            kind = "other"  # scenery, a monument or a plant is what one view clearly sees
        return Prediction(kind, f"imagenet:{top}", None, top, type_scores)

    def classify(self, image_rgb: Image.Image, matte: np.ndarray) -> str:
        return self.predict(image_rgb, matte).type

    def label(self, image_rgb: Image.Image, matte: np.ndarray) -> str:
        """The type with the detector's finer class where it has one ("animal-dog"): the
        engine's classifier hook, which reports both type_level 1 and 2 from one prediction."""
        prediction = self.predict(image_rgb, matte)
        coco = labels.COCO_LABELS[prediction.detection.label] if prediction.detection is not None else None
        return labels.fine_label(prediction.type, coco)

    @staticmethod
    def _detection_stands(d: Detection, views: np.ndarray | None) -> bool:
        """Whether to believe the detector over the classifier.

        ImageNet has no person class, so a person detection stands on its own. Any other
        detection needs most classifier views to give its type real weight, unless the detector
        is sure: weak detections (a "bird" in a mushroom, a "cat" in a carved plaque, a "dog"
        for a ceramic figurine) are common.
        """
        if d.type == "person":
            return d.score >= PERSON_SCORE
        if d.score >= SURE_SCORE:
            return True
        if views is None:  # not yet known: the classifier has to be asked
            return False
        backing = int((views[:, labels.TYPES.index(d.type)] >= AGREEMENT).sum())
        return 2 * backing > len(views)

    @staticmethod
    def _vote(views: np.ndarray) -> int:
        """The type most views name; on a tie, the one the object-alone view names."""
        votes = np.bincount(views.argmax(axis=1), minlength=views.shape[1])
        leaders = np.flatnonzero(votes == votes.max())
        return int(leaders[0]) if leaders.size == 1 else int(views[0].argmax())

    @staticmethod
    def _foreground_detection(detections: list[Detection], matte: np.ndarray) -> Detection | None:
        """The detection that is the foreground: its box must hold most of the matte."""
        total = float(matte.sum())
        if total <= 0:
            return None
        best, best_score = None, 0.0
        for d in detections:
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            inside = float(matte[y1:y2, x1:x2].sum())
            box_area = max(1, (x2 - x1) * (y2 - y1))
            cover = inside / total  # how much of the foreground the box holds
            fill = inside / box_area  # how much of the box is foreground
            score = d.score * cover * min(1.0, 2 * fill)
            if score > best_score:
                best, best_score = d, score
        return best
