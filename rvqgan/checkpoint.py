"""Model weights on disk: our safetensors format, and `load_model`, which finds and loads any model.

Our checkpoint is one `.safetensors` file (no pickle). Its metadata holds the format
version, the complete `ModelConfig` as JSON and a SHA-256 of the tensors, so a file whose
weights do not match its config, or whose bytes were altered, is refused with a clear
message. Official DAC `.pth` files are read by `dac_compat.load_dac_pth` (with
`torch.load(weights_only=True)`, never a free unpickling).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import PRESET_ALIASES, PRESETS, ConfigError, ModelConfig, from_dict
from .dac_compat import load_dac_pth
from .fileio import atomic_write
from .model import CheckpointError, Codec, build_from_state_dict, check_state_shapes, tensors_digest

FORMAT_NAME = "rvqgan"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"


def model_dir() -> Path:
    """Where `load_model(<preset name>)` looks for `<preset>.safetensors`: $RVQGAN_HOME or ~/.cache/rvqgan."""
    return Path(os.environ.get("RVQGAN_HOME", Path.home() / ".cache" / "rvqgan"))


# `ModelConfig` fields that only change training, not the function the codec computes.
TRAINING_ONLY_FIELDS = ("quantizer_dropout",)


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def config_digest(config: ModelConfig) -> str:
    """Short hash (16 hex digits) of the architecture: every `ModelConfig` field except `TRAINING_ONLY_FIELDS`.

    Written into every code file, it says which network made the codes; two models that differ
    only in training settings code alike and share it.
    """
    return _digest({k: v for k, v in config.to_dict().items() if k not in TRAINING_ONLY_FIELDS})


def digest_matches(digest: str, config: ModelConfig) -> bool:
    """Whether a code file's digest names `config`'s architecture.

    `output_padding` changes only the decoder's last few samples, not the codes, so a file made
    with either value matches. Files written before the digest left training settings out carry
    the hash of the whole config; they are accepted too.
    """
    accepted = set()
    for output_padding in (True, False):
        variant = dataclasses.replace(config, output_padding=output_padding)
        accepted |= {config_digest(variant), _digest(variant.to_dict())}
    return digest in accepted


def save_model(model: Codec, path: str | Path, *, dtype: torch.dtype | None = None, extra: dict[str, str] | None = None) -> Path:
    """Write `model`'s weights and config to one `.safetensors` file, atomically.

    Args:
        dtype: store floating tensors in this dtype (e.g. `torch.float16` to halve the size).
        extra: additional string metadata (e.g. training provenance).
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "sha256": tensors_digest(state),
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    return path


def _safetensors_error(path: Path, exc: Exception) -> CheckpointError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CheckpointError(f"{path}: not a valid safetensors checkpoint (truncated, corrupted or another format: {reason})")


def _config_from_json(text: str, where: Path) -> ModelConfig:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{where}: bad model config in checkpoint: not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: bad model config in checkpoint: expected a JSON object, got {type(data).__name__}")
    try:
        return from_dict(ModelConfig, data, "model")
    except (ConfigError, RecursionError) as exc:
        raise CheckpointError(f"{where}: bad model config in checkpoint: {exc}") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Codec:
    """Load one of our `.safetensors` checkpoints, verifying format, config and tensor hash.

    Everything that can be checked from the file's header is checked before any tensor is
    read: the format tag and version, the config (bounded, see `config.MODEL_LIMITS`), and
    the tensor names and shapes against that config. Then the tensors are read and their
    SHA-256 compared with the one recorded.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{path}: not an rvqgan checkpoint (no '{FORMAT_NAME}' format tag in its metadata)")
            version = metadata.get("format_version", "?")
            if version != str(FORMAT_VERSION):
                raise CheckpointError(
                    f"{path}: checkpoint format version {version[:20]} is not supported (this is version {FORMAT_VERSION})"
                )
            if "config" not in metadata:
                raise CheckpointError(f"{path}: checkpoint has no model config")
            config = _config_from_json(metadata["config"], path)
            check_state_shapes(config, {k: f.get_slice(k).get_shape() for k in f.keys()}, path)
            state = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # SafetensorError, OSError: header or data not readable
        raise _safetensors_error(path, exc) from None
    digest = metadata.get("sha256")
    if digest != tensors_digest(state):
        raise CheckpointError(f"{path}: weights were modified or corrupted (SHA-256 does not match the one recorded)")
    return build_from_state_dict(config, state, path, device, digest=digest)


TRAINING_FORMAT = "rvqgan-train"
TRAINING_VERSION = 1


def save_training_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write a trainer's state (tensors and plain values) atomically, tagged with its format and version."""
    tagged = {"format": TRAINING_FORMAT, "version": TRAINING_VERSION, **state}
    atomic_write(Path(path), lambda tmp: torch.save(tagged, tmp))


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint as a dict (tensors and plain values only; never arbitrary objects)."""
    import pickle

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: unreadable training checkpoint ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path}: not an rvqgan training checkpoint")
    if state.get("version") != TRAINING_VERSION:
        raise CheckpointError(f"{path}: training checkpoint version {state.get('version')} is not supported")
    return state


def is_model_name(name: str) -> bool:
    """Whether `name` is a model `load_model` knows by name ("default", a release, a preset), not a path."""
    from .hub import OFFICIAL

    return name == "default" or name in OFFICIAL or PRESET_ALIASES.get(name, name) in PRESETS


def load_model(
    source: str | Path = "default", device: str | torch.device = "cpu", *, paths: bool = True, backend: str = "torch"
) -> Codec:
    """Load a codec in eval mode.

    With a `backend` other than "torch" (`backend.BACKENDS`: "compile", "onnxruntime") the model
    comes folded, its encoder and decoder run by that backend (`backend.with_backend`);
    everything that takes a `Codec` uses it.
    """
    from .backend import check_backend, with_backend

    check_backend(backend, torch.device(device))
    model = _load_torch(source, device, paths)
    return model if backend == "torch" else with_backend(model.folded(), backend)


def _load_torch(source: str | Path, device: str | torch.device, paths: bool) -> Codec:
    """`load_model`'s sources, as a torch model.

    Args:
        source: "default" (the bundled model); a release of the paper's weights ("dac_44khz",
            "dac_44khz_16kbps", "dac_24khz", "dac_16khz": downloaded once into `model_dir()`, see
            `hub`); "hf:REPO_ID[@REVISION]" (a transformers `DacModel` on the Hugging Face Hub); a
            preset name (its converted weights are looked up in `model_dir()`); a path to one of
            our `.safetensors` checkpoints, to an official DAC `.pth` file, or to a folder in the
            `DacModel` layout (config.json + model.safetensors).
        paths: with False, only names are accepted and no path is opened (for names read
            from untrusted files, such as a code file's header).
    """
    from .hub import HF_PREFIX, OFFICIAL, fetch_official, is_hf_folder, load_hf, load_hf_folder

    name = str(source)
    key = PRESET_ALIASES.get(name, name)
    if not paths and not is_model_name(name):
        raise CheckpointError(f"{name[:80]!r} is not a model name ({', '.join(['default', *OFFICIAL, *sorted(PRESETS)])})")
    if name == "default":
        if not DEFAULT_WEIGHTS.exists():
            raise CheckpointError("no default model is bundled with this installation")
        return load_checkpoint(DEFAULT_WEIGHTS, device)
    if name in OFFICIAL and (not paths or not Path(name).exists()):
        return load_checkpoint(fetch_official(name), device)
    if name.startswith(HF_PREFIX) and paths:
        return load_hf(name, device)
    if key in PRESETS and (not paths or not Path(name).exists()):
        path = model_dir() / f"{key}.safetensors"
        if not path.exists():
            raise CheckpointError(
                f"no weights for preset {key!r} in {model_dir()}: convert released DAC weights with "
                f"`rvqgan import-dac weights.pth {path}` (or use rvqgan.build_model({key!r}) for an untrained model)"
            )
        return load_checkpoint(path, device)
    path = Path(name)
    if not path.exists():
        raise CheckpointError(
            f"{name}: no such model file, and not a model name ({', '.join(['default', *OFFICIAL, *sorted(PRESETS)])})"
        )
    if is_hf_folder(path):
        return load_hf_folder(path, device)
    if path.is_dir():
        raise CheckpointError(
            f"{name}: is a directory, expected a .safetensors or .pth file, or a folder with config.json and model.safetensors"
        )
    if path.suffix in (".pth", ".pt", ".ckpt"):
        return load_dac_pth(path, device)
    return load_checkpoint(path, device)
