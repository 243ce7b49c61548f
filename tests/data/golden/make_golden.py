"""Regenerate the golden `.rvq` files that `tests/test_files.py` compares byte for byte.

The files pin the `.rvq` bytes the code writes for a fixed input and fixed weights: a change that
alters them changes the file format and needs a new format version, not new golden files.
Run from the repository root: `python tests/data/golden/make_golden.py`.
"""

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from rvqgan import build_model, load_model, save_model
from rvqgan.files import compress_file

HERE = Path(__file__).parent


def main() -> None:
    torch.manual_seed(0)
    save_model(build_model("tiny"), HERE / "tiny.safetensors")
    rng = np.random.default_rng(0)
    t = np.arange(int(0.75 * 22050)) / 22050
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)
    stereo = np.stack([audio, np.roll(audio, 100)], axis=1).astype(np.float32)
    sf.write(HERE / "tone.wav", stereo, 22050, subtype="PCM_16")
    model = load_model(HERE / "tiny.safetensors")
    for name, kwargs in {"plain": {}, "normalized": {"normalize_db": -20.0, "n_codebooks": 2, "chunk_seconds": 0.1}}.items():
        buf = io.BytesIO()
        compress_file(model, HERE / "tone.wav", buf, model_name="tiny", **kwargs)
        (HERE / f"{name}.rvq").write_bytes(buf.getvalue())


if __name__ == "__main__":
    main()
