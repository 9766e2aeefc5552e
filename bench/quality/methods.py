"""The cut-out methods compared: ours (engine.pipeline.Engine) and rembg over the same model file.

A method turns photo files into `Cutout`s (the alpha it ships, and the colour when asked for).
rembg runs in its own venv (created once under the cache dir) as a subprocess, so its
dependencies (scipy, pymatting, its own pins of numba and onnxruntime) stay out of the project's
venv; its outputs are
cached per (rembg version, model sha256, variant, photo sha256), so reruns cost nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from modelprep.fetch import cache_dir, sha256_file

WORKER = pathlib.Path(__file__).with_name("rembg_worker.py")
REMBG_REQUIREMENT = "rembg[cpu]"  # rembg plus onnxruntime, its CPU path


@dataclass
class Cutout:
    alpha: np.ndarray  # float32 in [0, 1], H x W
    colour: np.ndarray | None  # uint8 H x W x 3 (straight, not premultiplied), if asked for


class Method(Protocol):
    name: str

    def cutouts(self, photos: Sequence[pathlib.Path], colour: bool = False) -> list[Cutout]: ...


def _decode(png: bytes) -> Cutout:
    image = Image.open(io.BytesIO(png))
    image.load()
    if image.mode in ("L", "LA", "I", "I;16"):
        return Cutout(np.asarray(image.convert("L"), dtype=np.float32) / 255.0, None)
    rgba = np.asarray(image.convert("RGBA"))
    return Cutout(rgba[..., 3].astype(np.float32) / 255.0, np.ascontiguousarray(rgba[..., :3]))


class Ours:
    """The project's engine built as the service builds it (its settings' EngineConfig: the same
    model rule as `model_file`, the manifest's variant, and the X-Type classifier),
    asked for the matte as the API ships it (channels=alpha, PNG), or for the RGBA cut-out when
    the colour matters."""

    name = "ours"

    def __init__(self, threads: int | None = None, log=print):
        from engine.pipeline import Engine
        from service.config import Settings

        self.engine = Engine.from_config(Settings.from_environ().engine_config(threads=threads, concurrent_inferences=1))
        self.log = log
        # The engine may run a variant of the checkpoint (int8, cleaned fp32) on some provider:
        # the table says which, since rembg always runs the checkpoint file as shipped.
        segmenter = self.engine.segmenter
        used = getattr(segmenter, "model_path", "?")
        self.describe = f"{used} on {getattr(segmenter, 'provider', 'CPUExecutionProvider')}"

    def cutouts(self, photos: Sequence[pathlib.Path], colour: bool = False) -> list[Cutout]:
        from engine.types import RemovalOptions

        options = RemovalOptions(channels="rgba" if colour else "alpha", output_format="png")
        out = []
        for path in photos:
            started = time.perf_counter()
            out.append(_decode(self.engine.remove(path.read_bytes(), options).data))
            self.log(f"ours {path.name} {time.perf_counter() - started:.1f}s")
        return out


def rembg_venv() -> pathlib.Path:
    return cache_dir() / "bench" / "rembg-venv"


def ensure_rembg_venv(log=print, requirement: str = REMBG_REQUIREMENT) -> pathlib.Path:
    """The venv's python, creating the venv and installing `requirement` the first time.

    One venv serves every benchmark: the speed benchmark asks for `rembg[cpu,cli]` (its HTTP
    server) and gets it installed into the same venv; the stamp lists what was installed.
    """
    venv = rembg_venv()
    python = venv / "bin" / "python"
    stamp = venv / ".clearbg-installed"
    installed = stamp.read_text().split() if python.exists() and stamp.is_file() else []
    if requirement in installed:
        return python
    log(f"installing {requirement} into {venv} (once)")
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", requirement], check=True)
    stamp.write_text("\n".join([*installed, requirement]) + "\n")
    return python


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Rembg:
    """rembg's `dis_custom` session over our model file; variant "default" or "matting"
    (alpha_matting=True with its default thresholds)."""

    def __init__(self, model_path: pathlib.Path, variant: str, log=print):
        self.model_path = model_path
        self.variant = variant
        self.name = "rembg" if variant == "default" else "rembg+matting"
        self.log = log
        self.python = ensure_rembg_venv(log)
        version = subprocess.run(
            [str(self.python), "-c", "import importlib.metadata as m; print(m.version('rembg'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        model_sha = sha256_file(model_path)
        self.cache = cache_dir() / "bench" / "rembg-cutouts" / f"rembg-{version}" / model_sha[:16] / variant

    def cutouts(self, photos: Sequence[pathlib.Path], colour: bool = False) -> list[Cutout]:
        self.cache.mkdir(parents=True, exist_ok=True)
        targets = [self.cache / f"{_sha256(p)[:24]}.png" for p in photos]
        missing = [[str(p), str(t)] for p, t in zip(photos, targets) if not t.is_file()]
        if missing:
            self.log(f"{self.name}: {len(missing)} of {len(photos)} not cached, running rembg")
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)))))
            subprocess.run([str(self.python), str(WORKER), "--model", str(self.model_path), "--variant", self.variant],
                           input=json.dumps(missing), text=True, check=True, env=env)
        return [_decode(t.read_bytes()) for t in targets]
