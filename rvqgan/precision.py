"""Which number format inference and training run in: what the processor offers, and the `auto` policy.

bf16 halves the bytes moved and, on CPUs with native bf16 instructions (x86 AVX512-BF16 or AMX,
Arm's BF16 extension) or a GPU, multiplies about 2–3× faster than fp32. Elsewhere torch emulates it
and it is slower than fp32, so `auto` picks it only where it is native. `RVQGAN_NATIVE_BF16=0` (or
`1`) overrides the detection, for tests and for machines whose flags mislead.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

import torch

INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_ENV = "RVQGAN_NATIVE_BF16"
# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: x86 AVX512-BF16 and AMX, Arm BF16.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# What `auto` runs in where bf16 is native, per direction, decided on valid/ with the default model
# (README, "bf16"; benchmarks/results_bf16_accuracy.jsonl). Encoding in bf16 changes 7.5 % of the codes,
# so codes would depend on the CPU that made them: encode stays fp32. Decoding in bf16 with the
# output-rate tail in fp32 (`Decoder.to_bf16`) moves no metric by more than 0.005.
# Training stays fp32: a bf16-autocast step is about 1.45× faster on an AMX CPU, and at equal steps
# from the same weights its selection mel was within the run-to-run spread, but its SI-SDR was lower
# in all three data orders (README, "Training in bf16"); `precision: bf16` remains for the speed.
AUTO_WHERE_NATIVE = {"encode": "fp32", "decode": "bf16", "train": "fp32"}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (`flags` on x86, `Features` on Arm); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_capability() -> str:
    """The widest vector instruction set torch's CPU kernels use here ("AVX512", "AVX2", "DEFAULT", ...)."""
    return str(torch.backends.cpu.get_cpu_capability())


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 arithmetic is native on `device`: a bf16-capable GPU, or a CPU with one of
    `BF16_FLAGS` (`RVQGAN_NATIVE_BF16` = 0 or 1 overrides it)."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{NATIVE_BF16_ENV} must be 0 or 1, not {forced[:20]!r}")
    device = torch.device(device)
    if device.type == "cuda":
        # is_bf16_supported() also counts emulation (pre-Ampere GPUs): native bf16 starts at compute capability 8
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    return bool(cpu_flags() & BF16_FLAGS)


def resolve(precision: str, direction: str, device: torch.device | str = "cpu") -> str:
    """The precision ("fp32" or "bf16") that `precision` ("fp32", "bf16" or "auto") means for
    `direction` ("encode", "decode" or "train") on `device`."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if direction not in AUTO_WHERE_NATIVE:
        raise ValueError(f"direction must be 'encode', 'decode' or 'train', got {direction!r}")
    if precision != "auto":
        return precision
    return AUTO_WHERE_NATIVE[direction] if native_bf16(device) else "fp32"


def describe(device: torch.device | str = "cpu") -> dict[str, object]:
    """What the machine offers, for `rvqgan info` and every benchmark's results."""
    return {
        "cpu": _cpu_name(),
        "capability": cpu_capability(),
        "native_bf16": native_bf16(device),
        "bf16_flags": sorted(cpu_flags() & BF16_FLAGS),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "auto": {d: resolve("auto", d, device) for d in AUTO_WHERE_NATIVE},
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
