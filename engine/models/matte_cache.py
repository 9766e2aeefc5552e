"""The net's recent answers, keyed by exactly what it saw.

Callers send the same photo again and again: a preview and then the full size, the same cut-out
as PNG and as JPG on white, a retry without an Idempotency-Key. The net is most of a call's time,
and its matte is a pure function of its input pixels, so a repeat reuses it: the rest of the call
(decode, edges, colour, encode) still runs for the new options, and the result is the one a fresh
run gives, byte for byte.

Keys include a scope (the service passes the account): one account's photo is never a hit for
another, so a call's speed tells nobody what others sent. Repeats that arrive while the first is
still in the net wait for it instead of running it again. Bounded by bytes, least recently used
dropped first; 0 turns it off.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class MatteCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._held: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._running: dict[tuple, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(scope: str, shape: tuple[int, int], pixels: bytes) -> tuple:
        """What identifies a net input: its shape and a digest of its pixels, within `scope`."""
        return scope, shape, hashlib.blake2b(pixels, digest_size=20).digest()

    def get(self, key: tuple, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        """The matte for `key` and whether it was held: a copy of the one held, or `compute()`'s
        (kept for next time, if it fits)."""
        while True:
            with self._lock:
                held = self._held.get(key)
                if held is not None:
                    self._held.move_to_end(key)
                    self.hits += 1
                    return held.copy(), True
                running = self._running.get(key)
                if running is None:
                    running = self._running[key] = threading.Event()
                    self.misses += 1
                    break
            running.wait()  # the same input is in the net now: its answer, not a second run
        try:
            matte = compute()
            self._keep(key, matte)
            return matte, False
        finally:
            with self._lock:
                del self._running[key]
            running.set()  # a failed run wakes the waiters too: they try for themselves

    def _keep(self, key: tuple, matte: np.ndarray) -> None:
        if matte.nbytes > self.max_bytes:
            return
        kept = matte.copy()  # the caller may change its own copy in place
        with self._lock:
            self._held[key] = kept
            self._bytes += kept.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._held.popitem(last=False)
                self._bytes -= dropped.nbytes
