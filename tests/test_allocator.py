"""reuse_freed_memory: freed large blocks are kept and reused instead of page-faulting again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rvqgan.allocator import reuse_freed_memory

# A child process allocates and frees a 64 MiB tensor a few times, then counts the minor page
# faults of three more: with reuse they land on warm pages (few faults), without it malloc maps
# fresh zero pages each time (one fault per 4 KiB page, 16384 per tensor).
_CHILD = """
import resource, sys, torch
from rvqgan.allocator import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
for _ in range(4):  # 64 MiB, freed at once; a few times, so the heap reaches its working size
    torch.ones(16 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    torch.ones(16 * 2**20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_memory_is_reused_without_page_faults():
    default, reused = _faults("default"), _faults("reuse")
    assert default > 3 * 8000, default  # each page of the second block faults again
    assert reused < default / 10, (reused, default)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_reuse_is_idempotent():
    assert reuse_freed_memory() and reuse_freed_memory()
