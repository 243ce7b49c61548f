"""Encode/decode speed of the codec presets: real-time factors, peak memory, achieved GFLOP/s.

Random weights (speed does not depend on them). Each configuration runs in its own process so
peak memory is its own. The fp32 peak of the same machine (the better of a BLAS matmul and a large
convolution, `compute_peak`) is measured in the same run, so achieved GFLOP/s can be read against it.

    python benchmarks/speed.py                       # 44.1 and 16 kHz, fp32 and bf16, 10 s, 2 threads
    python benchmarks/speed.py --device cuda --batch 16
    python benchmarks/speed.py --precisions eager,fp32   # the plain eager model against the folded fp32 path

Precisions: `eager` is the training-time model in eval mode (weight norm recomputed every call),
`fp32` and `bf16` the folded inference path of `Codec.folded(precision)`, `compile` the folded fp32
model run by `torch.compile` (`--backend compile`; `compile-bf16` the same in bf16, the decoder's
output tail in fp32 as `Decoder.to_bf16` keeps it; its compile is the warm-up, reported as
`first_call_seconds`, which is shorter once Inductor's on-disk cache holds the kernels; its
peak memory includes the compiler's), `ort` the folded fp32 model run by ONNX Runtime
(`--backend onnxruntime`), and `reference` the reference implementation
(descript-audio-codec 1.0.0, `dac.model.DAC` with the preset's configuration) run by the
interpreter of `--reference-python` (made by `bash benchmarks/reference_venv.sh`); `reference-plain`
is the reference with malloc as it is whatever `--no-reuse-memory` says, as its own users run it,
to compare with our rows as the `rvqgan` command runs them.

"% of peak" is the model's FLOPs (counted on our folded model, the same arithmetic for every
backend, the reference included) per second of the measured time, against that peak.
"peak MB" is the process's peak resident memory; our rows hold three copies of the weights (the
model, a folded copy, the copy that counts FLOPs), the reference's one, so compare it between
our backends only.

The machine's speed drifts by tens of percent from minute to minute when it is shared, so the
peak is measured before and after the models (the higher counts), every configuration
runs `--repeats` times (the fastest counts), and `--rounds` repeats the whole comparison.

    python benchmarks/speed.py --presets 44khz_8kbps,default --precisions fp32,ort   # the two backends
    python benchmarks/speed.py --presets 44khz_8kbps --precisions reference,fp32,ort --rounds 3
    python benchmarks/speed.py --presets default --precisions fp32 --no-reuse-memory  # malloc left as it is
    python benchmarks/speed.py --presets 44khz_8kbps,default --precisions reference,reference-plain,fp32,compile,ort
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def describe_machine(device: str) -> dict[str, object]:
    """`rvqgan.precision.describe`: the CPU, its capability, native bf16, threads (imported here:
    the reference's interpreter runs this file without rvqgan)."""
    sys.path.insert(0, str(ROOT))
    from rvqgan.precision import describe

    return describe(device)


def _best_gflops(fn, gflop: float, device: str, trials: int) -> float:
    """GFLOP/s of `fn` (which does `gflop` of work), the best of `trials` timings after a warm-up."""
    fn()
    reps = 1 if device == "cpu" else 50
    best = float("inf")
    for _ in range(trials):
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        best = min(best, (time.perf_counter() - t) / reps)
    return gflop / best


def matmul_peak(dtype: torch.dtype, device: str, n: int = 2048, trials: int = 5) -> float:
    """GFLOP/s of an n × n matmul (BLAS on a CPU), the best of `trials` timings."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return _best_gflops(lambda: a @ b, 2 * n**3 / 1e9, device, trials)


def conv_peak(dtype: torch.dtype, device: str, channels: int = 512, frames: int = 16384, trials: int = 5) -> float:
    """GFLOP/s of a kernel-7 convolution `[1, C, T]` → `[1, C, T]` (oneDNN on a CPU), best of `trials`."""
    x = torch.randn(1, channels, frames + 6, device=device, dtype=dtype)
    w = torch.randn(channels, channels, 7, device=device, dtype=dtype)
    with torch.no_grad():
        return _best_gflops(lambda: torch.nn.functional.conv1d(x, w), 2 * channels**2 * 7 * frames / 1e9, device, trials)


def compute_peak(dtype: torch.dtype, device: str) -> dict[str, float]:
    """The machine's measured dense-arithmetic peak in `dtype`: `matmul` (BLAS), `conv` (a large
    convolution) and `peak`, the higher of the two, which "% of peak" is read against.

    A matmul alone understates the peak where the convolution library outruns BLAS (an AMD EPYC
    with AVX-512: sgemm 184, the kernel-7 convolution 210 GFLOP/s), which would flatter the model.
    """
    matmul, conv = matmul_peak(dtype, device), conv_peak(dtype, device)
    return {"matmul": matmul, "conv": conv, "peak": max(matmul, conv)}


def describe_peak(peak: dict[str, float], dtype: torch.dtype) -> str:
    """One line: the peak and what it was measured on."""
    name = str(dtype).removeprefix("torch.")
    return f"{name} peak {peak['peak']:.1f} GFLOP/s (matmul {peak['matmul']:.1f}, kernel-7 conv {peak['conv']:.1f})"


def _reuse_freed_memory() -> None:
    """`rvqgan.allocator.reuse_freed_memory`, loaded from its file (the reference's interpreter lacks rvqgan)."""
    spec = importlib.util.spec_from_file_location("_allocator", ROOT / "rvqgan" / "allocator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.reuse_freed_memory()


def preset_model(preset: str):
    """The built-in model for "default", else an untrained model of the named preset (random weights)."""
    import rvqgan

    return rvqgan.load_model("default") if preset == "default" else rvqgan.build_model(preset)


def one_model_parser(doc: str | None, repeats: int = 3) -> argparse.ArgumentParser:
    """The arguments of the one-model benchmarks (`layer_profile.py`, `speed_experiments.py`)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def folded_with_audio(args: argparse.Namespace):
    """As the CLI runs (threads set, freed memory reused): the folded model of `args.preset` and
    `args.seconds` of noise at its rate, `[1, 1, T]`."""
    torch.set_num_threads(args.threads)
    _reuse_freed_memory()
    model = preset_model(args.preset).folded()
    return model, 0.1 * torch.randn(1, 1, int(args.seconds * model.sample_rate))


def _reference_model(config: dict) -> torch.nn.Module:
    """The reference implementation's model for a preset's configuration (random weights)."""
    import warnings

    warnings.filterwarnings("ignore")
    from dac.model import DAC

    keys = ("encoder_dim", "encoder_rates", "latent_dim", "decoder_dim", "decoder_rates", "n_codebooks")
    keys += ("codebook_size", "codebook_dim", "sample_rate")
    return DAC(**{k: config[k] for k in keys}).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_reference(config: dict, seconds: float, batch: int, device: str, repeats: int) -> dict:
    """Encode/decode times of the reference implementation (run in its own interpreter)."""
    model = _reference_model(config).to(device)
    rate = config["sample_rate"]
    audio = 0.1 * torch.randn(batch, 1, int(seconds * rate), device=device)

    def encode() -> torch.Tensor:
        return model.encode(model.preprocess(audio, rate))[1]  # codes, as ours

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return model.decode(model.quantizer.from_codes(codes)[0])  # from codes, as ours

    with torch.no_grad():
        decode(encode())  # warm-up
        enc, dec = _timed(encode, decode, repeats, device)
    return {"encode": enc, "decode": dec, "peak": _peak_memory(device)}


def _timed(encode, decode, repeats: int, device: str) -> tuple[float, float]:
    """The fastest of `repeats` timings of `encode()` and of `decode(encode())`, in seconds."""
    times: dict[str, list[float]] = {"encode": [], "decode": []}
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        coded = encode()
        _sync(device)
        times["encode"].append(time.perf_counter() - t)
        t = time.perf_counter()
        decode(coded)
        _sync(device)
        times["decode"].append(time.perf_counter() - t)
    return min(times["encode"]), min(times["decode"])


def _peak_memory(device: str) -> float:
    if device.startswith("cuda"):
        return float(torch.cuda.max_memory_allocated())
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def measure(
    preset: str, precision: str, seconds: float, batch: int, device: str, repeats: int, reuse: bool, reference: str | None
) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    if reuse:
        _reuse_freed_memory()  # as the CLI does
    base = preset_model(preset)
    counted = base.folded().to(device)  # FLOPs are the model's, whatever runs it
    is_reference = precision.startswith("reference")  # run by the reference's own interpreter
    if is_reference:
        model = counted
    elif precision == "ort":
        from rvqgan.backends.ort import with_onnxruntime

        model = with_onnxruntime(base.folded(), threads=torch.get_num_threads())
    elif precision in ("compile", "compile-bf16"):
        from rvqgan.backends import with_backend

        model = with_backend(base.folded("bf16" if precision == "compile-bf16" else "fp32").to(device), "compile")
    else:
        model = (base.eval() if precision == "eager" else base.folded(precision)).to(device)
    audio = 0.1 * torch.randn(batch, 1, int(seconds * model.sample_rate), device=device)
    with torch.no_grad():
        t = time.perf_counter()
        codes = model.encode(audio)  # warm-up (and, for `compile`, the compile)
        if not is_reference:
            model.decode(codes)
        first_call = time.perf_counter() - t
        with FlopCounterMode(display=False) as counter:
            counted.encode(audio)
        enc_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            counted.decode(codes)
        dec_flops = counter.get_total_flops()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        if not is_reference:
            enc, dec = _timed(lambda: model.encode(audio), model.decode, repeats, device)
    if is_reference:
        if not reference or not os.path.exists(reference):
            raise SystemExit(f"no reference interpreter at {reference}: run bash benchmarks/reference_venv.sh")
        cmd = [reference, __file__, "--reference-config", json.dumps(base.config.to_dict()), "--seconds", str(seconds)]
        cmd += ["--batch", str(batch), "--device", device, "--threads", str(torch.get_num_threads()), "--repeats", str(repeats)]
        cmd += [] if reuse and precision == "reference" else ["--no-reuse-memory"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        ref = json.loads(out.stdout.strip().splitlines()[-1])
        enc, dec, peak = ref["encode"], ref["decode"], ref["peak"]
    else:
        peak = _peak_memory(device)
    audio_seconds = seconds * batch
    return {
        "preset": preset,
        "precision": precision,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": describe_machine(device),
        "device": device,
        "batch": batch,
        "seconds": seconds,
        "encode_rtf": enc / audio_seconds,
        "decode_rtf": dec / audio_seconds,
        "total_rtf": (enc + dec) / audio_seconds,
        "encode_gflops": enc_flops / enc / 1e9,
        "decode_gflops": dec_flops / dec / 1e9,
        "gflop_per_audio_second": {"encode": enc_flops / audio_seconds / 1e9, "decode": dec_flops / audio_seconds / 1e9},
        "peak_memory_mb": peak / 2**20,
        "first_call_seconds": None if is_reference else first_call,
        "reuse_freed_memory": reuse and precision != "reference-plain",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="44khz_8kbps,16khz")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--no-reuse-memory", action="store_true", help="leave malloc as it is (the CLI calls rvqgan.allocator.reuse_freed_memory)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison (the fastest round counts)")
    parser.add_argument(
        "--reference-python",
        default=str(ROOT / ".cache" / "dac-reference" / "bin" / "python"),
        help="interpreter with descript-audio-codec 1.0.0 (bash benchmarks/reference_venv.sh)",
    )
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--reference-config", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.reference_config:
        if not args.no_reuse_memory:
            _reuse_freed_memory()
        config = json.loads(args.reference_config)
        print(json.dumps(measure_reference(config, args.seconds, args.batch, args.device, args.repeats)))
        return
    if args.single:
        preset, precision = args.single.split(":")
        print(
            json.dumps(
                measure(
                    preset,
                    precision,
                    args.seconds,
                    args.batch,
                    args.device,
                    args.repeats,
                    not args.no_reuse_memory,
                    args.reference_python,
                )
            )
        )
        return
    dtype_of = {p: torch.float32 for p in ("eager", "fp32", "compile", "ort", "reference", "reference-plain")}
    dtype_of["bf16"] = dtype_of["compile-bf16"] = torch.bfloat16
    precisions = args.precisions.split(",")
    dtypes = {dtype_of[p] for p in precisions}
    peaks = {d: compute_peak(d, args.device) for d in dtypes}
    print(", ".join(f"{k} {v}" for k, v in describe_machine(args.device).items()))
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.rounds):
        for preset in args.presets.split(","):
            for precision in precisions:
                cmd = [sys.executable, __file__, "--single", f"{preset}:{precision}", "--seconds", str(args.seconds)]
                cmd += ["--batch", str(args.batch), "--device", args.device, "--threads", str(args.threads)]
                cmd += ["--repeats", str(args.repeats), "--reference-python", args.reference_python]
                cmd += ["--no-reuse-memory"] if args.no_reuse_memory else []
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    err = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode
                    print(f"{preset:<13}{precision:<16} failed: {err}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                key = (preset, precision)
                if key not in best or r["total_rtf"] < best[key]["total_rtf"]:
                    best[key] = r
    for d in dtypes:  # the peak again after the models: the better of the two counts
        again = compute_peak(d, args.device)
        peaks[d] = {k: max(v, again[k]) for k, v in peaks[d].items()}
    print("; ".join(describe_peak(p, d) for d, p in peaks.items()))
    header = f"{'preset':<13}{'backend':<16}{'batch':>5}{'enc RTF':>9}{'dec RTF':>9}{'total':>8}{'enc GF/s':>10}"
    print(header + f"{'dec GF/s':>10}{'% peak':>8}{'peak MB':>9}{'1st call s':>11}")
    results = []
    for (preset, precision), r in best.items():
        measured = peaks[dtype_of[precision]]
        peak = measured["peak"]
        r["matmul_peak_gflops"], r["conv_peak_gflops"], r["peak_gflops"] = measured["matmul"], measured["conv"], peak
        flops = (r["gflop_per_audio_second"]["encode"] + r["gflop_per_audio_second"]["decode"]) / r["total_rtf"]
        r["percent_of_peak"] = 100 * flops / peak
        results.append(r)
        print(
            f"{preset:<13}{precision:<16}{args.batch:>5}{r['encode_rtf']:>9.3f}{r['decode_rtf']:>9.3f}{r['total_rtf']:>8.3f}"
            f"{r['encode_gflops']:>10.1f}{r['decode_gflops']:>10.1f}{r['percent_of_peak']:>7.0f}%{r['peak_memory_mb']:>9.0f}"
            + (f"{r['first_call_seconds']:>11.1f}" if r["first_call_seconds"] is not None else f"{'-':>11}")
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
