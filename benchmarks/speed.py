"""Encode/decode speed of the codec presets: real-time factors, peak memory, achieved GFLOP/s.

Random weights (speed does not depend on them). Each configuration runs in its own process so
peak memory is its own. The matmul peak of the same machine is measured in the same run, so
achieved GFLOP/s can be read against it.

    python benchmarks/speed.py                       # 44.1 and 16 kHz, fp32 and bf16, 10 s, 2 threads
    python benchmarks/speed.py --device cuda --batch 16
    python benchmarks/speed.py --precisions eager,fp32   # the plain eager model against the folded fp32 path

Precisions: `eager` is the training-time model in eval mode (weight norm recomputed every call),
`fp32` and `bf16` the folded inference path of `Codec.folded(precision)`, and `ort` the folded fp32
model run by ONNX Runtime (`--backend onnxruntime`).

    python benchmarks/speed.py --presets 44khz_8kbps,default --precisions fp32,ort   # the two backends
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def matmul_peak(dtype: torch.dtype, device: str, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    reps = 3 if device == "cpu" else 50
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(preset: str, precision: str, seconds: float, batch: int, device: str, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    import rvqgan

    base = rvqgan.load_model("default") if preset == "default" else rvqgan.build_model(preset)
    counted = base.folded().to(device)  # FLOPs are the model's, whatever runs it
    if precision == "ort":
        from rvqgan.onnx_backend import with_onnxruntime

        model = with_onnxruntime(base.folded(), threads=torch.get_num_threads())
    else:
        model = (base.eval() if precision == "eager" else base.folded(precision)).to(device)
    audio = 0.1 * torch.randn(batch, 1, int(seconds * model.sample_rate), device=device)
    with torch.no_grad():
        codes = model.encode(audio)  # warm-up
        model.decode(codes)
        with FlopCounterMode(display=False) as counter:
            counted.encode(audio)
        enc_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            counted.decode(codes)
        dec_flops = counter.get_total_flops()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = {"encode": [], "decode": []}
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            codes = model.encode(audio)
            _sync(device)
            times["encode"].append(time.perf_counter() - t)
            t = time.perf_counter()
            model.decode(codes)
            _sync(device)
            times["decode"].append(time.perf_counter() - t)
    enc, dec = min(times["encode"]), min(times["decode"])
    audio_seconds = seconds * batch
    peak = (
        torch.cuda.max_memory_allocated()
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "preset": preset,
        "precision": precision,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.single:
        preset, precision = args.single.split(":")
        print(json.dumps(measure(preset, precision, args.seconds, args.batch, args.device, args.repeats)))
        return
    dtypes = {
        p: {"eager": torch.float32, "fp32": torch.float32, "ort": torch.float32, "bf16": torch.bfloat16}[p]
        for p in args.precisions.split(",")
    }
    by_dtype = {d: matmul_peak(d, args.device) for d in set(dtypes.values())}  # eager and fp32 share one measurement
    peaks = {p: by_dtype[d] for p, d in dtypes.items()}
    print(
        f"matmul peak on {args.device} ({args.threads} threads): " + ", ".join(f"{p} {v:.2f} GFLOP/s" for p, v in peaks.items())
    )
    results = []
    header = f"{'preset':<13}{'prec':<6}{'batch':>5}{'enc RTF':>9}{'dec RTF':>9}{'total':>8}{'enc GF/s':>10}{'dec GF/s':>10}{'% peak':>8}{'peak MB':>9}"
    print(header)
    for preset in args.presets.split(","):
        for precision in args.precisions.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--single",
                f"{preset}:{precision}",
                "--seconds",
                str(args.seconds),
                "--batch",
                str(args.batch),
                "--device",
                args.device,
                "--threads",
                str(args.threads),
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(
                    f"{preset:<13}{precision:<6} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
                )
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["matmul_peak_gflops"] = peaks[precision]
            results.append(r)
            flops = (r["gflop_per_audio_second"]["encode"] + r["gflop_per_audio_second"]["decode"]) / r["total_rtf"]
            print(
                f"{preset:<13}{precision:<6}{args.batch:>5}{r['encode_rtf']:>9.3f}{r['decode_rtf']:>9.3f}{r['total_rtf']:>8.3f}"
                f"{r['encode_gflops']:>10.1f}{r['decode_gflops']:>10.1f}{100 * flops / peaks[precision]:>7.0f}%{r['peak_memory_mb']:>9.0f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
