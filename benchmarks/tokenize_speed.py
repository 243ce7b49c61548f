"""Tokenization throughput: `rvqgan.tokenize.tokenize` (batched windows, loader processes) against coding one
file at a time (`load_resampled` then `Codec.encode`), in audio-hours per hour.

A synthetic corpus of mixed lengths and rates is written to a temporary folder (speed does not
depend on the audio). Models: the built-in default and the 44.1 kHz preset with random weights.
Pause other jobs on the machine first (training shares the cores).

    python benchmarks/tokenize_speed.py                       # CPU, both models
    python benchmarks/tokenize_speed.py --device cuda --precision bf16 --minutes 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import rvqgan
from rvqgan.tokenize import list_sources, load_resampled, tokenize


def write_corpus(folder: Path, minutes: float, seed: int = 0) -> float:
    """Files of 1–20 s at 16, 22.05, 24, 44.1 and 48 kHz, mono, `minutes` in all → seconds written."""
    rng = np.random.default_rng(seed)
    total, i = 0.0, 0
    while total < minutes * 60:
        seconds = float(rng.uniform(1, 20))
        sr = int(rng.choice([16000, 22050, 24000, 44100, 48000]))
        n = int(seconds * sr)
        t = np.arange(n) / sr
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(n)
        sf.write(folder / f"f{i:04d}.wav", x.astype(np.float32), sr)
        total += seconds
        i += 1
    return total


def one_at_a_time(model: rvqgan.Codec, folder: Path, device: str) -> float:
    start = time.perf_counter()
    for source in list_sources([str(folder)]):
        audio, _, _ = load_resampled(source.path, model.sample_rate)
        with torch.no_grad():
            model.encode(torch.from_numpy(audio)[:, None].to(device)).cpu()
    return time.perf_counter() - start


def batched(
    model: rvqgan.Codec, folder: Path, out: Path, device: str, batch_seconds: float, window: float | None, workers: int
) -> float:
    start = time.perf_counter()
    tokenize(
        model, "bench", [str(folder)], out, batch_seconds=batch_seconds, window_seconds=window, workers=workers, device=device
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,44khz_8kbps")
    parser.add_argument("--minutes", type=float, default=3.0, help="audio per model's corpus (default 3 minutes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--window-seconds", type=float, help="default: tokenize's (whole items on a CPU, 5 s on a GPU)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", "--output", help="append the results as JSON lines to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        seconds = write_corpus(corpus, args.minutes)
        for name in args.models.split(","):
            model = rvqgan.load_model("default") if name == "default" else rvqgan.build_model(name)
            model = model.folded(args.precision).to(args.device)
            single = one_at_a_time(model, corpus, args.device)
            batch = batched(
                model, corpus, Path(tmp) / f"out-{name}", args.device, args.batch_seconds, args.window_seconds, args.workers
            )
            result = {
                "model": name,
                "device": args.device,
                "precision": args.precision,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": args.threads,
                "loader_workers": args.workers,
                "batch_seconds": args.batch_seconds,
                "window_seconds": args.window_seconds if args.window_seconds is not None else "auto",
                "audio_seconds": round(seconds, 1),
                "one_at_a_time_s": round(single, 2),
                "batched_s": round(batch, 2),
                "one_at_a_time_audio_hours_per_hour": round(seconds / single, 1),
                "batched_audio_hours_per_hour": round(seconds / batch, 1),
                "speed_up": round(single / batch, 2),
            }
            if args.device.startswith("cuda"):
                result["gpu"] = torch.cuda.get_device_name()
            print(json.dumps(result))
            results.append(result)
    if args.output:
        with open(args.output, "a") as f:
            for result in results:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
