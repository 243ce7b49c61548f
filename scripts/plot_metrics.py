"""Plot training curves from one or more runs' metrics.jsonl into a PNG.

python scripts/plot_metrics.py runs/gpu1/metrics.jsonl runs/cpu2/metrics.jsonl -o curves.png
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Names the trainer logged before the loss dict had one key per loss weight.
OLD_NAMES = {
    "loss/adv_g": "loss/adversarial",
    "loss/feature": "loss/feature_matching",
    "vq/commitment": "loss/commitment",
    "vq/codebook": "loss/codebook",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("metrics", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--offsets", type=int, nargs="*", help="step offset per file (to chain runs)")
    args = parser.parse_args()
    keys = [
        ("loss/mel", "mel loss (train)"),
        ("loss/adversarial", "adversarial (G)"),
        ("loss/feature_matching", "feature matching"),
        ("loss/d", "discriminator"),
        ("loss/commitment", "commitment"),
        ("valid/mel", "mel distance (valid)"),
        ("valid/bitrate_efficiency", "bitrate efficiency (valid)"),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    offsets = args.offsets or [0] * len(args.metrics)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (path, offset) in enumerate(zip(args.metrics, offsets)):
        colour = colours[index % len(colours)]  # one colour per file in every panel
        label = "/".join(path.split("/")[-2:]).removesuffix(".jsonl")
        rows = [{OLD_NAMES.get(k, k): v for k, v in json.loads(line).items()} for line in open(path)]
        for ax, (key, title) in zip(axes.flat, keys):
            pts = [(r["step"] + offset, r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=label, color=colour)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
        usage = [
            (r["step"] + offset, [v for k, v in sorted(r.items()) if k.startswith("codebook/") and k.endswith("/perplexity")])
            for r in rows
            if any(k.startswith("codebook/") for k in r)
        ]
        if usage:
            ax = axes.flat[7]
            for i in range(len(usage[-1][1])):
                ax.plot([u[0] for u in usage], [u[1][i] for u in usage], marker=".")
            ax.set_title("codebook perplexity (valid), one line per codebook", fontsize=10)
            ax.grid(alpha=0.3)
    for ax in axes.flat[:7]:
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=80)


if __name__ == "__main__":
    main()
