"""What the engine is told by whoever builds it (the service's settings): which model, how to run
it, where the prepared files are. The engine itself reads no environment variables."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

DEFAULT_CHECKPOINT = "isnet-imgly-medium"


@dataclass(frozen=True)
class EngineConfig:
    cache_dir: pathlib.Path  # where `make model` left the prepared files and their manifest
    checkpoint: str = DEFAULT_CHECKPOINT  # a catalog checkpoint (modelprep/catalog.py)
    model_path: pathlib.Path | None = None  # or any prepared ONNX file instead
    variant: str = "auto"  # auto (the manifest's choice), fp32, int8, or a candidate's name
    provider: str | None = None  # force an execution provider ("cpu", "openvino", ...)
    threads: int | None = None  # None: every core this process may use
    concurrent_inferences: int = 1
    # A batching backend (a GPU): requests' inputs of one shape run together, up to this many,
    # the first waiting at most this long for others (engine/models/batching.py).
    batch_max: int = 32
    batch_wait_ms: float = 5.0
    # The net's recent answers kept for repeats of the same photo (engine/models/matte_cache.py);
    # 0: off, every call runs the net (as benchmarks of the net must).
    matte_cache_mb: int = 0
    xtype: bool = True  # X-Type from the detector + classifier (else the engine's fallback)
    # Each view's matte averaged with the net's answer for its mirror image (Segmenter.mirror):
    # chosen on the tuned half (bench/quality/tune.py); off halves the net's time.
    mirror: bool = True
    # ... and further looks at each view, (scale, shift against the net's grid), averaged in where
    # the first answer is unsure (Segmenter.looks). () none: tune --looks-only's choice on the
    # tuned half did not hold out (README, Quality).
    looks: tuple[tuple[float, int], ...] = ()
