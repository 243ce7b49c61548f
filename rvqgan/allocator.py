"""Keep freed memory for reuse, so that large activations do not page-fault on every call.

glibc's malloc serves large requests (above a threshold that grows to at most 32 MiB) with
fresh `mmap`s and returns them to the system on `free`. A codec's activations are large (the
44.1 kHz model's first layers hold 64 × 441 000 floats, 113 MB, for 10 s of audio), so every
layer of every call used to pay for zero-filled pages from the kernel: about a third of the CPU
inference time (`benchmarks/speed.py --no-reuse-memory` against the default). After
`reuse_freed_memory()` malloc serves every request from its heap and keeps what is freed, so
later calls reuse warm pages. The process keeps its peak memory until it exits, which is what
a command-line run or a coding service wants; a library caller decides for its own process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed memory (process-wide, idempotent).

    Returns True when the setting took effect, False where the C library is not glibc (macOS,
    musl, Windows), which is then left unchanged.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # No mmap for large blocks, and never trim the heap's top: both keep freed pages mapped.
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
