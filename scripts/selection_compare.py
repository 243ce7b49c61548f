"""Compare training runs on their selection split, item by item, and on their training losses.

Each RUN is `NAME=DIR`, a training run's output folder. Its `latest.safetensors` (the weights that
validation uses: the average when the run kept one) is scored on the fixed validation items of the
first run's recipe (`train.selection_items`: the held-out files of its training data) with the
trainer's own measures (`train.selection_scores`: mel distance and SI-SDR), in fp32 whatever
precision the run trained in. For each `--pair A:B` it prints A − B, mean over items with a 95 %
bootstrap interval (`evaluate.bootstrap_ci`), and, where the two runs saw the same batches (same seed,
data and batch size), the mean of A − B over the logged training-loss intervals (`loss/mel`), with its
interval: the same batches make those differences tell the runs apart, not the data.

    python scripts/selection_compare.py base=runs/precision/base seed1=runs/precision/seed1 \\
        bf16=runs/precision/bf16 bf16_seed1=runs/precision/bf16_seed1 \\
        --pair bf16:base --pair bf16_seed1:seed1 --pair seed1:base
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rvqgan.config import TrainConfig, from_dict
from rvqgan.evaluate import bootstrap_ci
from rvqgan.loading import load_model
from rvqgan.train import selection_items, selection_scores


def _scores(folder: Path, items: list[tuple[str, torch.Tensor]]) -> tuple[int, np.ndarray]:
    """(the step of `folder`'s latest.safetensors, `[items, 2]` mel distance and SI-SDR)."""
    model = load_model(folder / "latest.safetensors").eval()
    from safetensors import safe_open

    with safe_open(str(folder / "latest.safetensors"), "pt") as f:
        step = int((f.metadata() or {}).get("step", -1))
    rows = []
    with torch.no_grad():
        for _, audio in items:
            x = audio[None]
            rows.append(selection_scores(x, model(x).audio, model.sample_rate))
    return step, np.array(rows)


def _losses(folder: Path, key: str = "loss/mel") -> dict[int, float]:
    out = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if key in entry:
            out[entry["step"]] = entry[key]  # a resumed run logs a step again: the last entry counts
    return out


def _interval(diffs: np.ndarray) -> str:
    mean, lo, hi = bootstrap_ci(diffs)
    return f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=DIR")
    parser.add_argument("--pair", action="append", default=[], help="A:B, two run names: prints A − B")
    args = parser.parse_args()
    if not all("=" in run for run in args.runs):
        parser.error("each run is NAME=DIR")
    folders = {name: Path(path) for name, path in (run.split("=", 1) for run in args.runs)}
    pairs = [tuple(pair.split(":")) for pair in args.pair]
    if not all(len(pair) == 2 and set(pair) <= set(folders) for pair in pairs):
        parser.error(f"each --pair is A:B, two of the run names {sorted(folders)}")
    configs = {name: json.loads((folder / "config.json").read_text()) for name, folder in folders.items()}
    first = next(iter(folders))
    items = selection_items(from_dict(TrainConfig, configs[first]))
    print(f"{len(items)} selection items (the recipe of {first})")
    scores = {}
    for name, folder in folders.items():
        step, scores[name] = _scores(folder, items)
        mel, sdr = scores[name].mean(0)
        print(f"{name:>12}  step {step}  mel {mel:.4f}  SI-SDR {sdr:+.3f} dB")
    for a, b in pairs:
        diff = scores[a] - scores[b]
        line = f"{a} − {b}: mel {_interval(diff[:, 0])}, SI-SDR {_interval(diff[:, 1])} dB"
        if all(configs[a][k] == configs[b][k] for k in ("seed", "data", "batch_size")):  # the same batches
            la, lb = _losses(folders[a]), _losses(folders[b])
            steps = sorted(set(la) & set(lb))
            line += f"; training mel loss over {len(steps)} intervals {_interval(np.array([la[s] - lb[s] for s in steps]))}"
        print(line)


if __name__ == "__main__":
    main()
