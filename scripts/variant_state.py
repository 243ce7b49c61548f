"""The commit-sized state of a recipe-variant run (see scripts/recipe_variants.sh and training/RECIPES.md).

    python scripts/variant_state.py runs/variants/lr3x training/variants/lr3x [--dc-folder ../shared/data/train]
    python scripts/variant_state.py runs/long training/long --metrics-name metrics_segment3.jsonl

Writes into OUT: `generator.safetensors` (the run's latest generator, or its average when it keeps
one, exported as it is evaluated: fp16 with the decoder's DC offset removed), `discriminator.safetensors`
(with its config)
and the run's metrics (`metrics.jsonl`, or the name `--metrics-name` gives, so that each segment of a
run continued from committed state keeps its own log). The optimiser state is not kept (it is larger than the weights), so a run
continued from these files is a new run, not an exact resume; `step.txt` says where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rvqgan.checkpoint import load_training_checkpoint, save_discriminator  # noqa: E402
from rvqgan.config import DiscriminatorConfig, from_dict  # noqa: E402
from rvqgan.train import export_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the variant's out_dir (holds checkpoints/latest.pt and metrics.jsonl)")
    parser.add_argument("out", type=Path, help="folder to write (e.g. training/variants/NAME)")
    parser.add_argument(
        "--dc-folder", default=str(ROOT.parent / "shared" / "data" / "train"), help="training audio for the DC offset"
    )
    parser.add_argument("--metrics-name", default="metrics.jsonl", help="file name of the metrics copy in OUT")
    args = parser.parse_args()
    if Path(args.metrics_name).name != args.metrics_name:
        parser.error(f"--metrics-name must be a file name, not a path: {args.metrics_name}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # A copy: the run rewrites latest.pt as it goes, and every file written here must come from one step.
        checkpoint = Path(tmp) / "latest.pt"
        shutil.copy(args.run / "checkpoints" / "latest.pt", checkpoint)
        write_state(checkpoint, args)


def write_state(checkpoint: Path, args: argparse.Namespace) -> None:
    for stale in ("ema.safetensors",):  # an older layout kept the average separately
        (args.out / stale).unlink(missing_ok=True)
    export_weights(checkpoint, args.out / "generator.safetensors", torch.float16, dc_folder=args.dc_folder)
    state = load_training_checkpoint(checkpoint)
    config = from_dict(DiscriminatorConfig, json.loads(state["config"])["discriminator"], "discriminator")
    save_discriminator(state["discriminator"], config, args.out / "discriminator.safetensors")
    shutil.copy(args.run / "metrics.jsonl", args.out / args.metrics_name)
    (args.out / "step.txt").write_text(f"{state['step']}\n")
    print(f"{args.out}: step {state['step']}")


if __name__ == "__main__":
    main()
