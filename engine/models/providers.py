"""Which onnxruntime execution provider and model variant a session uses, and its options.

Chosen once at start from what the machine offers. Settings force either choice:
- CLEARBG_EXECUTION_PROVIDER: `cpu`, `openvino` (or the full ORT name, e.g.
  `OpenVINOExecutionProvider`); unset picks OpenVINO when the installed onnxruntime offers it
  (the `onnxruntime-openvino` distribution replaces `onnxruntime`: the two cannot share a venv).
- CLEARBG_MODEL_VARIANT: `fp32`, `int8` or `auto` (default: the variant `make model` prepared).

Session options that matter for speed on CPU (measured on IS-Net, 1024², bench/speed_network.py):
threads = the cores this process may use (1 thread is ~1.9x slower), ORT_ENABLE_ALL (anything
less loses the NCHWc layout: ~1.5x slower). The arena and memory-pattern planner stay off: they
keep every run's peak allocation for good (2.1 GB vs 0.9 GB resident) for a few % of speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pathlib

from engine.models import variants

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
_ALIASES = {"cpu": CPU, "openvino": OPENVINO, "ov": OPENVINO}


class ProviderError(RuntimeError):
    pass


def default_threads() -> int:
    """The cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_provider(requested: str | None = None) -> str:
    """The provider to use: `requested`, else CLEARBG_EXECUTION_PROVIDER, else the best offered."""
    import onnxruntime as ort

    offered = ort.get_available_providers()
    wanted = requested or os.environ.get("CLEARBG_EXECUTION_PROVIDER", "").strip()
    if wanted:
        name = _ALIASES.get(wanted.lower(), wanted)
        if name not in offered:
            raise ProviderError(f"execution provider {wanted!r} is not available here; offered: {', '.join(offered)}")
        return name
    return OPENVINO if OPENVINO in offered else CPU


def session_options(threads: int | None = None, arena: bool = False):
    """The SessionOptions every segmentation session should use (see the module docstring).

    `arena`: keep ORT's CPU arena. Without it each run maps ~400 MB of fresh pages (~100k page
    faults, a third of an int8 run's time: 0.38 s vs 0.24 s at 1024², 2 threads); with it the
    int8 session's peak RSS grew by only ~15 MB (463 vs 449 MB), where fp32's doubles.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    return options


def wants_arena(variant_path: str | os.PathLike) -> bool:
    """The int8 variant keeps ORT's CPU arena: its activations are small (see session_options)."""
    return pathlib.Path(variant_path).name.startswith("int8")


def provider_list(provider: str, threads: int | None = None, precision: str | None = None) -> list:
    """ORT's `providers=` argument for `provider`, CPU always last as the fallback for odd nodes.

    `precision` (OpenVINO only): None keeps the model's own precision, "bf16" lets OpenVINO run
    an fp32 model in bfloat16 where the CPU has it (masks matched fp32 at IoU 0.999).
    """
    if provider != OPENVINO:
        return [provider] if provider == CPU else [provider, CPU]
    options = {"device_type": "CPU", "num_of_threads": str(threads or default_threads())}
    # OpenVINO pins a compiled model's threads to cores, and every one-thread model to the same
    # first core: two one-thread inferences side by side then shared one core (178 images a
    # minute at 1 MP in process, against 320 unpinned), and the X-Type networks sat on the core
    # the segmentation net's first thread had. The OS places threads better here.
    config = {"ENABLE_CPU_PINNING": "NO"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    options["load_config"] = json.dumps({"CPU": config})
    options["cache_dir"] = str(_openvino_cache())
    return [(OPENVINO, options), CPU]


def _openvino_cache() -> pathlib.Path:
    """Where OpenVINO keeps the networks it compiled (seconds saved at every start)."""
    cache = variants.variants_dir() / "openvino"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@contextlib.contextmanager
def _openvino_cache_lock():
    """Held while a session on OpenVINO's provider is created: it compiles into, or imports
    from, the shared cache directory, and two processes starting together (two servers on one
    machine) otherwise race there; one deleted the blob the other was still writing, and that
    server died at start ("cannot set permissions: No such file")."""
    with open(_openvino_cache() / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def inference_session(path: str | os.PathLike, options, provider_options: list):
    """onnxruntime.InferenceSession(path, options, providers=provider_options), under the
    OpenVINO cache's lock when OpenVINO is asked for: the one way the engine makes sessions."""
    import onnxruntime as ort

    wants_openvino = any((p[0] if isinstance(p, tuple) else p) == OPENVINO for p in provider_options)
    with _openvino_cache_lock() if wants_openvino else contextlib.nullcontext():
        return ort.InferenceSession(str(path), sess_options=options, providers=provider_options)


def variant_kind(requested: str | None = None) -> str:
    """`fp32`, `int8` or `auto`, from `requested` or CLEARBG_MODEL_VARIANT."""
    kind = (requested or os.environ.get("CLEARBG_MODEL_VARIANT") or "auto").strip().lower()
    if kind not in ("auto", *variants.KINDS):
        raise ProviderError(f"CLEARBG_MODEL_VARIANT={kind!r}: expected auto, {', '.join(variants.KINDS)}")
    return kind


def model_variant(model_path: str | os.PathLike, family: str = "isnet", kind: str | None = None) -> pathlib.Path:
    """The variant file a session should load.

    `auto` takes the fastest variant already prepared (`make model` prepares it) and otherwise
    the cleaned fp32 graph, which takes seconds to make: calibrating int8 (a minute or more) is
    never started behind a server's back. An explicit `int8` or `fp32` is made if missing.
    """
    kind = variant_kind(kind)
    if kind != "auto":
        return variants.prepare(model_path, family, kind)
    source_sha = variants.sha256_file(pathlib.Path(model_path))
    best = variants.default_kind()
    hit = variants.cached(source_sha, best)
    return hit or variants.prepare(model_path, family, "fp32")


def cpu_has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where OpenVINO's bf16
    runs at about twice its f32 speed."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclasses.dataclass(frozen=True)
class SessionChoice:
    session: object  # onnxruntime.InferenceSession
    model_path: pathlib.Path
    provider: str
    precision: str | None = None

    def another(self, threads: int) -> object:
        """A second session on the same variant, provider and precision, with its own threads."""
        options = session_options(threads, wants_arena(self.model_path))
        return inference_session(self.model_path, options, provider_list(self.provider, threads, self.precision))


def open_session(model_path: str | os.PathLike, family: str = "isnet", threads: int | None = None,
                 provider: str | None = None, kind: str | None = None) -> SessionChoice:
    """An InferenceSession on the chosen variant and provider, falling back to CPU and the
    cleaned fp32 graph if the faster pair cannot start (a broken OpenVINO install, say)."""
    name = choose_provider(provider)
    path = model_variant(model_path, family, kind)
    precision = None
    if name == OPENVINO and path.name.startswith("fp32") and cpu_has_bf16():
        precision = "bf16"  # OpenVINO's bf16 matched fp32 (IoU 0.999) at ~2x its speed
    try:
        session = inference_session(path, session_options(threads, wants_arena(path)), provider_list(name, threads, precision))
        used = session.get_providers()[0]
        return SessionChoice(session, path, used, precision if used == OPENVINO else None)
    except Exception as exc:  # noqa: BLE001 - any provider failure: fall back, say why in the log
        if name == CPU and path == variants.prepare(model_path, family, "fp32"):
            raise
        log.warning("session on %s with %s failed (%s); falling back to CPU fp32", name, path.name, exc)
    fallback = variants.prepare(model_path, family, "fp32")
    session = inference_session(fallback, session_options(threads), [CPU])
    return SessionChoice(session, fallback, CPU)
