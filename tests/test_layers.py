"""Building blocks: Snake, weight-normed convs with the released parameter names, folding weight norm away."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rvqgan import layers
from rvqgan.layers import Snake1d, WNConv1d, WNConvTranspose1d, conv_padding, fold_weight_norm, snake, strided_padding


def test_snake():
    x = torch.linspace(-3, 3, 50).view(1, 2, 25)
    alpha = torch.tensor([1.0, 2.0]).view(1, 2, 1)
    assert torch.allclose(snake(x, alpha), x + torch.sin(alpha * x) ** 2 / alpha, atol=1e-6)
    assert torch.allclose(Snake1d(2)(x), snake(x, torch.ones(1, 2, 1)), atol=1e-6)


def test_snake_inference_path_matches_the_autograd_path():
    torch.manual_seed(0)
    x = 3 * torch.randn(2, 5, 1000)
    alpha = torch.rand(1, 5, 1) + 0.1
    kept = x.clone()
    with torch.no_grad():
        fast = snake(x, alpha)  # in-place temporaries
    slow = snake(x.requires_grad_(), alpha)  # the differentiable expression
    assert slow.requires_grad and not fast.requires_grad
    assert torch.equal(x.detach(), kept)  # the input is left alone
    assert torch.allclose(fast, slow.detach(), atol=1e-6)


def test_snake_forward_mode_gradient():
    """Forward-mode AD reports requires_grad=False, so it takes the in-place path: it must stay right."""
    torch.manual_seed(0)
    x, tangent = torch.randn(1, 3, 50), torch.randn(1, 3, 50)
    alpha = torch.rand(1, 3, 1) + 0.5
    _, jvp = torch.func.jvp(lambda v: snake(v, alpha), (x,), (tangent,))
    expected = tangent * (1 + torch.sin(2 * alpha * x))  # d/dx [x + sin²(αx)/α] = 1 + sin(2αx)
    assert torch.allclose(jvp, expected, atol=1e-5)


@torch.no_grad()
def test_fold_weight_norm_keeps_the_function():
    torch.manual_seed(0)
    net = nn.Sequential(
        WNConv1d(2, 4, kernel_size=7, dilation=3, padding=conv_padding(7, 3)),
        WNConvTranspose1d(4, 3, kernel_size=10, stride=5, padding=strided_padding(5), output_padding=1),
    )
    assert {n for n, _ in net.named_parameters()} >= {"0.weight_g", "0.weight_v", "1.weight_g", "1.weight_v"}
    folded = fold_weight_norm(net)
    assert type(folded[0]) is layers.Conv1d and type(folded[1]) is layers.ConvTranspose1d  # plain convs, run time-major
    assert isinstance(net[0], WNConv1d)  # the original is untouched
    reflect = WNConv1d(2, 4, kernel_size=7, padding=3, padding_mode="reflect")
    xr = torch.randn(1, 2, 20)
    with torch.no_grad():  # the padding mode is kept
        torch.testing.assert_close(fold_weight_norm(reflect)(xr), reflect(xr), rtol=1e-5, atol=1e-5)
    x = torch.randn(2, 2, 33)
    assert folded(x).shape == net(x).shape == (2, 3, 33 * 5)
    assert torch.allclose(folded(x), net(x), atol=1e-5)
    assert torch.equal(net[1](net[0](x), output_size=[2, 3, 33 * 5]), net(x))


def test_fused_snake_matches_plain_snake_in_value_and_gradient():
    """`fuse_snake` (which the CPU recipe trains with) computes what plain Snake computes: the
    output, and the gradients with respect to the input and to α, to float rounding."""

    torch.manual_seed(0)
    module = layers.Snake1d(6)
    with torch.no_grad():
        module.alpha.copy_(torch.rand(1, 6, 1) * 3 + 0.05)
    x = torch.randn(2, 6, 333) * 2
    grad_out = torch.randn(2, 6, 333)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        module.alpha.grad = None
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        y.backward(grad_out)
        assert module.alpha.grad is not None and xi.grad is not None
        return y.detach(), xi.grad, module.alpha.grad.clone()

    plain = run()
    layers.fuse_snake(True)
    try:
        assert layers._fused_snake is not None
        fused = run()
        with torch.no_grad():
            no_grad = module(x)
            bf16 = module(x.bfloat16())
    finally:
        layers.fuse_snake(False)
    # A bf16 input (a convolution's output under autocast) stays bf16: computed in fp32, rounded once.
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16, layers.snake(x.bfloat16().float(), module.alpha.detach()).bfloat16())
    # α's gradient is a sum over 2 × 333 products, reduced in another order by the fused kernel:
    # fp32 rounding of such a sum reaches a few 1e-5 relative (measured 1.6e-5), so it gets 1e-4.
    for a, b, tolerance in zip(plain, fused, (1e-5, 1e-5, 1e-4)):
        torch.testing.assert_close(b, a, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(no_grad, plain[0], rtol=1e-5, atol=1e-5)
    assert not torch.equal(plain[2], torch.zeros_like(plain[2]))  # α gets a gradient at all


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_time_major_convolutions_compute_the_plain_ones(dtype):
    """`layers.conv1d` / `conv_transpose1d` (what every conv of the codec runs) give what
    `F.conv1d` / `F.conv_transpose1d` give, for the geometries the codec uses; without gradients
    on the CPU their output is time-major in memory (so the next conv needs no conversion), with
    gradients they are the plain kernels."""
    torch.manual_seed(0)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    x = torch.randn(2, 8, 301, dtype=dtype)
    geometries = [
        (7, 1, 3, 1, 1),
        (7, 1, 9, 3, 1),
        (1, 1, 0, 1, 1),
        (8, 4, 2, 1, 1),
        (10, 5, 3, 1, 1),
        (4, 2, 1, 1, 2),
        (3, 1, "same", 2, 2),
    ]
    for k, stride, padding, dilation, groups in geometries:
        w, b = torch.randn(6, 8 // groups, k, dtype=dtype) * 0.2, torch.randn(6, dtype=dtype)
        with torch.no_grad():
            y = layers.conv1d(x, w, b, (stride,), padding if isinstance(padding, str) else (padding,), (dilation,), groups)
            again = layers.conv1d(y, torch.randn(5, 6, 3, dtype=dtype), None, 1, 1, 1, 1)
        torch.testing.assert_close(y, F.conv1d(x, w, b, stride, padding, dilation, groups), rtol=tolerance, atol=tolerance)
        if isinstance(padding, str):
            continue
        assert y.stride(1) == 1 and again.stride(1) == 1  # time-major
        wt, extra = torch.randn(8, 6 // groups, 2 * stride, dtype=dtype) * 0.2, stride % 2 if stride > 1 else 0
        with torch.no_grad():
            z = layers.conv_transpose1d(x, wt, b, (stride,), ((stride + 1) // 2,), (extra,), groups, (1,))
        expected = F.conv_transpose1d(x, wt, b, stride, (stride + 1) // 2, extra, groups)
        torch.testing.assert_close(z, expected, rtol=tolerance, atol=tolerance)
    xg, w = x.float().requires_grad_(True), torch.randn(6, 8, 7)
    y = layers.conv1d(xg, w, None, 1, 3, 1, 1)
    assert y.is_contiguous() and torch.equal(y, F.conv1d(xg, w, None, 1, 3))


def test_folded_convolutions_run_time_major_and_keep_their_geometry():
    """`fold_weight_norm` gives `layers.Conv1d` / `ConvTranspose1d` (still `nn.Conv1d` /
    `nn.ConvTranspose1d`, so geometry and export code sees what it saw)."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        layers.WNConv1d(4, 6, 7, padding=3), layers.Snake1d(6), layers.WNConvTranspose1d(6, 3, 4, stride=2, padding=1)
    )
    folded = layers.fold_weight_norm(module)
    assert isinstance(folded[0], layers.Conv1d) and isinstance(folded[0], torch.nn.Conv1d)
    assert isinstance(folded[2], layers.ConvTranspose1d) and isinstance(folded[2], torch.nn.ConvTranspose1d)
    x = torch.randn(1, 4, 50)
    with torch.no_grad():
        y = folded(x)
        plain = F.conv_transpose1d(
            layers.snake(F.conv1d(x, folded[0].weight, folded[0].bias, padding=3), folded[1].alpha),
            folded[2].weight,
            folded[2].bias,
            stride=2,
            padding=1,
        )
    torch.testing.assert_close(y, plain, rtol=1e-5, atol=1e-5)
    assert y.stride(1) == 1
