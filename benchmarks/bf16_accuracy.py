"""What bf16 inference costs against fp32 on real audio: codes that differ, and the quality of the round trip.

Every file under `--data` (its sub-folders are the groups, as in `rvqgan eval`) is cut to its loudest
`--seconds`, coded by `Codec.folded("fp32")` and `Codec.folded("bf16")` and decoded back to the file's
own rate, in each pairing of encoder and decoder precision:

- `fp32`: both fp32 (the reference); `bf16`: both bf16; `bf16-encode`: bf16 codes, fp32 decoder;
  `bf16-decode`: fp32 codes, bf16 decoder; `bf16-decode-all`: fp32 codes, a decoder with every layer
  in bf16 (the output-rate tail too, which `Decoder.to_bf16` keeps in fp32).

Each is scored as `rvqgan eval` scores a system (`evaluate.score`: ViSQOL audio at 48 kHz, speech mode
on speech, mel and STFT distances, SI-SDR, pitch on speech), and each metric of each system is
compared with fp32's by the paired difference over items (`evaluate.paired`: mean and 95 % bootstrap
interval). The fp32 round trip is deterministic, so its run-to-run spread is zero: an interval that
excludes zero on the wrong side is a real cost. Also the share of codes (per codebook and overall)
that bf16 encoding changes. One JSON line (with `precision.describe()`) is appended to `--results`.

    python benchmarks/bf16_accuracy.py --data ../shared/data/valid --model default
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from rvqgan import precision
from rvqgan.audio import resample
from rvqgan.evaluate import PITCH_GROUPS, load_items, paired, score
from rvqgan.loading import load_model

SYSTEMS = ("fp32", "bf16", "bf16-encode", "bf16-decode", "bf16-decode-all")
METRICS = ("visqol_audio", "visqol_speech", "mel", "stft", "si_sdr", "f0_rmse_cents", "voicing_error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of audio; sub-folders are groups")
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-visqol", action="store_true")
    parser.add_argument("--results", default="benchmarks/results_bf16_accuracy.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    base = load_model(args.model)
    fp32, bf16 = base.folded("fp32"), base.folded("bf16")
    all_bf16 = base.folded("fp32")
    all_bf16.decoder.to(torch.bfloat16)  # every layer, without `to_bf16`'s fp32 tail
    rows, agree = [], []
    items = load_items(args.data, args.seconds)
    for k, item in enumerate(items):
        x = torch.from_numpy(_resample(item.audio, item.sample_rate, base.sample_rate))[None, None]
        with torch.no_grad():
            c32, c16 = fp32.encode(x), bf16.encode(x)
            decoded = {
                "fp32": fp32.decode(c32),
                "bf16": bf16.decode(c16),
                "bf16-encode": fp32.decode(c16),
                "bf16-decode": bf16.decode(c32),
                "bf16-decode-all": all_bf16.decode(c32),
            }
        agree.append((c32 == c16).float().mean(-1)[0].numpy())
        speech = item.group.lower().startswith("speech")
        pitch = item.group.lower().startswith(PITCH_GROUPS)
        for system, y in decoded.items():
            est = _resample(y[0, 0, : x.shape[-1]].float().numpy(), base.sample_rate, item.sample_rate)[: len(item.audio)]
            est = np.pad(est, (0, len(item.audio) - len(est)))
            row = {"item": item.name, "group": item.group, "system": system}
            row.update(score(item.audio, est, item.sample_rate, speech, not args.no_visqol, pitch))
            rows.append(row)
        print(f"{k + 1}/{len(items)} {item.name}: codes identical {100 * agree[-1].mean():.1f} %", file=sys.stderr)
    groups = sorted({r["group"] for r in rows})
    comparisons = [
        paired(rows, system, "fp32", metric, scope)
        for system in SYSTEMS[1:]
        for metric in METRICS
        for scope in ["overall", *groups]
        if any(r.get(metric) is not None for r in rows if r["system"] == system and (scope == "overall" or r["group"] == scope))
    ]
    per_codebook = np.mean(agree, 0)
    result = {
        "model": args.model,
        "data": args.data,
        "seconds": args.seconds,
        "n_items": len(items),
        "machine": precision.describe(),
        "codes_identical": {"overall": float(per_codebook.mean()), "per_codebook": [round(float(a), 4) for a in per_codebook]},
        "means": {s: {m: _mean(rows, s, m) for m in METRICS} for s in SYSTEMS},
        "comparisons": comparisons,
        "elapsed_s": round(time.time() - t0, 1),
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(f"codes identical: {100 * per_codebook.mean():.1f} % (per codebook: {np.round(100 * per_codebook, 1).tolist()})")
    for c in comparisons:
        if c["scope"] == "overall":
            mark = " *" if c["excludes_zero"] else ""
            print(f"{c['a']:>16} - fp32  {c['metric']:14} {c['mean_diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]{mark}")


def _resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    return resample(audio[None], rate, to)[0]


def _mean(rows: list[dict], system: str, metric: str) -> float | None:
    values = [r[metric] for r in rows if r["system"] == system and r.get(metric) is not None]
    return float(np.mean(values)) if values else None


if __name__ == "__main__":
    main()
