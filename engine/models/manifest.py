"""The model manifest: what `make model` prepared and measured on this machine, read at start.

`python -m modelprep` (the build step) writes one JSON manifest per model and machine: every
candidate it could run here (a prepared file on an execution provider at a precision), how fast
each ran on the net's commonest shapes, how closely its masks agree with the fp32 reference, and
the candidate it chose: the fastest that keeps within the agreement bound. The runtime engine
only reads it: it never converts, rewrites nor times a model, and imports no `onnx`.

A manifest is keyed by the model and by this machine (CPU model, instruction-set flags, cores,
the inference runtime's version: `machine_key`), so a cache moved to another machine is measured
again there instead of trusted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

FORMAT = 2  # 2: X-Type rows measured (xtype_measured)
# Flags that change how fast a network runs (SIMD width, 8-bit and bf16 dot products, matrix
# units); the rest of /proc/cpuinfo's list does not, and would make the key needlessly fragile.
_SPEED_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile",
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16", "sme",
)
AUTO = "auto"
VARIANT_KINDS = ("fp32", "int8", "torch")


class ManifestError(RuntimeError):
    """No usable manifest: the message says which command prepares one."""


def _cpuinfo() -> str:
    try:
        return pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def machine_identity(cpuinfo: str | None = None, cores: int | None = None, runtime: str = "") -> dict:
    """What a measurement depends on: the CPU (model name and its speed-relevant flags), the
    cores this process may use and the inference runtime's version."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    model, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("model name", "cpu model", "hardware") and value.strip():
            model = value.strip()
        elif name in ("flags", "features"):
            flags.update(value.split())
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0)) or 1
        except AttributeError:
            cores = os.cpu_count() or 1
    identity = {
        "machine": platform.machine(),
        "cpu": model,
        "flags": sorted(flags.intersection(_SPEED_FLAGS)),
        "cores": cores,
        "runtime": runtime,
    }
    gpus = gpu_names()
    if gpus:  # only where there is one: a CPU machine's key stays what it was
        identity["gpus"], identity["torch"] = gpus, _installed_version("torch")
    return identity


def gpu_names() -> list[str]:
    """The NVIDIA GPUs the driver lists, read without importing a GPU runtime: the serving path
    loads torch only once the manifest picks a torch candidate."""
    names = []
    for info in sorted(pathlib.Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    names.append(line.partition(":")[2].strip())
        except OSError:
            continue
    if names or not shutil.which("nvidia-smi"):
        return names
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_key(identity: dict) -> str:
    """The CPU, its flags and the runtime; not the core count, which is recorded but may differ
    between a server and its measurement (a container's CPU set) without another choice."""
    blob = json.dumps({k: v for k, v in identity.items() if k != "cores"}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def onnxruntime_version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})"


def model_id(checkpoint: str | None, model_path: str | os.PathLike | None) -> str:
    """The manifest's name for a model: the catalog checkpoint's name, or for a file given by
    path a name derived from its absolute path (its size and time are checked on load)."""
    if model_path:
        resolved = str(pathlib.Path(model_path).expanduser().resolve())
        return "file-" + hashlib.sha256(resolved.encode()).hexdigest()[:16]
    if not checkpoint:
        raise ManifestError("no model named: set a checkpoint or a model file")
    return checkpoint


def manifests_dir(cache_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(cache_dir) / "manifests"


def manifest_path(cache_dir: pathlib.Path, model: str, key: str) -> pathlib.Path:
    """Named by the format too: checkouts of different versions sharing one cache (a machine's
    CI and its developers' branches) each keep their own instead of rewriting each other's."""
    return manifests_dir(cache_dir) / f"{model}.{key}.f{FORMAT}.json"


@dataclass(frozen=True)
class Candidate:
    """One way to run the segmentation net here, with what was measured of it."""

    name: str  # e.g. "int8-openvino", "fp32-openvino-bf16", "fp32-cpu", "torch-cuda-fp16"
    file: pathlib.Path
    kind: str  # the prepared file: "fp32", "int8" or "torch" (the fp32 graph for torchnet)
    provider: str  # onnxruntime's provider name, or providers.TORCH_CUDA / TORCH_CPU
    precision: str | None  # OpenVINO's inference precision hint or torch's dtype (fp16, bf16), None for the model's own
    arena: bool  # keep onnxruntime's CPU arena (small activations: int8)
    size: int
    latency_ms: dict[str, float]  # "WxH" -> median milliseconds on every core
    mean_iou: float  # masks (> 0.5) against the fp32 reference, mean over the check photos
    min_iou: float
    mae: float  # mean |matte - reference matte|
    passes: bool  # within the manifest's agreement bound

    @property
    def mean_latency_ms(self) -> float:
        values = list(self.latency_ms.values())
        return sum(values) / len(values) if values else float("inf")

    def to_json(self) -> dict:
        return {**self.__dict__, "file": str(self.file)}

    @classmethod
    def from_json(cls, data: dict) -> "Candidate":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**{**known, "file": pathlib.Path(data["file"]), "latency_ms": dict(data["latency_ms"])})


@dataclass(frozen=True)
class AuxModel:
    """One of X-Type's networks: its file and how to run it (chosen by measurement too)."""

    file: pathlib.Path
    provider: str
    precision: str | None = None

    def to_json(self) -> dict:
        return {"file": str(self.file), "provider": self.provider, "precision": self.precision}

    @classmethod
    def from_json(cls, data: dict) -> "AuxModel":
        return cls(pathlib.Path(data["file"]), data["provider"], data.get("precision"))


@dataclass(frozen=True)
class Manifest:
    model: str
    family: str
    source: dict  # path, sha256, size, mtime of the file the variants were made from
    machine: dict
    bound: dict  # {"mean_iou": 0.97, "mae": 0.005, "photos": 4}: what "passes" means
    candidates: tuple[Candidate, ...]
    chosen: str
    xtype: dict[str, AuxModel] = field(default_factory=dict)
    xtype_measured: dict[str, list] = field(default_factory=dict)  # per network: the rows timed
    openvino_cache: pathlib.Path | None = None
    measured_at: str = ""
    path: pathlib.Path | None = None  # where it was read from

    def candidate(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise ManifestError(f"no candidate {name!r} in {self.path}; known: {', '.join(c.name for c in self.candidates)}")

    def preference(self, variant: str = AUTO, provider: str | None = None) -> list[Candidate]:
        """The candidates to try, best first: the chosen one (or, with `variant` fp32/int8 or a
        candidate's name, and/or a `provider`, the fastest that matches), then the others that
        match by speed, passing ones before failing ones. A forced variant is honoured even
        where it failed the agreement bound: the operator asked for it."""
        variant = (variant or AUTO).strip().lower()
        names = {c.name for c in self.candidates}
        if variant not in (AUTO, *VARIANT_KINDS) and variant not in names:
            raise ManifestError(
                f"model variant {variant!r}: expected {AUTO}, {', '.join(VARIANT_KINDS)} or one of {', '.join(sorted(names))}"
            )

        def matches(c: Candidate) -> bool:
            if variant in VARIANT_KINDS and c.kind != variant:
                return False
            if variant in names and c.name != variant:
                return False
            return provider is None or c.provider == provider

        found = [c for c in self.candidates if matches(c)]
        if not found:
            raise ManifestError(f"no candidate for variant={variant} provider={provider} in {self.path}")
        ranked = sorted(found, key=lambda c: (not (c.passes or variant != AUTO), c.mean_latency_ms))
        if variant == AUTO and provider is None:
            ranked.sort(key=lambda c: c.name != self.chosen)  # stable: the chosen one first
        return ranked

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "model": self.model,
            "family": self.family,
            "source": self.source,
            "machine": self.machine,
            "machine_key": machine_key(self.machine),
            "measured_at": self.measured_at,
            "bound": self.bound,
            "chosen": self.chosen,
            "candidates": [c.to_json() for c in self.candidates],
            "xtype": {k: v.to_json() for k, v in self.xtype.items()},
            "xtype_measured": self.xtype_measured,
            "openvino_cache": str(self.openvino_cache) if self.openvino_cache else None,
        }

    @classmethod
    def from_json(cls, data: dict, path: pathlib.Path | None = None) -> "Manifest":
        if data.get("format") != FORMAT:
            raise ManifestError(f"{path}: manifest format {data.get('format')!r}, expected {FORMAT}")
        return cls(
            model=data["model"],
            family=data["family"],
            source=dict(data["source"]),
            machine=dict(data["machine"]),
            bound=dict(data["bound"]),
            candidates=tuple(Candidate.from_json(c) for c in data["candidates"]),
            chosen=data["chosen"],
            xtype={k: AuxModel.from_json(v) for k, v in data.get("xtype", {}).items()},
            xtype_measured=dict(data.get("xtype_measured", {})),
            openvino_cache=pathlib.Path(data["openvino_cache"]) if data.get("openvino_cache") else None,
            measured_at=data.get("measured_at", ""),
            path=path,
        )

    def write(self, target: pathlib.Path) -> pathlib.Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".json.part")
        part.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(part, target)
        return target


def read(path: pathlib.Path) -> Manifest:
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read the model manifest {path}: {exc}") from None
    return Manifest.from_json(data, pathlib.Path(path))


PREPARE_HINT = "run `make model` (python -m modelprep) to prepare and measure the model on this machine"


def load(cache_dir: pathlib.Path, model: str, identity: dict | None = None,
         model_path: str | os.PathLike | None = None) -> Manifest:
    """This machine's manifest for `model`; its files must still be there, and a model given by
    path must still be the file that was measured (same size and modification time)."""
    identity = identity or machine_identity(runtime=onnxruntime_version())
    path = manifest_path(cache_dir, model, machine_key(identity))
    if not path.is_file():
        others = sorted(manifests_dir(cache_dir).glob(f"{model}.*.f{FORMAT}.json")) if manifests_dir(cache_dir).is_dir() else []
        where = f" (the cache holds {len(others)} measured on other machines)" if others else ""
        raise ManifestError(f"no model manifest for {model} on this machine at {path}{where}: {PREPARE_HINT}")
    manifest = read(path)
    if model_path is not None:
        stat = pathlib.Path(model_path).stat()
        if (stat.st_size, int(stat.st_mtime)) != (manifest.source.get("size"), manifest.source.get("mtime")):
            raise ManifestError(f"{model_path} changed since it was prepared: {PREPARE_HINT}")
    missing = [str(c.file) for c in manifest.candidates if not c.file.is_file()]
    missing += [str(m.file) for m in manifest.xtype.values() if not m.file.is_file()]
    if missing:
        raise ManifestError(f"{path} names files that are gone ({', '.join(missing[:3])}): {PREPARE_HINT}")
    return manifest


def first_passing(candidates: Sequence[Candidate]) -> Candidate | None:
    """The fastest candidate within the bound (the choice `make model` records)."""
    passing = [c for c in candidates if c.passes]
    return min(passing, key=lambda c: c.mean_latency_ms) if passing else None
