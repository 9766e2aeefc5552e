"""Times every way this machine can run the segmentation net and checks each one's masks.

A choice that depends on the machine is made by measuring on it: which file (the cleaned fp32
graph, the int8 one) runs fastest on which execution provider at which precision differs by CPU
(int8 was 3x fp32 with VNNI, 1.8x without; OpenVINO's bf16 only pays where the CPU computes in
it). So every candidate runs the same photos at the net's commonest shapes, interleaved (a busy
machine slows them alike), on every core as the server's first session does; its masks are
compared with the fp32 graph's on the CPU provider (the reference: the network as trained), as
masks and as mattes, and the fastest candidate within both bounds is chosen.

The check photos are public photos held out from int8's calibration (modelprep/calibration.py).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from engine.models import providers
from engine.models.families import Family, matte_output
from engine.models.manifest import AuxModel, Candidate

log = logging.getLogger(__name__)

# What "passes" means: the candidate's masks (matte > 0.5) against the reference's, mean IoU over
# the check photos at every measured shape. int8 measured 0.97-0.99 here and on an AVX2-only CPU.
BOUND_MEAN_IOU = 0.97
# And the mattes themselves, mean |difference| over the same photos: masks at 0.5 cannot see a
# matte gone grey (int8 with 8-bit weights on AVX2 kernels: IoU 0.983 but MAE 0.008, and on a
# composite 20 % of the frame grey where fp32 leaves 7 %). int8 measured 0.002-0.003 elsewhere.
BOUND_MAE = 0.005
# The fp32 graph in fp16 or bf16 on a GPU is the same network, not an approximation of it: it is
# held to the bound issue 20 set for the GPU path, far tighter than int8's.
TORCH_BOUND_MEAN_IOU = 0.995
# The net's commonest views: 4:3 photos, landscape and portrait (engine's Family.input_shape).
SHAPES: tuple[tuple[int, int], ...] = ((1024, 768), (768, 1024))
REFERENCE = "fp32-cpu"
# The X-Type networks' outputs may differ from f32's by this much (relative L2), and the
# classifier's top class must be the same, for a faster precision to be used.
AUX_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Spec:
    """A candidate before it is measured."""

    name: str
    file: pathlib.Path
    kind: str
    provider: str
    precision: str | None

    @property
    def arena(self) -> bool:
        return self.kind == "int8"  # small activations: the arena costs ~15 MB and saves page faults


def candidate_specs(files: dict[str, pathlib.Path], offered: Sequence[str]) -> list[Spec]:
    """Every (file, provider, precision) this runtime offers: the CPU provider everywhere (Arm
    included), OpenVINO's where the installed onnxruntime has it, in f32 and bf16 for the fp32
    graph (bf16 is measured, not assumed: where the CPU lacks it OpenVINO emulates it slowly);
    with a torch variant, PyTorch on a CUDA GPU in fp16 and bf16 where `offered` lists it
    (torch_offered), and on the CPU in fp32 only where asked (a check of the conversion)."""
    specs = [Spec(f"{kind}-cpu", files[kind], kind, providers.CPU, None) for kind in ("fp32", "int8") if kind in files]
    if "torch" in files:
        if providers.TORCH_CUDA in offered:
            specs += [Spec(f"torch-cuda-{p}", files["torch"], "torch", providers.TORCH_CUDA, p) for p in ("fp16", "bf16")]
        if providers.TORCH_CPU in offered:
            specs.append(Spec("torch-cpu-fp32", files["torch"], "torch", providers.TORCH_CPU, "fp32"))
    if providers.OPENVINO in offered:
        if "fp32" in files:
            specs.append(Spec("fp32-openvino", files["fp32"], "fp32", providers.OPENVINO, "f32"))
            specs.append(Spec("fp32-openvino-bf16", files["fp32"], "fp32", providers.OPENVINO, "bf16"))
        if "int8" in files:
            specs.append(Spec("int8-openvino", files["int8"], "int8", providers.OPENVINO, None))
    return specs


def torch_offered(cpu_check: bool = False) -> list[str]:
    """The torch providers usable here: TORCH_CUDA where torch is installed and sees a CUDA GPU;
    TORCH_CPU too with `cpu_check` (the conversion checked against onnxruntime on a CPU)."""
    try:
        import torch
    except ImportError:
        return []
    offered = [providers.TORCH_CUDA] if torch.cuda.is_available() else []
    return offered + ([providers.TORCH_CPU] if cpu_check else [])


def check_inputs(family: Family, photos: Sequence[pathlib.Path],
                 shapes: Sequence[tuple[int, int]] = SHAPES) -> list[tuple[str, np.ndarray]]:
    """Each photo at each shape, as the net's input tensor, labelled "WxH"."""
    inputs = []
    for photo in photos:
        with Image.open(photo) as image:
            rgb = image.convert("RGB")
        for width, height in shapes:
            inputs.append((f"{width}x{height}", family.preprocess(rgb, (width, height))))
    return inputs


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def measure(specs: Sequence[Spec], family: Family, inputs: Sequence[tuple[str, np.ndarray]], *,
            threads: int | None = None, openvino_cache: pathlib.Path | None = None,
            bound: float = BOUND_MEAN_IOU, mae_bound: float = BOUND_MAE, rounds: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> list[Candidate]:
    """Runs every input on every candidate, `rounds` times, interleaved; a candidate whose
    session does not open here is left out (logged). The reference must open."""
    threads = threads or providers.default_threads()
    sessions = {}
    for spec in specs:
        try:
            if spec.provider in providers.TORCH:
                from engine.models import torchnet

                sessions[spec.name] = torchnet.open_session(spec.file, spec.provider, spec.precision)
                continue
            options = providers.session_options(threads, spec.arena)
            chain = providers.provider_list(spec.provider, threads, spec.precision, openvino_cache)
            sessions[spec.name] = providers.inference_session(spec.file, options, chain)
        except Exception as exc:  # noqa: BLE001 - a provider that fails here is not a candidate
            log.warning("candidate %s does not open here: %s", spec.name, exc)
    if REFERENCE not in sessions:
        raise RuntimeError(f"the reference {REFERENCE} did not open")
    runners = {}
    for name, session in sessions.items():
        output, coarse = matte_output(session, family)
        runners[name] = (session, session.get_inputs()[0].name, output, coarse)

    def run(name: str, tensor: np.ndarray) -> tuple[np.ndarray, float]:
        session, input_name, output, coarse = runners[name]
        started = clock()
        (raw,) = session.run([output], {input_name: tensor})
        elapsed = clock() - started
        shape = (tensor.shape[3], tensor.shape[2])
        return family.postprocess(raw, shape if coarse else None), elapsed

    for label in dict.fromkeys(label for label, _ in inputs):  # a runtime's first run of a shape sets it up
        tensor = next(t for lab, t in inputs if lab == label)
        for name in runners:
            run(name, tensor)
    times: dict[str, dict[str, list[float]]] = {name: {} for name in runners}
    mattes: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    for round_ in range(rounds):
        for label, tensor in inputs:
            for name in runners:
                matte, elapsed = run(name, tensor)
                times[name].setdefault(label, []).append(elapsed)
                if round_ == 0:
                    mattes[name].append(matte)
    reference = mattes[REFERENCE]
    measured = []
    for spec in specs:
        if spec.name not in runners:
            continue
        ious = [_iou(m > 0.5, r > 0.5) for m, r in zip(mattes[spec.name], reference)]
        mae = float(np.mean([np.abs(m - r).mean() for m, r in zip(mattes[spec.name], reference)]))
        mean_iou = float(np.mean(ious))
        measured.append(Candidate(
            name=spec.name, file=spec.file, kind=spec.kind, provider=spec.provider, precision=spec.precision,
            arena=spec.arena, size=spec.file.stat().st_size,
            latency_ms={label: round(1000 * statistics.median(values), 1) for label, values in times[spec.name].items()},
            mean_iou=round(mean_iou, 4), min_iou=round(float(min(ious)), 4), mae=round(mae, 5),
            passes=(mean_iou >= (max(bound, TORCH_BOUND_MEAN_IOU) if spec.kind == "torch" else bound)
                    and mae <= mae_bound),
        ))
    return measured


# --- X-Type's two small networks --------------------------------------------------------------


def aux_specs(offered: Sequence[str]) -> list[tuple[str, str | None]]:
    """(provider, precision) pairs to try for a small network; the first is the reference."""
    specs = [(providers.CPU, None)]
    if providers.OPENVINO in offered:
        specs += [(providers.OPENVINO, "f32"), (providers.OPENVINO, "bf16")]
    return specs


def _relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(out.astype(np.float64) - ref)) / norm if norm else float(np.linalg.norm(out))


def choose_aux(file: pathlib.Path, inputs: Sequence[dict[str, np.ndarray]], offered: Sequence[str], *,
               top_class: bool = False, openvino_cache: pathlib.Path | None = None, runs: int = 5,
               clock: Callable[[], float] = time.perf_counter) -> tuple[AuxModel, list[dict]]:
    """The fastest (provider, precision) for one X-Type network on one thread (as the engine runs
    it) whose first output stays within AUX_TOLERANCE of the CPU provider's (and, with
    `top_class`, names the same top class per row), timed interleaved like the segmentation
    candidates. Returns the choice and the rows measured."""
    sessions = {}
    for provider, precision in aux_specs(offered):
        opts = providers.session_options(1)
        try:
            chain = providers.provider_list(provider, 1, precision, openvino_cache)
            sessions[(provider, precision)] = providers.inference_session(file, opts, chain)
        except Exception as exc:  # noqa: BLE001 - not offered here after all
            log.warning("%s on %s/%s does not open: %s", file.name, provider, precision, exc)
    if not sessions:
        raise RuntimeError(f"{file.name}: no provider opened")
    outputs = {spec: [s.run(None, feed)[0] for feed in inputs] for spec, s in sessions.items()}  # and warm-ups
    timings: dict[tuple, list[float]] = {spec: [] for spec in sessions}
    for _ in range(runs):
        for feed in inputs:
            for spec, session in sessions.items():
                started = clock()
                session.run(None, feed)
                timings[spec].append(clock() - started)
    reference = next(iter(outputs.values()))
    rows, best = [], None
    for spec in sessions:
        error = max(_relative_error(o, r) for o, r in zip(outputs[spec], reference))
        same_top = all((o.argmax(axis=-1) == r.argmax(axis=-1)).all() for o, r in zip(outputs[spec], reference))
        ok = error <= AUX_TOLERANCE and (same_top or not top_class)
        latency = statistics.median(timings[spec])
        rows.append({"provider": spec[0], "precision": spec[1], "latency_ms": round(1000 * latency, 2),
                     "error": round(error, 5), "passes": ok})
        if ok and (best is None or latency < best[0]):
            best = (latency, AuxModel(file, *spec))
    return best[1], rows
