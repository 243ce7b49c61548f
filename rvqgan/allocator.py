"""Keep freed memory for reuse, so that large activations do not page-fault on every call.

glibc's malloc serves large requests (above a threshold that grows to at most 32 MiB) with
fresh `mmap`s and returns them to the system on `free`. A codec's activations are large (the
44.1 kHz model's first layers hold 64 × 441 000 floats, 113 MB, for 10 s of audio), so every
layer of every call paid for zero-filled pages from the kernel: on a 2-core machine, the
44.1 kHz model coded 10 s in 1.82 s with malloc as it is and in 0.92 s after
`reuse_freed_memory()` (`benchmarks/speed.py` with and without `--no-reuse-memory`).

After the call, malloc serves large requests from its heap and never trims it, so later calls
reuse warm pages. The cost: the process keeps what it has used until it exits (its resident
memory can exceed its peak use a little, where large blocks do not fit the holes that freed ones
left). The `rvqgan` command makes this call in its own process (`cli.run`); a library caller
decides for its own process. It acts on allocations made by the main thread's malloc arena
only: glibc's per-thread arenas ignore it, so a service that codes on worker threads keeps
paying the page faults.
"""

from __future__ import annotations

import ctypes
import sys

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed memory (process-wide, permanent, idempotent).

    Returns True when the setting took effect, False where the C library has no `mallopt`
    (macOS, Windows, musl), which is then left unchanged. Under a preloaded allocator (jemalloc,
    tcmalloc) glibc's setting is accepted but has no effect.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # No mmap for large blocks, and no trimming of the heap's top (-1 disables it): both keep
    # freed pages mapped.
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _applied
