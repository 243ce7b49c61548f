"""Does the streaming decoder keep up with real time? Wall-clock per pushed chunk against the chunk's duration.

Codes of `--seconds` of audio are pushed `--chunk-frames` at a time into a `StreamingDecoder`
(any backend of `rvqgan.backends.BACKENDS`); every push is timed. Real time is kept when every push takes
less than the audio it adds. The decoder's stated latency is `(chunk + context)` frames.

    python benchmarks/streaming_latency.py --model default --chunk-frames 8 --backend torch
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import rvqgan
from rvqgan.allocator import reuse_freed_memory
from rvqgan.backends import BACKENDS
from rvqgan.streaming import StreamingDecoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--chunk-frames", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the CLI does
    model = rvqgan.load_model(args.model, backend=args.backend)
    model = model if args.backend != "torch" else model.folded()
    audio = 0.1 * torch.randn(1, 1, int(args.seconds * model.sample_rate))
    with torch.no_grad():
        codes = model.encode(audio)
    decoder = StreamingDecoder(model, chunk_frames=args.chunk_frames)
    with torch.no_grad():  # warm-up: the first pushes (a compiling backend compiles for their shapes)
        for i in range(0, 10 * args.chunk_frames, args.chunk_frames):
            decoder.push(codes[..., i : i + args.chunk_frames])
    decoder = StreamingDecoder(model, chunk_frames=args.chunk_frames)
    times, produced = [], []
    with torch.no_grad():
        for i in range(0, codes.shape[-1], args.chunk_frames):
            t = time.perf_counter()
            out = decoder.push(codes[..., i : i + args.chunk_frames])
            times.append(time.perf_counter() - t)
            produced.append(out.shape[-1])
    chunk_seconds = args.chunk_frames / model.frame_rate
    steady = np.array(times[5:])  # after the first pushes fill the context
    result = {
        "model": args.model,
        "backend": args.backend,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "chunk_frames": args.chunk_frames,
        "chunk_seconds": round(chunk_seconds, 4),
        "latency_seconds": round(decoder.latency_frames / model.frame_rate, 4),
        "push_seconds_median": round(float(np.median(steady)), 4),
        "push_seconds_p95": round(float(np.percentile(steady, 95)), 4),
        "push_seconds_max": round(float(steady.max()), 4),
        "real_time_factor_median": round(float(np.median(steady)) / chunk_seconds, 3),
        "keeps_up": bool(np.percentile(steady, 95) < chunk_seconds),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
