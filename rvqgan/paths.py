"""Where things live on disk: the bundled weights and the per-user cache.

The ground floor of the package (it imports nothing of it), so every layer that keeps files —
the release downloads (`hub`), converted presets (`loading`), the ONNX Runtime graphs
(`backends.ort`) — asks the same place.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"
# The discriminator the default model was trained with: fine-tuning `default` starts from it.
DEFAULT_DISCRIMINATOR = DEFAULT_WEIGHTS.with_name("default.discriminator.safetensors")


def model_dir() -> Path:
    """The model cache: $RVQGAN_HOME or ~/.cache/rvqgan.

    It holds converted releases (`NAME.safetensors`), weights of presets that `load_model(<preset
    name>)` looks up as `<preset>.safetensors`, and the ONNX graphs of the onnxruntime backend.
    """
    return Path(os.environ.get("RVQGAN_HOME", Path.home() / ".cache" / "rvqgan"))
