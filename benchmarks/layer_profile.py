"""Where inference time goes, layer by layer, against the machine's measured fp32 peak.

Times every leaf module of the folded fp32 model (convolutions, transposed convolutions, Snake,
the quantiser) on 10 s of audio at batch 1, groups them by kind, and prints each kind's share of
the time and the GFLOP/s its convolutions reach against the fp32 peak (`speed.compute_peak`) measured in
the same run. This is the ceiling analysis of inference speed: a layer kind that runs far below the peak
is what a faster path has to fix.

    python benchmarks/layer_profile.py                      # the default model
    python benchmarks/layer_profile.py --preset 44khz_8kbps --top 12
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import compute_peak, describe_peak, folded_with_audio, one_model_parser  # noqa: E402


def conv_flops(module: nn.Module, out: torch.Tensor) -> float:
    """Multiply-adds × 2 of a (transposed) 1-d convolution that produced `out` `[B, C, T]`."""
    if isinstance(module, nn.ConvTranspose1d):
        # Every input sample meets every kernel tap once.
        return 2.0 * module.in_channels * module.out_channels * module.kernel_size[0] * (out.shape[-1] / module.stride[0])
    if isinstance(module, nn.Conv1d):
        return 2.0 * module.in_channels // module.groups * module.out_channels * module.kernel_size[0] * out.shape[-1]
    return 0.0


def kind(name: str, module: nn.Module, x: torch.Tensor) -> str:
    side = name.split(".")[0]
    channels = x.shape[1]
    if isinstance(module, nn.ConvTranspose1d):
        return f"{side} upsample conv {module.in_channels}->{module.out_channels} s{module.stride[0]}"
    if isinstance(module, nn.Conv1d):
        k = module.kernel_size[0]
        what = "strided conv" if module.stride[0] > 1 else f"conv k{k}"
        return f"{side} {what} {module.in_channels}->{module.out_channels}"
    return f"{side} {type(module).__name__} C={channels}"


def profile(model: nn.Module, run, repeats: int) -> dict[str, list[float]]:
    """Seconds and FLOPs per layer kind, the fastest of `repeats` runs of `run()` for each layer."""
    stats: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # seconds, flops, calls
    best: dict[str, float] = {}
    started: dict[str, float] = {}
    seen: dict[str, str] = {}  # layer name -> kind, filled on the first run
    hooks = []
    for name, module in model.named_modules():
        if list(module.children()) or name == "":
            continue

        def pre(mod, args, name=name):
            started[name] = time.perf_counter()

        def post(mod, args, out, name=name):
            seconds = time.perf_counter() - started[name]
            best[name] = min(best.get(name, float("inf")), seconds)
            key = kind(name, mod, args[0])
            if name not in seen:
                seen[name] = key
                stats[key][1] += conv_flops(mod, out)
                stats[key][2] += 1

        hooks.append(module.register_forward_pre_hook(pre))
        hooks.append(module.register_forward_hook(post))
    with torch.no_grad():
        for _ in range(repeats):
            run()
    for h in hooks:
        h.remove()
    for name, key in seen.items():
        stats[key][0] += best[name]
    return stats


def main() -> None:
    parser = one_model_parser(__doc__)
    parser.add_argument("--top", type=int, default=20, help="kinds to list, slowest first")
    args = parser.parse_args()
    model, audio = folded_with_audio(args)
    with torch.no_grad():
        codes = model.encode(audio)
    measured = compute_peak(torch.float32, "cpu")
    peak = measured["peak"]

    def run() -> None:
        model.decode(model.encode(audio))

    t = time.perf_counter()
    with torch.no_grad():
        run()
    whole = time.perf_counter() - t
    stats = profile(model, run, args.repeats)
    total = sum(s for s, _, _ in stats.values())
    flops = sum(f for _, f, _ in stats.values())
    print(
        f"{args.preset}, {args.seconds:g} s, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}, "
        f"{describe_peak(measured, torch.float32)}; codes {tuple(codes.shape)}"
    )
    print(
        f"sum of layers {total:.3f} s (whole encode+decode {whole:.3f} s), conv FLOPs {flops / 1e9:.1f} G, "
        f"{flops / total / 1e9:.1f} GFLOP/s = {100 * flops / total / 1e9 / peak:.0f}% of peak"
    )
    print(f"{'layer kind':<44}{'n':>4}{'seconds':>9}{'share':>7}{'GFLOP':>8}{'GF/s':>8}{'%peak':>7}")
    for key, (s, f, n) in sorted(stats.items(), key=lambda kv: -kv[1][0])[: args.top]:
        rate = f / s / 1e9 if s else 0.0
        print(
            f"{key:<44}{int(n):>4}{s:>9.4f}{100 * s / total:>6.1f}%{f / 1e9:>8.2f}{rate:>8.1f}"
            f"{(f'{100 * rate / peak:.0f}%' if f else '-'):>7}"
        )


if __name__ == "__main__":
    main()
