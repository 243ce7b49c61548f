"""Building blocks: Snake activation and weight-normalised 1-d convolutions.

Weight norm is implemented here rather than with `torch.nn.utils.weight_norm` so that the
parameter names are exactly those of the released checkpoints (`weight_g`, `weight_v`)
without deprecated hooks, and so that folding it away for inference is one call.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake activation x + sin²(αx)/α (Ziyin et al., 2020), α per channel.

    Args:
        x: `[B, C, T]`.
        alpha: `[1, C, 1]`; the 1e-9 keeps α→0 finite, as in the reference.
    """
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad) or torch.jit.is_tracing():
        return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
    # No gradient needed: one temporary updated in place, four full-size kernels instead of five
    # (results agree with the expression above to float rounding).
    y = x * alpha
    y.sin_()
    y.square_()
    return torch.addcmul(x, y, (alpha + 1e-9).reciprocal())


_fused_snake = None


def _snake_keeping_dtype(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake computed in float32 and returned in `x`'s dtype: under bf16 autocast a convolution's
    bf16 output stays bf16 through the activation, instead of being promoted by the fp32 α and
    cast back by the next convolution (two extra passes over the tensor, forward and backward)."""
    return snake(x.float(), alpha).to(x.dtype)


def fuse_snake(enabled: bool = True) -> None:
    """Run Snake through one `torch.compile`d kernel (forward and backward).

    Snake is elementwise and memory-bound; eager PyTorch spends five passes over the tensor
    on it, the fused kernel one, about 4× faster on a CPU. The first call compiles (≈20 s),
    so this is opt-in, for training and long inference runs.
    """
    global _fused_snake
    if enabled:
        import torch._dynamo  # lazy: Dynamo takes over a second to import

        # One specialisation per channel count (and grad mode) is expected; allow them all.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    _fused_snake = torch.compile(_snake_keeping_dtype, dynamic=True) if enabled else None


class Snake1d(nn.Module):
    """Snake with a learned per-channel frequency α, initialised to 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fused_snake is not None:
            return _fused_snake(x, self.alpha)
        return snake(x, self.alpha)


def _plain(x: torch.Tensor) -> bool:
    """Whether the plain 1-d kernels should run: off the CPU, for unbatched input, with gradients
    (a training step at the CPU recipe's batch was slower time-major: 2.13 against 1.86 s in
    fp32), and while tracing or exporting (the exported graph stays the plain one)."""
    return (
        x.device.type != "cpu"
        or x.dim() != 3
        or torch.is_grad_enabled()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_exporting()
    )


def without_autocast(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on `x`'s device where it is on; nothing otherwise, so that tracing
    and export see the plain graph. For the parts that must compute in fp32 under bf16 autocast."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def fp32_under_autocast(method):
    """Run `method(self, x, ...)` with autocast off on `x`'s device (see `without_autocast`)."""

    @functools.wraps(method)
    def wrapper(self, x, *args, **kwargs):
        with without_autocast(x):
            return method(self, x, *args, **kwargs)

    return wrapper


def conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation, groups: int
) -> torch.Tensor:
    """`F.conv1d` of `x` `[B, C_in, T]` → `[B, C_out, T']`, computed on the CPU as a 2-d convolution
    on time-major memory (`[B, C, 1, T]` in channels-last order).

    oneDNN's 1-d path converts every input and output between channel-major and time-major
    order: half of a bf16 convolution's time on AVX-512/AMX CPUs, a third in fp32. Given a
    time-major input (what this function returns), no conversion happens. The result is the
    same convolution (fp32: to float rounding); its `[B, C, T']` view is time-major in memory,
    which elementwise layers keep.
    """
    if _plain(x):
        return F.conv1d(x, weight, bias, stride, padding, dilation, groups)
    padding = padding if isinstance(padding, str) else (0, _one(padding))
    y = F.conv2d(
        _time_major_2d(x),
        _time_major_2d(weight),
        bias,
        (1, _one(stride)),
        padding,
        (1, _one(dilation)),
        groups,
    )
    return y.squeeze(2)


def conv_transpose1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, output_padding, groups: int, dilation
) -> torch.Tensor:
    """`F.conv_transpose1d`, computed like `conv1d` (time-major memory on the CPU)."""
    if _plain(x):
        return F.conv_transpose1d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    y = F.conv_transpose2d(
        _time_major_2d(x),
        _time_major_2d(weight),
        bias,
        (1, _one(stride)),
        (0, _one(padding)),
        (0, _one(output_padding)),
        groups,
        (1, _one(dilation)),
    )
    return y.squeeze(2)


def _time_major_2d(t: torch.Tensor) -> torch.Tensor:
    """A 1-d input `[B, C, T]` or weight `[O, I, K]` as 2-d `[., ., 1, T]` in channels-last memory (no copy if it is already)."""
    return t.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def _one(value) -> int:
    """A 1-d conv argument given as `n` or `(n,)`."""
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


class Conv1d(nn.Conv1d):
    """`nn.Conv1d` that runs as `conv1d` (time-major memory on the CPU)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv1d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose1d(nn.ConvTranspose1d):
    """`nn.ConvTranspose1d` that runs as `conv_transpose1d` (time-major memory on the CPU)."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        return self._transposed(input, self.weight, output_size)

    def _transposed(self, input: torch.Tensor, weight: torch.Tensor, output_size: list[int] | None) -> torch.Tensor:
        assert isinstance(self.padding, tuple)  # transposed convs take no padding strings
        output_padding = self.output_padding
        if output_size is not None:  # as nn.ConvTranspose1d: the output_padding that yields output_size
            output_padding = tuple(
                self._output_padding(
                    input, output_size, list(self.stride), list(self.padding), list(self.kernel_size), 1, list(self.dilation)
                )
            )
        return conv_transpose1d(input, weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation)


class _WeightNorm:
    """Mixin: weight = g · v / ‖v‖ (norm over all dims but 0), recomputed every call."""

    weight: torch.Tensor  # provided by the conv class this is mixed into; replaced by weight_g, weight_v
    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def _init_weight_norm(self) -> None:
        weight = self.weight.detach()
        del self.weight
        self.weight_v = nn.Parameter(weight.clone())
        if weight.is_meta:  # only shapes exist (`model.check_state_shapes`); a norm there would cost a slow import
            self.weight_g = nn.Parameter(weight.new_empty((weight.shape[0],) + (1,) * (weight.dim() - 1)))
            return
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=tuple(range(1, weight.dim())), keepdim=True))

    def normalized_weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)


class WNConv1d(_WeightNorm, Conv1d):
    """`Conv1d` with weight normalisation (Salimans & Kingma, 2016). Input `[B, C_in, T]`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


class WNConvTranspose1d(_WeightNorm, ConvTranspose1d):
    """`ConvTranspose1d` with weight normalisation; `weight_g` is `[C_in, 1, 1]` as in DAC."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        return self._transposed(input, self.normalized_weight(), output_size)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fold_weight_norm(module: ModuleT) -> ModuleT:
    """A copy of `module` whose weight-normed convs are plain convs with the folded weight.

    The copy computes the same function without re-normalising weights on every call, and
    is what inference should run. The original is left untouched.
    """
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            plain: Conv1d | ConvTranspose1d
            if isinstance(child, WNConv1d):
                plain = Conv1d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size[0],
                    stride=child.stride[0],
                    padding=child.padding if isinstance(child.padding, str) else child.padding[0],
                    dilation=child.dilation[0],
                    groups=child.groups,
                    bias=child.bias is not None,
                    padding_mode=child.padding_mode,
                    device=child.weight_v.device,
                    dtype=child.weight_v.dtype,
                )
            elif isinstance(child, WNConvTranspose1d):
                assert isinstance(child.padding, tuple)
                plain = ConvTranspose1d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size[0],
                    stride=child.stride[0],
                    padding=child.padding[0],
                    output_padding=child.output_padding[0],
                    dilation=child.dilation[0],
                    groups=child.groups,
                    bias=child.bias is not None,
                    device=child.weight_v.device,
                    dtype=child.weight_v.dtype,
                )
            else:
                continue
            with torch.no_grad():
                plain.weight.copy_(child.normalized_weight())
                if child.bias is not None and plain.bias is not None:
                    plain.bias.copy_(child.bias)
            plain.train(child.training)
            setattr(parent, name, plain)
    return module


def conv_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding for an odd kernel."""
    return (kernel_size - 1) * dilation // 2


def strided_padding(stride: int) -> int:
    """Padding of the strided (transposed) convs with kernel 2·stride, as in the reference."""
    return math.ceil(stride / 2)
