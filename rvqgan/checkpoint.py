"""Model weights on disk: our safetensors format, and safe import of official DAC `.pth` files.

Our checkpoint is one `.safetensors` file. Its metadata holds the format version, the
complete `ModelConfig` as JSON and a SHA-256 of the tensors, so a file whose weights do not
match its config, or whose bytes were altered, is refused with a clear message. Nothing here
ever unpickles arbitrary objects: official checkpoints are read with
`torch.load(weights_only=True)`, which admits only tensors and plain containers.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from .config import PRESET_ALIASES, PRESETS, ConfigError, ModelConfig, from_dict
from .model import Codec

FORMAT_NAME = "rvqgan"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def model_dir() -> Path:
    """Where `load_model(<preset name>)` looks for `<preset>.safetensors`: $RVQGAN_HOME or ~/.cache/rvqgan."""
    return Path(os.environ.get("RVQGAN_HOME", Path.home() / ".cache" / "rvqgan"))


def tensors_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of all tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def config_digest(config: ModelConfig) -> str:
    """Short hash of the architecture; identifies which model made a code file."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(path: Path, write) -> None:
    """Call `write(tmp)` on a temporary path beside `path` (same suffix), then rename it into place."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    _atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError: header or data not readable
        raise CheckpointError(
            f"{path}: not a valid safetensors checkpoint (truncated, corrupted or another format: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    return state, metadata


def _config_from_json(text: str, where: Path) -> ModelConfig:
    try:
        return from_dict(ModelConfig, json.loads(text), "model")
    except (json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{where}: bad model config in checkpoint: {exc}") from None


def _check_state_dict(model: Codec, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} with wrong shape (e.g. {k}: {list(state[k].shape)} vs {list(expected[k].shape)})")
    if problems:
        raise CheckpointError(f"{where}: weights do not match the model config: " + "; ".join(problems))


def _build(config: ModelConfig, state: dict[str, torch.Tensor], where: Path, device: str | torch.device) -> Codec:
    model = Codec(config)
    _check_state_dict(model, state, where)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.to(device).eval()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Codec:
    """Load one of our `.safetensors` checkpoints, verifying format, config and tensor hash."""
    path = Path(path)
    state, metadata = _read_safetensors(path)
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an rvqgan checkpoint (no '{FORMAT_NAME}' format tag in its metadata)")
    version = metadata.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {version} is not supported (this is version {FORMAT_VERSION})")
    if "config" not in metadata:
        raise CheckpointError(f"{path}: checkpoint has no model config")
    digest = metadata.get("sha256")
    if digest != tensors_digest(state):
        raise CheckpointError(f"{path}: weights were modified or corrupted (SHA-256 does not match the one recorded)")
    return _build(_config_from_json(metadata["config"], path), state, path, device)


def read_dac_pth(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read an official DAC checkpoint (`{"state_dict", "metadata": {"kwargs"}}`) without unpickling objects."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects other than tensors and plain values ({first[:120]})"
        ) from None
    except Exception as exc:  # RuntimeError, EOFError, zipfile errors on truncated/non-torch files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        ) from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path}: not a DAC checkpoint (expected a dict with 'state_dict' and 'metadata')")
    kwargs: dict[str, Any] = dict((data.get("metadata") or {}).get("kwargs") or {})
    allowed = {f.name for f in fields(ModelConfig)}
    cfg = {k: v for k, v in kwargs.items() if k in allowed and k != "quantizer_dropout"}
    # The released files store quantizer_dropout as the bool default False; keep ours unless it is a real fraction.
    qd = kwargs.get("quantizer_dropout")
    if isinstance(qd, float) and not isinstance(qd, bool):
        cfg["quantizer_dropout"] = qd
    try:
        config = from_dict(ModelConfig, cfg, "model")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad model kwargs in metadata: {exc}") from None
    state = {}
    for k, v in data["state_dict"].items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {k!r} is not a tensor")
        # Newer torch weight-norm parametrisation names → the legacy names the model uses.
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        state[k] = v
    return config, state


def load_dac_pth(path: str | Path, device: str | torch.device = "cpu") -> Codec:
    """An official DAC `.pth` checkpoint as a `Codec` (strict: no missing or extra keys)."""
    config, state = read_dac_pth(path)
    return _build(config, state, Path(path), device)


def load_model(source: str | Path = "default", device: str | torch.device = "cpu") -> Codec:
    """Load a codec in eval mode.

    Args:
        source: "default" (the bundled model); a preset name (its converted weights are looked
            up in `model_dir()`); a path to one of our `.safetensors` checkpoints; or a path to
            an official DAC `.pth` file.
    """
    name = str(source)
    key = PRESET_ALIASES.get(name, name)
    if name == "default":
        if not DEFAULT_WEIGHTS.exists():
            raise CheckpointError("no default model is bundled with this installation")
        return load_checkpoint(DEFAULT_WEIGHTS, device)
    if key in PRESETS and not Path(name).exists():
        path = model_dir() / f"{key}.safetensors"
        if not path.exists():
            raise CheckpointError(
                f"no weights for preset {key!r} in {model_dir()}: convert released DAC weights with "
                f"`rvqgan import-dac weights.pth {path}` (or use rvqgan.build_model({key!r}) for an untrained model)"
            )
        return load_checkpoint(path, device)
    path = Path(name)
    if not path.exists():
        raise CheckpointError(f"{name}: no such model file, and not a preset ({', '.join(['default', *sorted(PRESETS)])})")
    if path.is_dir():
        raise CheckpointError(f"{name}: is a directory, expected a .safetensors or .pth file")
    if path.suffix in (".pth", ".pt", ".ckpt"):
        return load_dac_pth(path, device)
    return load_checkpoint(path, device)
