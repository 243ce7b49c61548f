"""How far the bf16 inference path is from fp32 on a trained model: codes and decoded audio.

For each file: encode with `Codec.folded("fp32")` and `Codec.folded("bf16")`, report the share of
frames whose codes agree in every codebook, and the SNR against the fp32 decode of the bf16 path end to
end and of the bf16 decoder given the fp32 codes (decoder precision alone).

    python benchmarks/bf16_accuracy.py --seconds 2 ../shared/data/valid/speech/sb-spk2_snt1.wav ...
"""

from __future__ import annotations

import argparse

import torch

from rvqgan.audio import load_audio, resample
from rvqgan.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_model(args.model)
    fp32, bf16 = base.folded("fp32"), base.folded("bf16")
    for path in args.files:
        audio, rate = load_audio(path)
        mono = (audio.mean(0) if audio.ndim == 2 else audio)[: int(args.seconds * rate)]
        x = torch.from_numpy(resample(mono[None], rate, base.sample_rate))[None]
        with torch.no_grad():
            c32, c16 = fp32.encode(x), bf16.encode(x)
            y32, y16 = fp32.decode(c32).float(), bf16.decode(c16).float()
            y16_same = bf16.decode(c32).float()
        frames = (c32 == c16).all(dim=1).float().mean().item()
        codes = (c32 == c16).float().mean().item()

        def snr(y: torch.Tensor, ref: torch.Tensor = y32) -> float:
            return 10 * torch.log10(ref.pow(2).sum() / (ref - y).pow(2).sum().clamp(min=1e-20)).item()

        print(
            f"{path}: frames with identical codes {100 * frames:.1f} %, codes identical {100 * codes:.1f} %, "
            f"SNR vs fp32: end to end {snr(y16):.1f} dB, bf16 decoder on the fp32 codes {snr(y16_same):.1f} dB"
        )


if __name__ == "__main__":
    main()
