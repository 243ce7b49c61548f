"""Our weights on disk: one `.safetensors` file per model, and the trainer's checkpoints.

Our checkpoint is one `.safetensors` file (no pickle). Its metadata holds the format
version, the complete `ModelConfig` as JSON and a SHA-256 of the tensors, so a file whose
weights do not match its config, or whose bytes were altered, is refused with a clear
message. `check_state_shapes` and `build_from_state_dict` are the two steps every weight
reader shares (ours, DAC `.pth` in `dac_compat`, the `DacModel` layout in `hub`): check a file's
tensors against its config before building anything of its size, then build the model (refusing
NaN or infinite weights, which would code every input to the same codes).
Finding a model by name or path is `loading.load_model`'s job, one floor up.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ConfigError, DiscriminatorConfig, ModelConfig, from_dict, to_dict
from .fileio import atomic_write
from .identity import tensors_digest
from .model import Codec

FORMAT_NAME = "rvqgan"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """Weights that cannot be loaded; the message names the file and the problem.

    Raised by `build_from_state_dict` and by the readers of weight files (`checkpoint`, `dac_compat`, `hub`).
    """


def check_state_shapes(config: ModelConfig, shapes: Mapping[str, Sequence[int]], where: str | Path) -> None:
    """Raise `CheckpointError` unless tensor names and shapes are exactly those of a `Codec(config)`.

    The model is built on the meta device, so this allocates no weights: a file is checked
    against its config before anything of its size is built.
    """
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Codec(config).state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != tuple(shapes[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} with wrong shape (e.g. {k}: {list(shapes[k])} vs {list(expected[k])})")
    if problems:
        raise CheckpointError(f"{where}: weights do not match the model config: " + "; ".join(problems))


def check_finite(state: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """Raise `CheckpointError` naming the first tensor (in name order) that holds a NaN or an infinity.

    Such weights load and run without complaint but code every input to the same constant codes
    and decode to silence or noise: wrong output with exit status 0, so they are refused at load.
    """
    for name in sorted(state):
        tensor = state[name]
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{where}: weights are damaged: {name} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}"
            )


def build_from_state_dict(
    config: ModelConfig,
    state: dict[str, torch.Tensor],
    where: str | Path,
    device: str | torch.device = "cpu",
    digest: str | None = None,
) -> Codec:
    """A `Codec` of `config` holding `state` (strict: no missing, extra or misshapen tensors), in eval mode on `device`.

    Floating tensors are loaded as float32. `where` names the source in a `CheckpointError`.
    `digest` is `tensors_digest(state)` when the caller has it already; it becomes the
    model's `weights_sha256`. Every weight reader ends here, so this is the one place that
    refuses NaN or infinite weights (`check_finite`), whatever the file's format.
    """
    check_state_shapes(config, {k: v.shape for k, v in state.items()}, where)
    check_finite(state, where)
    model = Codec(config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    model = model.to(device).eval()
    model.set_weights_digest(digest or tensors_digest(state))
    return model


def save_model(model: Codec, path: str | Path, *, dtype: torch.dtype | None = None, extra: dict[str, str] | None = None) -> Path:
    """Write `model`'s weights and config to one `.safetensors` file, atomically.

    Args:
        dtype: store floating tensors in this dtype (e.g. `torch.float16` to halve the size),
            except, for a model that makes another's codes (`Codec.decodes_codes_of`: a fine-tune
            with the encoder and quantizer frozen), those two parts, whose rounding would change
            the codes; they keep their precision.
        extra: additional string metadata (e.g. training provenance).
    """
    path = Path(path)
    state = {}
    exact = ("encoder.", "quantizer.") if model.decodes_codes_of else ()
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point() and not k.startswith(exact):
            v = v.to(dtype)
        state[k] = v
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "sha256": tensors_digest(state),
        **model.provenance(),
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
    model = build_from_state_dict(config, state, path, device, digest=digest)
    set_provenance(model, metadata, path)
    return model


MAX_CODE_SOURCES = 64
PROVENANCE_KEYS = ("finetuned_from", "decodes_codes_of")  # `Codec.provenance`
MAX_PROVENANCE_CHARS = 2000


def set_provenance(model: Codec, record: Any, where: str | Path) -> None:
    """Give `model` the origin `record` holds (`Codec.provenance`'s keys, string values; other keys are
    ignored), checked: a malformed entry is a `CheckpointError` naming `where`."""
    if not isinstance(record, dict):
        raise CheckpointError(f"{where}: bad provenance record (expected an object of strings)")
    finetuned_from = record.get("finetuned_from")
    if finetuned_from is not None and not (isinstance(finetuned_from, str) and len(finetuned_from) <= MAX_PROVENANCE_CHARS):
        raise CheckpointError(
            f"{where}: bad 'finetuned_from' entry in its metadata (expected a string of at most {MAX_PROVENANCE_CHARS} characters)"
        )
    codes_of = record.get("decodes_codes_of", "")
    model.decodes_codes_of = weights_ids(codes_of if isinstance(codes_of, str) else "?", where)
    model.finetuned_from = finetuned_from or None


def weights_ids(text: str, where: str | Path) -> frozenset[str]:
    """The `Codec.weights_id`s of a checkpoint's "decodes_codes_of" entry (comma-separated, 16 hex digits each)."""
    ids = [i for i in text.split(",") if i] if text else []
    if len(ids) > MAX_CODE_SOURCES or any(len(i) != 16 or any(c not in "0123456789abcdef" for c in i) for i in ids):
        raise CheckpointError(f"{where}: bad 'decodes_codes_of' entry in its metadata (expected weights ids, 16 hex digits)")
    return frozenset(ids)


DISCRIMINATOR_FORMAT = "rvqgan-discriminator"


def save_discriminator(state: Mapping[str, torch.Tensor], config: DiscriminatorConfig, path: str | Path) -> Path:
    """Write a discriminator's state dict and its `DiscriminatorConfig` to one `.safetensors` file, atomically.

    Fine-tuning starts from it (`TrainConfig.init_discriminator`, or beside a model file as
    `NAME.discriminator.safetensors`).
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {"format": DISCRIMINATOR_FORMAT, "config": json.dumps(to_dict(config)), "sha256": tensors_digest(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def load_discriminator(path: str | Path) -> tuple[DiscriminatorConfig | None, dict[str, torch.Tensor]]:
    """A discriminator file → (its config, or None for a bare state dict without one; its tensors as float32).

    Files written by `save_discriminator` are checked against their recorded SHA-256. The
    tensors' names and shapes are checked when the trainer loads them into its discriminator.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError
        raise _safetensors_error(path, exc) from None
    config = None
    if metadata.get("format") == DISCRIMINATOR_FORMAT:
        if metadata.get("sha256") != tensors_digest(state):
            raise CheckpointError(f"{path}: weights were modified or corrupted (SHA-256 does not match the one recorded)")
        try:
            data = json.loads(metadata.get("config", ""))
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            config = from_dict(DiscriminatorConfig, data, "discriminator")
        except (ValueError, TypeError, RecursionError) as exc:  # ConfigError and JSONDecodeError are ValueErrors
            raise CheckpointError(f"{path}: bad discriminator config in its metadata: {str(exc)[:160]}") from None
    check_finite(state, path)
    return config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


TRAINING_FORMAT = "rvqgan-train"
TRAINING_VERSION = 1


def save_training_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write a trainer's state (tensors and plain values) atomically, tagged with its format and version."""
    tagged = {"format": TRAINING_FORMAT, "version": TRAINING_VERSION, **state}
    atomic_write(Path(path), lambda tmp: torch.save(tagged, tmp))


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint as a dict (tensors and plain values only; never arbitrary objects)."""
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
