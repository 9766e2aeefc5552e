"""glibc malloc settings for a process that works on large images (the server, bench/engine_steps.py).

Every request allocates and frees buffers of 2-50 MB (the colour, its alpha, working grids,
their temporaries). By default glibc hands each one fresh pages from the kernel (mmap above a
threshold that only creeps up to 32 MB, and heap tops given back on free), so each is zeroed
and faulted in page by page again: at 12 MP the foreground step spent 37 ms where it computes
for 10, and the whole edge work about half its time in page faults. Kept in the process, freed
buffers are reused at once; the resident size then holds at the busiest moment's, which is what
the peak was anyway. Two arenas (not one per thread that allocates) keep that peak down: ~0.8 GB
less under load.

`tune()` must run before the threads that allocate start; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def tune(arenas: int = 2, mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Applies the settings (mallopt); True when glibc took all of them."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False  # not glibc (musl, macOS): its allocator, its defaults
    settings = ((_M_ARENA_MAX, arenas), (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold))
    applied = all(libc.mallopt(option, value) == 1 for option, value in settings)
    if not applied:
        log.warning("glibc refused some malloc settings; large images will cost more page faults")
    return applied
