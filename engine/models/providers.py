"""How the engine opens onnxruntime sessions: execution providers, their options and threads.

Which file, provider and precision the segmentation net runs on is not decided here: `make
model` measured the candidates and wrote the manifest (engine/models/manifest.py), and a setting
can force another (CLEARBG_MODEL_VARIANT, CLEARBG_EXECUTION_PROVIDER, read by the service).

Session options that matter for speed on CPU (measured on IS-Net, 1024², bench/speed_network.py):
threads = the cores this process may use (1 thread is ~1.9x slower), ORT_ENABLE_ALL (anything
less loses the NCHWc layout: ~1.5x slower). The arena and memory-pattern planner stay off for
fp32: they keep every run's peak allocation for good (2.1 GB vs 0.9 GB resident) for a few % of
speed. The intra-op threads sleep between parallel sections instead of spinning: runs side by side
(the engine's lanes, several servers on one machine) are then not slowed by threads burning the
cores others wait for, at a few % on a lone run (bench/spinning.py, README "Speed").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pathlib

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
# The segmentation net on PyTorch (engine/models/torchnet.py): on a CUDA GPU, and on the CPU for
# checking the conversion only. Named here so that choosing one imports no torch.
TORCH_CUDA = "TorchCUDA"
TORCH_CPU = "TorchCPU"
TORCH = (TORCH_CUDA, TORCH_CPU)
_ALIASES = {"cpu": CPU, "openvino": OPENVINO, "ov": OPENVINO, "cuda": TORCH_CUDA, "gpu": TORCH_CUDA}


class ProviderError(RuntimeError):
    pass


def default_threads() -> int:
    """The cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def provider_name(requested: str) -> str:
    """onnxruntime's name for a provider setting (`cpu`, `openvino` or the full name)."""
    return _ALIASES.get(requested.strip().lower(), requested.strip())


def offered() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def session_options(threads: int | None = None, arena: bool = False, spin: bool = False):
    """The SessionOptions every session should use (see the module docstring).

    `arena`: keep ORT's CPU arena. Without it each run maps ~400 MB of fresh pages (~100k page
    faults, a third of an int8 run's time: 0.38 s vs 0.24 s at 1024², 2 threads); with it the
    int8 session's peak RSS grew by only ~15 MB (463 vs 449 MB), where fp32's doubles.
    `spin`: ORT's default, for bench/spinning.py to compare against.
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
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


def provider_list(provider: str, threads: int | None = None, precision: str | None = None,
                  cache_dir: pathlib.Path | None = None) -> list:
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
    if cache_dir is not None:  # where OpenVINO keeps the networks it compiled: seconds saved a start
        pathlib.Path(cache_dir).mkdir(parents=True, exist_ok=True)
        options["cache_dir"] = str(cache_dir)
    return [(OPENVINO, options), CPU]


@contextlib.contextmanager
def _openvino_cache_lock(cache_dir: str | None):
    """Held while a session on OpenVINO's provider is created: it compiles into, or imports
    from, the shared cache directory, and two processes starting together (two servers on one
    machine) otherwise race there; one deleted the blob the other was still writing, and that
    server died at start ("cannot set permissions: No such file")."""
    if cache_dir is None:
        yield
        return
    with open(pathlib.Path(cache_dir) / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def inference_session(path: str | os.PathLike, options, provider_options: list):
    """onnxruntime.InferenceSession(path, options, providers=provider_options), under the
    OpenVINO cache's lock when OpenVINO is asked for: the one way the engine makes sessions."""
    import onnxruntime as ort

    cache = next((p[1].get("cache_dir") for p in provider_options if isinstance(p, tuple) and p[0] == OPENVINO), None)
    with _openvino_cache_lock(cache):
        return ort.InferenceSession(str(path), sess_options=options, providers=provider_options)
