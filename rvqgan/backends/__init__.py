"""Inference backends: what runs a folded model's encoder and decoder, chosen by name.

Only the encoder and decoder change; the quantiser, the chunk context, the file pipeline, the
streaming coders and `tokenize` are the same code for every backend, and the weights id stays
the model's, so files written with one backend decode with any other. A backend is put in place
in one place (`with_backend`, which `load_model(..., backend=...)` and the CLI's `--backend`
call). Each backend is one module with one `Backend` (`base.py`); `REGISTERED` lists them, and
the CLI's choices and help are built from it.
"""

from __future__ import annotations

import torch

from ..model import Codec
from . import compiled, eager, ort
from .base import Backend, BackendError

REGISTERED: tuple[Backend, ...] = (eager.BACKEND, compiled.BACKEND, ort.BACKEND)
BACKENDS: dict[str, Backend] = {b.name: b for b in REGISTERED}


def check_backend(backend: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
    """Raise ValueError unless `backend` names one of `BACKENDS`, and BackendError where it cannot
    run a model on `device` in `dtype` (where given)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    BACKENDS[backend].check(device, dtype)


def with_backend(model: Codec, backend: str) -> Codec:
    """`model` (folded, eval mode) with its encoder and decoder run by `backend` (one of `BACKENDS`).

    Raises:
        ValueError: an unknown backend.
        BackendError: the backend cannot run this model here (onnxruntime: only fp32 on the CPU).
    """
    check_backend(backend)
    return BACKENDS[backend].wrap(model)


def backends_help() -> str:
    """One clause per backend, for the CLI's help."""
    return "; ".join(f"{b.name}: {b.summary}" for b in REGISTERED)


__all__ = ["BACKENDS", "REGISTERED", "Backend", "BackendError", "backends_help", "check_backend", "with_backend"]
