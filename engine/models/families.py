"""Model families: how each architecture wants its input and what its output means.

One class per architecture (the checkpoints of a family differ only in weights: they are rows in
`catalog.py`), and one `Segmenter` that runs any of them through onnxruntime. A family is pure
arithmetic on arrays, so it is unit-testable without the model file.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image

from engine.models import providers
from engine.models.manifest import Candidate
from engine.models.matte_cache import MatteCache

log = logging.getLogger(__name__)


# A net output whose maximum stays below this found no subject: it is not stretched.
STRETCH_FLOOR = 0.5

# A net that takes any input shape sees the photo with its aspect kept: the long side at the
# net's size, the short side in steps of the encoder's total stride and at least a quarter of
# it (a banner's few rows would leave the deepest stage almost nothing to work on). Measured on
# ../shared/quality, IS-Net int8 on OpenVINO, mean IoU against the truth, square 1024² vs aspect
# kept: grabcut50 0.8619 -> 0.8668, alphamatting14 0.7729 -> 0.7974, 0.194 -> 0.145 s on 4:3
# photos. Shrinking the long side instead costs quality (768: 0.8581 and 0.7464).
STRIDE = 32
MIN_SHORT_SIDE = 0.25

# Further looks at a view (Segmenter.looks) count only where the first answer is between these, the
# region grown by UNSURE_REACH net pixels: set before measuring, not swept (README, Quality).
UNSURE = (0.02, 0.98)
UNSURE_REACH = 4

Shape = tuple[int, int]  # (width, height), as Pillow's sizes

COARSE_LOGITS = "coarse_logits"
"""The output of a prepared variant whose last Resize and Sigmoid were cut (modelprep.variants
drop_output_upsample): the logits on the decoder's last grid, to be resized bilinearly
(half-pixel centres) to the input's size and passed through the sigmoid, as the cut nodes did
(Family.postprocess)."""


class Family:
    """Resize to the net's input shape, normalise per channel, read back a [0, 1] matte."""

    name: ClassVar[str]
    size: ClassVar[int]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    output_name: ClassVar[str | None] = None  # None: the model's first output
    logits: ClassVar[bool] = False  # the net answers logits: sigmoid first

    def input_shape(self, width: int, height: int, side: int | None = None, keep_aspect: bool = False) -> Shape:
        """The (w, h) a width x height picture is resized to: the net's square, or with
        `keep_aspect` (a net that takes any shape) the long side `side` and the short side
        scaled with it, rounded to STRIDE, at least MIN_SHORT_SIDE of `side`."""
        side = side or self.size
        if not keep_aspect or width == height or width <= 0 or height <= 0:
            return side, side
        short = side * min(width, height) / max(width, height)
        floor = max(STRIDE, int(side * MIN_SHORT_SIDE) // STRIDE * STRIDE)
        short = min(side, max(floor, round(short / STRIDE) * STRIDE))
        return (side, short) if width > height else (short, side)

    def preprocess(self, image: Image.Image, size: int | Shape | None = None) -> np.ndarray:
        """RGB image -> float32 1x3xHxW, (pixel/255 - mean) / std, in one multiply-add.

        `size`: the net's square side (default the family's), or a (w, h) from input_shape().
        """
        width, height = size if isinstance(size, tuple) else (size or self.size,) * 2
        resized = image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32)  # H x W x 3
        scale = (1.0 / (255.0 * np.asarray(self.std, dtype=np.float32))).astype(np.float32)
        shift = (np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32)).astype(np.float32)
        tensor = np.empty((1, 3, height, width), dtype=np.float32)
        for c in range(3):
            np.multiply(pixels[:, :, c], scale[c], out=tensor[0, c])
            tensor[0, c] -= shift[c]
        return tensor

    def postprocess(self, output: np.ndarray, coarse_to: Shape | None = None) -> np.ndarray:
        """Net output (1x1xHxW or HxW) -> float32 HxW in [0, 1], min-max stretched as rembg does.

        `coarse_to`: the output is a prepared variant's COARSE_LOGITS (see `matte_output`), to
        be brought to this (w, h), the input's, as the nodes cut from the net did: bilinear with
        half-pixel centres (OpenCV's, as ONNX's Resize), then the sigmoid.

        The stretch makes the most confident pixel fully opaque when a net never quite reaches
        1.0. It is skipped when nothing reaches STRETCH_FLOOR: on a blank wall IS-Net answers at
        most ~0.02, and stretching that noise to 1.0 (as rembg does) would invent a subject.
        """
        matte = np.asarray(output, dtype=np.float32).reshape(output.shape[-2:])
        if coarse_to is not None:
            matte = _sigmoid(cv2.resize(matte, coarse_to, interpolation=cv2.INTER_LINEAR))
        elif self.logits:
            matte = _sigmoid(matte.copy())
        low, high = float(matte.min()), float(matte.max())
        if high >= STRETCH_FLOOR and high - low > 1e-6:
            matte = (matte - np.float32(low)) * np.float32(1.0 / (high - low))
        else:
            matte = np.clip(matte, 0.0, 1.0)
        return matte.astype(np.float32, copy=False)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """In place (float32): 1 / (1 + e^-x); far negative logits overflow e^-x to inf, giving 0."""
    with np.errstate(over="ignore"):
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
    logits += np.float32(1.0)
    return np.reciprocal(logits, out=logits)


class ISNet(Family):
    """DIS / IS-Net (IMG.LY's and the general-use checkpoints): output `output`, already in [0, 1]."""

    name = "isnet"
    size = 1024
    mean = (0.5, 0.5, 0.5)
    std = (1.0, 1.0, 1.0)
    output_name = "output"


class U2Net(Family):
    """U²-Net and its small/human variants: ImageNet statistics, first output is the fused map."""

    name = "u2net"
    size = 320
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)


class BiRefNet(Family):
    """BiRefNet: ImageNet statistics; the last decoder stage answers logits."""

    name = "birefnet"
    size = 1024
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    logits = True


FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (ISNet, U2Net, BiRefNet)}


def family(name: str) -> Family:
    try:
        return FAMILIES[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def fixed_shape(session) -> Shape | None:
    """The (w, h) an onnxruntime session's input is fixed at, or None where it takes any shape
    (a variant made by variants.flexible_input_size)."""
    height, width = session.get_inputs()[0].shape[-2:]
    return (width, height) if isinstance(height, int) and isinstance(width, int) else None


def matte_output(session, fam: Family) -> tuple[str, bool]:
    """The output a session's matte is read from, and whether it is a prepared variant's coarse
    logits (COARSE_LOGITS: Family.postprocess's `coarse_to`) rather than the matte."""
    outputs = [o.name for o in session.get_outputs()]
    if COARSE_LOGITS in outputs:
        return COARSE_LOGITS, True
    return (fam.output_name if fam.output_name in outputs else outputs[0]), False


class Segmenter:
    """One onnxruntime session for one checkpoint; `matte()` is safe to call from many threads
    (at most `concurrent_runs` inferences run at once, the others wait their turn).

    `candidates` are the manifest's ways to run the net here, best first (Manifest.preference):
    the first whose session opens is used, the next ones are the fallback (a broken OpenVINO
    install, say). Memory matters more than a few percent of speed: the CPU arena and memory
    pattern planner are off except for int8 (providers.py says why).
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        family_name: str = "isnet",
        threads: int | None = None,
        concurrent_runs: int = 1,
        openvino_cache: pathlib.Path | None = None,
        batch_max: int = 32,
        batch_wait_ms: float = 5.0,
        matte_cache_bytes: int = 0,
        mirror: bool = False,
        looks: Sequence[tuple[float, int]] = (),
    ):
        from engine.models.lanes import Lanes

        if not candidates:
            raise ValueError("no model candidate to open")
        self.family = family(family_name)
        threads = threads or providers.default_threads()
        self._openvino_cache = openvino_cache
        self.candidate, self.session = self._open(candidates, threads)
        self.provider = self.session.get_providers()[0]
        self.model_path = self.candidate.file  # the variant file in use
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_name, self._coarse = matte_output(self.session, self.family)
        # A checkpoint exported at another square size (e.g. a 512² IS-Net) says so in its shape;
        # one whose variant takes any shape (modelprep's flexible_input_size) keeps photos' aspect.
        self.fixed_shape = fixed_shape(self.session)
        self.size = max(self.fixed_shape) if self.fixed_shape else self.family.size
        # `concurrent_runs` inferences at once: the first on this all-core session, the others on
        # lanes of their own (engine/models/lanes.py). Each run in flight holds its activations
        # (~0.6 GB for fp32 IS-Net at 1024², far less for int8), so it stays a small bound.
        runs = max(1, concurrent_runs)
        self._lanes_wanted, self._lane_threads = runs - 1, max(1, threads // runs)
        self._lanes = Lanes(self.session)
        # A GPU session runs whole batches: concurrent requests are grouped (batching.py) on
        # its one session instead of spread over CPU lanes.
        self.batcher = None  # engine/models/batching.Batcher where the session batches
        if getattr(self.session, "batched", False):
            from engine.models.batching import Batcher

            self._lanes_wanted = 0
            self.batcher = Batcher(self.session.run_batch, batch_max, batch_wait_ms / 1000.0)
        self.cache = MatteCache(matte_cache_bytes)
        # The matte is the mean of the net's answers for the view and for its mirror image: what
        # one of them gets wrong the other often does not (twice the net's time; README, Quality).
        self.mirror = mirror
        # ... and, on a net that takes any shape, its answers for further `looks` at the view
        # (scale, shift): scaled, and shifted against the net's stride grid by `shift` pixels
        # (edge-padded), each mirrored too, averaged in where that first answer is unsure. The
        # net's misses and grey textures change with the scale and the grid; where the first
        # answer is sure, another look's guess (a second subject, haze) is not let in (README, Quality).
        self.looks = tuple(looks) if self.fixed_shape is None else ()

    def _session(self, candidate: Candidate, threads: int) -> object:
        if candidate.provider in providers.TORCH:  # imports torch: only when a torch candidate is tried
            from engine.models import torchnet

            return torchnet.open_session(candidate.file, candidate.provider, candidate.precision)
        options = providers.session_options(threads, candidate.arena)
        chain = providers.provider_list(candidate.provider, threads, candidate.precision, self._openvino_cache)
        return providers.inference_session(candidate.file, options, chain)

    def _open(self, candidates: Sequence[Candidate], threads: int) -> tuple[Candidate, object]:
        failures = []
        for candidate in candidates:
            try:
                return candidate, self._session(candidate, threads)
            except Exception as exc:  # noqa: BLE001 - any provider failure: the next candidate, said in the log
                failures.append(f"{candidate.name}: {exc}")
                log.warning("model candidate %s failed to open (%s); trying the next", candidate.name, exc)
        raise RuntimeError("no model candidate could be opened: " + "; ".join(failures))

    def input_shape(self, width: int, height: int) -> Shape:
        """The (w, h) the net sees a width x height picture at (see Family.input_shape)."""
        return self.fixed_shape or self.family.input_shape(width, height, self.size, keep_aspect=True)

    def scaled_shape(self, shape: Shape, scale: float) -> Shape:
        """The (w, h) a view of `shape` is scaled to for a look at `scale`: each side
        scaled, in steps of STRIDE."""
        if scale == 1.0:
            return shape
        return tuple(max(STRIDE, round(side * scale / STRIDE) * STRIDE) for side in shape)  # type: ignore[return-value]

    def view_shapes(self, shape: Shape) -> list[Shape]:
        """The (w, h) the net runs at for a view of `shape`: the view's, then each look's (scaled,
        and `shift` pixels of padding on every side)."""
        found = [shape]
        for scale, shift in self.looks:
            width, height = self.scaled_shape(shape, scale)
            found.append((width + 2 * shift, height + 2 * shift))
        return found

    def warm_up(self, shapes: list[Shape], session: object | None = None) -> None:
        """The session (default: the all-core one) runs once at each shape (and each of its
        looks' shapes): a runtime's first run of a shape sets it up (OpenVINO: ~50 ms more for a
        new shape, up to 2x the time on the first run at all)."""
        shapes = [seen for shape in shapes for seen in self.view_shapes(shape)]
        for width, height in shapes:
            tensor = np.zeros((1, 3, height, width), np.float32)
            (session or self.session).run([self.output_name], {self.input_name: tensor})
            if self.batcher is not None:  # each batch size the batcher can form, set up once
                from engine.models.batching import bucket

                for size in sorted({bucket(n) for n in range(2, self.batcher.max_batch + 1)}):
                    self.session.run_batch(np.zeros((size, 3, height, width), np.float32))

    def warm_up_free(self, shapes: list[Shape]) -> None:
        """Each shape run once on whichever session is free (the all-core one when no request
        is in flight), between requests, never beside one on the same session: its first run
        of a shape costs ~20 ms more at 1024x768 or 768x1024, ~70 ms at 1024² (OpenVINO, int8)."""
        for shape in shapes:
            with self._lanes.session() as session:
                self.warm_up([shape], session)

    def open_lanes(self, shapes: list[Shape]) -> int:
        """Opens and warms the further lanes `concurrent_runs` asked for, adding each as it is
        ready (1.3-1.7 s to open one on 2 cores, with the GIL held throughout, then a run at each
        of `shapes`), so a caller may run this after it has started serving (service/server.py).
        Returns how many opened; a lane that fails is logged and skipped."""
        opened = 0
        for _ in range(self._lanes_wanted):
            try:
                session = self._session(self.candidate, self._lane_threads)
                self.warm_up(shapes, session)
            except Exception as exc:  # noqa: BLE001 - the wide session still serves every request
                log.warning("another inference lane failed to open (%s); serving with %d", exc, 1 + opened)
                break
            self._lanes.add(session)
            opened += 1
        self._lanes_wanted -= opened
        return opened

    def matte(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 HxW matte in [0, 1] at the net's resolution (input_shape)."""
        return self.matte_held(image)[0]

    def matte_held(self, image: Image.Image, scope: str = "") -> tuple[np.ndarray, bool]:
        """`matte`, and whether it came from the cache (matte_cache.py): a repeat of the same
        input within `scope` does."""
        shape = self.input_shape(*image.size)
        seen = image if image.size == shape else image.resize(shape, Image.Resampling.BILINEAR)
        if not self.cache.max_bytes:  # off: no digest of the pixels to take (~4 ms at 1024x768)
            return self._run(seen, shape), False
        return self.cache.get(MatteCache.key(scope, shape, seen.tobytes()), lambda: self._run(seen, shape))

    def _run(self, image: Image.Image, shape: Shape) -> np.ndarray:
        """The net's answer for `image` (at `shape`: the engine's views come at the net's shape
        already), mirrored too where `mirror` is on; with `looks`, their answers averaged
        in where it is unsure (UNSURE, grown by UNSURE_REACH)."""
        prepared = self.family.preprocess(image, shape)
        first = self._answer(prepared, shape)
        if not self.looks:
            return first
        total = first.copy()
        for (scale, shift), ran_at in zip(self.looks, self.view_shapes(shape)[1:]):
            size = self.scaled_shape(shape, scale)
            # A look at the view's own scale (only shifted) pads the tensor the first answer read.
            tensor = prepared if size == shape else self.family.preprocess(image.resize(size, Image.Resampling.BILINEAR), size)
            if shift:
                tensor = np.ascontiguousarray(np.pad(tensor, ((0, 0), (0, 0), (shift, shift), (shift, shift)), mode="edge"))
            matte = self._answer(tensor, ran_at)[shift : shift + size[1], shift : shift + size[0]]
            if size != shape:
                matte = cv2.resize(matte, shape, interpolation=cv2.INTER_LINEAR)
            total += matte
        total *= np.float32(1.0 / (1 + len(self.looks)))
        low, high = UNSURE
        unsure = ((first > low) & (first < high)).astype(np.uint8)
        unsure = cv2.dilate(unsure, np.ones((2 * UNSURE_REACH + 1,) * 2, np.uint8))
        return np.where(unsure.astype(bool), total, first)

    def _answer(self, tensor: np.ndarray, shape: Shape) -> np.ndarray:
        """The net's matte for one preprocessed view, averaged with its mirror's where `mirror` is on."""
        matte = self._infer(tensor, shape)
        if self.mirror:
            mirrored = self._infer(np.ascontiguousarray(tensor[..., ::-1]), shape)[:, ::-1]
            matte = (matte + mirrored) * np.float32(0.5)
        return matte

    def _infer(self, tensor: np.ndarray, shape: Shape) -> np.ndarray:
        if self.batcher is not None:
            output = self.batcher.run(tensor)
        else:
            with self._lanes.session() as session:
                (output,) = session.run([self.output_name], {self.input_name: tensor})
        return self.family.postprocess(output, shape if self._coarse else None)
