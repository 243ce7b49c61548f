"""Inference backends: what runs a folded model's encoder and decoder.

- `torch`: eager PyTorch, any device and precision (`Codec.folded`).
- `compile`: `torch.compile` (Inductor) with the weights frozen into the graph, so that Snake runs
  as one fused pass and oneDNN gets its convolution weights pre-packed. Compiled once for every
  input length (dynamic shapes); the first call compiles, about 30 s for the built-in model on
  2 cores (Inductor keeps the kernels in its on-disk cache, so a later process needs a few
  seconds). It pays on long jobs: many files, long files, `tokenize`. It needs a C++ compiler.
- `onnxruntime`: ONNX Runtime sessions of exported graphs (`onnx_backend`), CPU fp32.

Only the encoder and decoder change; the quantiser, the chunk context, the file pipeline, the
streaming coders and `tokenize` are the same code for every backend, so a backend is chosen in
one place (`load_model(..., backend=...)`, the CLI's `--backend`) and used everywhere.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .model import Codec

BACKENDS = ("torch", "compile", "onnxruntime")


class BackendError(RuntimeError):
    """A backend cannot run here (a package or a compiler missing, an unsupported device)."""


def with_backend(model: Codec, backend: str) -> Codec:
    """`model` (folded, eval mode) with its encoder and decoder run by `backend` (one of `BACKENDS`).

    Raises:
        ValueError: an unknown backend.
        BackendError: the backend cannot run this model here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "torch":
        return model
    if backend == "onnxruntime":
        from .onnx_backend import with_onnxruntime

        try:
            return with_onnxruntime(model)
        except RuntimeError as exc:
            raise BackendError(str(exc)) from None
    runtime = copy.deepcopy(model).eval()
    runtime.encoder = CompiledNet(runtime.encoder)  # type: ignore[assignment]
    runtime.decoder = CompiledNet(runtime.decoder)  # type: ignore[assignment]
    return runtime


class CompiledNet(nn.Module):
    """`net` run through `torch.compile(dynamic=True)` with frozen weights when no gradient is
    needed (inference), and eagerly otherwise (a frozen graph cannot train).

    The compiled function is made at the first inference call and dropped when the module is
    moved or cast, so the frozen weights never go stale that way; load new weights into a new
    model rather than into this one. It is kept out of the module tree, so `modules()` (which
    `streaming.conv_geometry` walks) sees each convolution once.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.__dict__["_compiled"] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.net(x)
        if self.__dict__["_compiled"] is None:
            self.__dict__["_compiled"] = torch.compile(self.net, dynamic=True, options={"freezing": True})
        if x.stride() != torch.empty(0).new_empty(x.shape).stride():  # one layout, size-1 dims included:
            x = x.clone(memory_format=torch.contiguous_format)  # a strided view would compile again
        try:
            return self.__dict__["_compiled"](x)
        except Exception as exc:  # Inductor's failures (no compiler, codegen) come as many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BackendError(f"the compile backend failed ({type(exc).__name__}: {first}); use the torch backend") from exc

    def _apply(self, fn: Any, recurse: bool = True) -> CompiledNet:
        self.__dict__["_compiled"] = None
        return super()._apply(fn, recurse)

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledNet:
        return CompiledNet(copy.deepcopy(self.net, memo))
