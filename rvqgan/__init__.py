"""rvqgan: the Improved RVQGAN neural audio codec (Kumar et al., 2023), compatible with DAC weights."""

from .checkpoint import CheckpointError, save_model
from .config import PRESETS, ConfigError, ModelConfig, preset
from .loading import load_model
from .model import Codec, CodecOutput, EncodeOutput
from .version import __version__


def build_model(config: "ModelConfig | str") -> Codec:
    """A freshly initialised (untrained) codec from a `ModelConfig` or preset name, in eval mode."""
    cfg = preset(config) if isinstance(config, str) else config
    return Codec(cfg).eval()


__all__ = [
    "Codec",
    "CodecOutput",
    "EncodeOutput",
    "ModelConfig",
    "PRESETS",
    "preset",
    "build_model",
    "load_model",
    "save_model",
    "CheckpointError",
    "ConfigError",
    "__version__",
]
