"""The `compile` backend: `torch.compile` (Inductor) with the weights frozen into the graph.

Frozen weights are constants, so Snake runs as one fused pass and oneDNN gets its convolution
weights pre-packed. Compiled once for a range of input lengths (dynamic shapes); the first call
compiles (37 s for the built-in model on 2 cores, measured by `benchmarks/speed.py`). It pays on
long jobs: many files, long files, `tokenize`. It needs a C++ compiler. Inference only: an input
that requires a gradient runs eagerly.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch._prims_common import make_contiguous_strides_for

from ..model import Codec
from .base import Backend, BackendError


def compile_model(model: Codec) -> Codec:
    """`model` (folded, eval mode) with its encoder and decoder each a `CompiledNet`."""
    runtime = copy.deepcopy(model)
    runtime.encoder = CompiledNet(runtime.encoder)  # type: ignore[assignment]
    runtime.decoder = CompiledNet(runtime.decoder)  # type: ignore[assignment]
    runtime.eval()
    runtime.set_weights_digest(model.weights_digest())  # same weights: files decode with any backend
    return runtime


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
        import torch._inductor.config as inductor_config  # lazy: Inductor takes 1.6 s to import
        from torch._dynamo.exc import BackendCompilerFailed  # lazy: as above

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


BACKEND = Backend("compile", "torch.compile with frozen weights (first call compiles; needs a C++ compiler)", compile_model)
