"""reuse_freed_memory: freed large blocks are kept and reused instead of page-faulting again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A child process allocates and frees a 64 MiB tensor a few times, then counts the minor page
# faults of three more. Without the setting malloc maps fresh zero pages for each (one fault per
# page); with it they land on pages already mapped (few faults). The child turns transparent huge
# pages off for itself (prctl PR_SET_THP_DISABLE), so that a fault is one page of the system's size,
# and runs without preloaded allocators or malloc tunables.
_CHILD = """
import ctypes, mmap, resource, sys, torch
from rvqgan.allocator import reuse_freed_memory
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
if sys.argv[1] == "reuse" and not reuse_freed_memory():
    print("unsupported")
    sys.exit()
for _ in range(8):  # until the heap has grown to its working size (a few blocks)
    torch.ones(16 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    torch.ones(16 * 2**20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_BLOCK = 64 * 2**20


def _faults(mode: str) -> int | None:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, env=env)
    last = out.stdout.strip().splitlines()[-1]
    return None if last == "unsupported" else int(last)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_memory_is_reused_without_page_faults():
    reused = _faults("reuse")
    if reused is None:
        pytest.skip("this C library has no mallopt (not glibc)")
    default = _faults("default")
    pages = 3 * _BLOCK // os.sysconf("SC_PAGE_SIZE")  # what three fresh blocks fault
    assert default is not None and default > pages // 2, (default, pages)
    assert reused < default / 10, (reused, default)
