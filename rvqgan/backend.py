"""Inference backends: what runs a folded model's encoder and decoder.

- `torch`: eager PyTorch, any device and precision (`Codec.folded`).
- `compile`: `torch.compile` (Inductor) with the weights frozen into the graph as constants, so
  that Snake runs as one fused pass and oneDNN gets its convolution weights pre-packed. Compiled
  once for a range of input lengths (dynamic shapes); the first call compiles (37 s for the
  built-in model on 2 cores, measured by `benchmarks/speed.py`). It pays on long jobs: many
  files, long files, `tokenize`. It needs a C++ compiler. Inference only: an input that requires
  a gradient runs eagerly.
- `onnxruntime`: ONNX Runtime sessions of exported graphs (`onnx_backend`), CPU fp32.

Only the encoder and decoder change; the quantiser, the chunk context, the file pipeline, the
streaming coders and `tokenize` are the same code for every backend, and the weights id stays
the model's, so files written with one backend decode with any other. A backend is chosen in one
place (`with_backend`, which `load_model(..., backend=...)` and the CLI's `--backend` call).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch._prims_common import make_contiguous_strides_for

from .model import Codec

BACKENDS = ("torch", "compile", "onnxruntime")


class BackendError(RuntimeError):
    """A backend cannot run here (a package or a compiler missing, an unsupported device or dtype)."""


def with_backend(model: Codec, backend: str) -> Codec:
    """`model` (folded, eval mode) with its encoder and decoder run by `backend` (one of `BACKENDS`).

    Raises:
        ValueError: an unknown backend.
        BackendError: the backend cannot run this model here (onnxruntime: only fp32 on the CPU).
    """
    check_backend(backend)
    if backend == "torch":
        return model
    if backend == "onnxruntime":
        from .onnx_backend import with_onnxruntime

        try:
            return with_onnxruntime(model)
        except RuntimeError as exc:
            raise BackendError(str(exc)) from None
    runtime = copy.deepcopy(model)
    runtime.encoder = CompiledNet(runtime.encoder)  # type: ignore[assignment]
    runtime.decoder = CompiledNet(runtime.decoder)  # type: ignore[assignment]
    runtime.eval()
    runtime.set_weights_digest(model.weights_digest())  # same weights: files decode with any backend
    return runtime


def check_backend(backend: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
    """Raise ValueError unless `backend` names one of `BACKENDS`, and BackendError where it cannot
    run a model on `device` in `dtype` (where given): onnxruntime runs fp32 on the CPU only."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "onnxruntime" and (
        (device is not None and device.type != "cpu") or (dtype is not None and dtype != torch.float32)
    ):
        raise BackendError("the onnxruntime backend runs fp32 on the CPU (--precision fp32, --device cpu)")


class CompiledNet(nn.Module):
    """`net` run through `torch.compile(dynamic=True)` with its weights frozen, without gradients.

    The compiled function is made at the first call and made again when the weights change in
    place or the module is moved or cast, so frozen weights never go stale. It is kept out of the
    module tree, so `modules()` (which `streaming.conv_geometry` walks) sees each convolution once.
    A compile failure is a `BackendError` naming its cause, and later calls fail the same way at
    once instead of compiling again.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self._reset()

    def _reset(self) -> None:
        self.__dict__.update(_compiled=None, _versions=None, _failure=None)

    def _weights_versions(self) -> tuple[int, ...]:
        return tuple(t._version for t in itertools.chain(self.net.parameters(), self.net.buffers()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return self.net(x)
        if self.__dict__["_failure"] is not None:
            raise BackendError(self.__dict__["_failure"])
        if self.__dict__["_compiled"] is None or self.__dict__["_versions"] != self._weights_versions():
            compiled = torch.compile(self.net, dynamic=True, isolate_recompiles=True)  # type: ignore[call-overload]
            self.__dict__.update(_compiled=compiled, _versions=self._weights_versions())
        if x.stride() != tuple(make_contiguous_strides_for(x.shape)):  # size-1 dims too: a strided view compiles again
            x = x.clone(memory_format=torch.contiguous_format)
        import torch._inductor.config as inductor_config
        from torch._dynamo.exc import BackendCompilerFailed

        try:
            with torch.no_grad(), inductor_config.patch(freezing=True):
                return self.__dict__["_compiled"](x)
        except BackendCompilerFailed as exc:
            cause = exc.inner_exception
            lines = str(cause).strip().splitlines()
            message = f"the compile backend failed ({type(cause).__name__}: {lines[0] if lines else ''}); use --backend torch"
            self.__dict__["_failure"] = message
            raise BackendError(message) from exc

    def _apply(self, fn: Any, recurse: bool = True) -> CompiledNet:
        self._reset()
        return super()._apply(fn, recurse)

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledNet:
        clone = CompiledNet(copy.deepcopy(self.net, memo))
        clone.train(self.training)
        memo[id(self)] = clone
        return clone
