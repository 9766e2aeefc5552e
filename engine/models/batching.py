"""Dynamic batching: concurrent requests' net inputs run as one batch on an accelerator.

A GPU runs IS-Net at 1024x768 about 11x faster per photo in batches of 32 than one at a time
(fp16; the issue's figures), so requests that arrive together are grouped: the first input of a
shape opens a batch, which runs when it holds `max_batch` inputs or `max_wait_s` after it opened,
whichever comes first. A lone request therefore waits at most `max_wait_s` more. Inputs of
different shapes never share a batch (the net's input is one tensor); each shape has its own.

One worker thread feeds the backend, one batch at a time, so a batch that fills while the
previous one runs goes next without waiting out its window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

RunBatch = Callable[[np.ndarray], np.ndarray]  # N x C x H x W -> N x ... (one row per input)


def bucket(count: int) -> int:
    """The batch size a backend pads `count` inputs to: the next power of two, so it sees a
    few sizes, each set up once (cuDNN plans per input shape), instead of every size."""
    return 1 << max(0, count - 1).bit_length()


class _Open:
    __slots__ = ("shape", "opened", "inputs", "futures")

    def __init__(self, shape: tuple, opened: float):
        self.shape, self.opened = shape, opened
        self.inputs: list[np.ndarray] = []
        self.futures: list[Future] = []


class Batcher:
    """`submit(x)` (x: 1 x C x H x W) -> a Future of the backend's row for x (1 x ...)."""

    def __init__(self, run_batch: RunBatch, max_batch: int = 32, max_wait_s: float = 0.005,
                 clock: Callable[[], float] = time.monotonic):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self._run, self.max_batch, self.max_wait_s, self._clock = run_batch, max_batch, max_wait_s, clock
        self._open: dict[tuple, _Open] = {}  # per input shape, oldest first (dicts keep order)
        self._cond = threading.Condition()
        self._closed = False
        self.batches: list[int] = []  # sizes of the batches run, for benchmarks and tests
        self._worker = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._worker.start()

    def submit(self, tensor: np.ndarray) -> Future:
        if tensor.ndim < 1 or tensor.shape[0] != 1:
            raise ValueError(f"one input at a time (1 x ...), got {tensor.shape}")
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            batch = self._open.get(tensor.shape)
            if batch is None:
                batch = self._open[tensor.shape] = _Open(tensor.shape, self._clock())
            batch.inputs.append(tensor)
            batch.futures.append(future)
            self._cond.notify()
        return future

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """submit(tensor).result(): blocks until its batch has run."""
        return self.submit(tensor).result()

    def close(self) -> None:
        """Runs what is queued, then stops the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._worker.join()

    def _next(self) -> _Open | None:
        """The batch to run now (full, or its window over, or closing), else None."""
        now = self._clock()
        for shape, batch in self._open.items():
            if len(batch.inputs) >= self.max_batch or now - batch.opened >= self.max_wait_s or self._closed:
                if len(batch.inputs) > self.max_batch:  # the rest stays open, keeping its age
                    taken = _Open(shape, batch.opened)
                    taken.inputs, batch.inputs = batch.inputs[:self.max_batch], batch.inputs[self.max_batch:]
                    taken.futures, batch.futures = batch.futures[:self.max_batch], batch.futures[self.max_batch:]
                    return taken
                del self._open[shape]
                return batch
        return None

    def _wait_s(self) -> float | None:
        if not self._open:
            return None
        oldest = min(b.opened for b in self._open.values())
        return max(0.0, oldest + self.max_wait_s - self._clock())

    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._next()
                while batch is None:
                    if self._closed and not self._open:
                        return
                    self._cond.wait(self._wait_s())
                    batch = self._next()
            self.batches.append(len(batch.inputs))
            try:
                out = self._run(np.concatenate(batch.inputs, axis=0))
                if len(out) != len(batch.inputs):
                    raise RuntimeError(f"the backend answered {len(out)} rows for {len(batch.inputs)} inputs")
            except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error
                for future in batch.futures:
                    future.set_exception(exc)
                continue
            for i, future in enumerate(batch.futures):
                future.set_result(out[i:i + 1])
