"""Speed experiments on the torch path, each against the plain folded model in the same process.

Kept as a record of what was tried to speed up inference and what it measured, so that a reader can
re-run it on another CPU:

- `compile`: `torch.compile` of the folded encoder and decoder (the compile time is reported);
- `chunk N`: the chunk-exact coders of the file pipeline (`encode_chunked`, `StreamingDecoder`)
  with N frames per forward pass, against one pass over the whole signal;
- `fused snake`: Snake as one `torch.compile`d elementwise kernel (`layers.fuse_snake`, what
  training uses), compile time reported;

All with `rvqgan.allocator.reuse_freed_memory()` applied, as the CLI does; 10 s of noise at the
model's rate, batch 1. A shared machine's speed drifts by tens of percent within minutes, so each
variant is timed interleaved with the baseline (baseline, variant, baseline, variant, ...) and the
fastest of `--repeats` of each is reported side by side.

    python benchmarks/speed_experiments.py --preset default
    python benchmarks/speed_experiments.py --preset 44khz_8kbps --skip compile
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import folded_with_audio, one_model_parser  # noqa: E402


def interleaved(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """The fastest of `repeats` timings of each of `fns`, run in turn so that drift hits all alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    parser = one_model_parser(__doc__)
    parser.add_argument("--chunks", default="128,256,512,1024", help="frames per pass for the chunked coders")
    parser.add_argument("--skip", default="", help="comma-separated: chunk, fused-snake, compile")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    model, audio = folded_with_audio(args)

    from rvqgan.streaming import StreamingDecoder, encode_chunked

    def report(name: str, encode: Callable[[], object], decode: Callable[[], object], baseline: str = "whole") -> None:
        """Time `encode` and `decode` interleaved with the baseline's; print both and the ratio."""
        base_encode, base_decode = baselines[baseline]
        enc0, enc, dec0, dec = interleaved([base_encode, encode, base_decode, decode], args.repeats)
        rtf0, rtf = (enc0 + dec0) / args.seconds, (enc + dec) / args.seconds
        print(f"{name:<22}{enc / args.seconds:>9.4f}{dec / args.seconds:>9.4f}{rtf:>9.4f}{rtf0:>11.4f}{rtf0 / rtf:>9.2f}x")

    print(f"{args.preset}, {args.seconds:g} s, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'variant':<22}{'enc RTF':>9}{'dec RTF':>9}{'total':>9}{'baseline':>11}{'speed-up':>9}")
    with torch.no_grad():
        codes = model.encode(audio)
        latents = model.codes_to_latents(codes)
        baselines = {
            "whole": (lambda: model.encode(audio), lambda: model.decode(codes)),
            "nets": (lambda: model.encoder(audio), lambda: model.decoder(latents)),
        }
        if "chunk" not in skip:
            for frames in map(int, args.chunks.split(",")):

                def decode_chunked(frames: int = frames) -> torch.Tensor:
                    coder = StreamingDecoder(model, frames, batch=1)
                    return torch.cat([coder.push(codes), coder.flush()], dim=-1)

                report(f"chunk {frames}", lambda frames=frames: encode_chunked(model, audio, chunk_frames=frames), decode_chunked)
        if "fused-snake" not in skip:
            from rvqgan import layers

            t = time.perf_counter()
            layers.fuse_snake(True)
            model.decode(model.encode(audio))
            print(f"(fusing Snake took {time.perf_counter() - t:.0f} s)")
            fused, layers._fused_snake = layers._fused_snake, None

            def with_fused(fn: Callable[[], object]) -> Callable[[], object]:
                def run() -> object:
                    layers._fused_snake = fused
                    try:
                        return fn()
                    finally:
                        layers._fused_snake = None

                return run

            report("fused snake", with_fused(lambda: model.encode(audio)), with_fused(lambda: model.decode(codes)))
        if "compile" not in skip:
            t = time.perf_counter()
            encoder = torch.compile(model.encoder, dynamic=False)
            decoder = torch.compile(model.decoder, dynamic=False)
            encoder(audio), decoder(latents)
            print(f"(compile took {time.perf_counter() - t:.0f} s)")
            report("compile (nets only)", lambda: encoder(audio), lambda: decoder(latents), baseline="nets")


if __name__ == "__main__":
    main()
