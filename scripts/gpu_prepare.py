"""Prepare what a GPU burst (scripts/gpu_burst.sh) needs on the GPU machine, under .cache/gpu/.

- data/{speech,music,general}/: 24 kHz mono 16-bit FLAC excerpts of the training files (the
  selection split held out by rvqgan/configs/cpu.yaml is left out), within a size budget shared out
  by the recipe's group weights (`--megabytes`), so the copy stays small;
- wheels/: the pure-Python and manylinux wheels the package needs besides torch.

python scripts/gpu_prepare.py [--megabytes 48]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rvqgan.audio import load_audio, loudest_window, resample  # noqa: E402
from rvqgan.config import load_train_config  # noqa: E402
from rvqgan.data import holdout_split  # noqa: E402

RATE = 24000
BYTES_PER_SECOND = 30_000  # 16-bit FLAC of 24 kHz mono audio, measured on this corpus
WHEELS = ["soundfile", "soxr", "safetensors", "pyyaml", "tqdm"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "cpu.yaml"))
    ap.add_argument("--megabytes", type=float, default=48.0, help="budget for the audio")
    ap.add_argument("--out", default=str(ROOT / ".cache" / "gpu"))
    args = ap.parse_args()
    cfg = load_train_config(args.config)
    train, held = holdout_split({k: list(v) for k, v in cfg.data.groups.items()}, cfg.data.holdout_fraction)
    weights = {g: cfg.data.weights.get(g, 1.0) for g in train}
    total_seconds = args.megabytes * 2**20 / BYTES_PER_SECOND
    out = Path(args.out)
    for group, files in train.items():
        seconds = total_seconds * weights[group] / sum(weights.values())
        per_file = seconds / max(1, len(files))
        folder = out / "data" / group
        folder.mkdir(parents=True, exist_ok=True)
        written = 0.0
        for i, path in enumerate(files):
            try:
                audio, sr = load_audio(path)
            except Exception as exc:  # unreadable files are skipped, as the trainer does
                print(f"skip {path}: {exc}", file=sys.stderr)
                continue
            mono = resample(audio.mean(0, keepdims=True), sr, RATE)[0]
            excerpt = loudest_window(mono, int(per_file * RATE))
            sf.write(folder / f"{i:04d}.flac", np.clip(excerpt, -1, 1), RATE, subtype="PCM_16")
            written += len(excerpt) / RATE
        print(f"{group}: {len(files)} files ({len(held[group])} held out), {written / 60:.1f} min of audio")
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels), *WHEELS],
        check=True,
    )
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
