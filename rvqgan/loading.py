"""`load_model`: any model source — a name, `hf:REPO`, a folder or a file — to a `Codec`.

This module sits above every weight format (`checkpoint`, `dac_compat`, `hub`) and the
backends, so following a source means reading one function here, not climbing between the
formats. Nothing below it knows about names.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .backends import BACKENDS, check_backend, with_backend
from .checkpoint import CheckpointError, load_checkpoint
from .config import PRESET_ALIASES, PRESETS
from .dac_compat import load_dac_pth
from .hub import HF_PREFIX, OFFICIAL, fetch_official, is_hf_folder, load_hf, load_hf_folder, official_path
from .model import Codec
from .paths import DEFAULT_WEIGHTS, model_dir

WEIGHT_SUFFIXES_PTH = (".pth", ".pt", ".ckpt")


def model_names() -> list[str]:
    """Every name `load_model` knows: "default", the releases and the presets."""
    return ["default", *OFFICIAL, *sorted(PRESETS)]


def is_model_name(name: str) -> bool:
    """Whether `name` is a model `load_model` knows by name ("default", a release, a preset), not a path."""
    return name == "default" or name in OFFICIAL or PRESET_ALIASES.get(name, name) in PRESETS


def load_model(
    source: str | Path = "default",
    device: str | torch.device = "cpu",
    *,
    paths: bool = True,
    backend: str = "torch",
    precision: str | None = None,
) -> Codec:
    """Load a codec in eval mode.

    Args:
        source: "default" (the bundled model); a release of the paper's weights ("dac_44khz",
            "dac_44khz_16kbps", "dac_24khz", "dac_16khz": downloaded once into `model_dir()`, see
            `hub`); "hf:REPO_ID[@REVISION]" (a transformers `DacModel` on the Hugging Face Hub); a
            preset name (its converted weights are looked up in `model_dir()`); a path to one of
            our `.safetensors` checkpoints, to an official DAC `.pth` file, or to a folder in the
            `DacModel` layout (config.json + model.safetensors).
        paths: with False, only names are accepted, no path is opened and nothing is
            downloaded: a release loads only if it is already in `model_dir()` (for names read
            from untrusted files, such as a code file's header, whose content must not make
            the program reach the network).
        backend: with one other than "torch" (`backends.BACKENDS`) the model comes folded, its
            encoder and decoder run by that backend (`backends.with_backend`); everything that
            takes a `Codec` uses it.
        precision: "fp32", "bf16" or "auto" (`precision.resolve`): the model comes folded for
            inference in that precision (`inference_model`). None: as trained, unless `backend`
            folds it (in fp32).
    """
    check_backend(backend, torch.device(device))
    model = _load_by_name(str(source), device, paths) or _load_path(str(source), device)
    if precision is None and backend == "torch":
        return model
    return inference_model(model, precision or "fp32", backend)


def inference_model(model: Codec, precision: str, backend: str = "torch") -> Codec:
    """`model` folded in `precision` ("fp32", "bf16" or "auto") and run by `backend`: how every command
    makes its inference model. "auto" keeps to fp32 where the backend runs only fp32 (onnxruntime)."""
    check_backend(backend)
    if precision == "auto" and not BACKENDS[backend].runs(torch.bfloat16):
        precision = "fp32"
    return with_backend(model.folded(precision), backend)


def _load_by_name(name: str, device: str | torch.device, paths: bool) -> Codec | None:
    """The model `name` names, or None when `name` is to be read as a path.

    An existing file or folder of the same name as a release or preset is taken as a path,
    except with `paths=False`, where only names are accepted.
    """
    if not paths and not is_model_name(name):
        raise CheckpointError(f"{name[:80]!r} is not a model name ({', '.join(model_names())})")
    if name == "default":
        if not DEFAULT_WEIGHTS.exists():
            raise CheckpointError("no default model is bundled with this installation")
        return load_checkpoint(DEFAULT_WEIGHTS, device)
    if paths and name.startswith(HF_PREFIX):
        return load_hf(name, device)
    if paths and Path(name).exists():
        return None
    if name in OFFICIAL:
        if not paths and not official_path(name).exists():
            raise CheckpointError(
                f"release {name} is not downloaded, and a name read from a file never downloads one: "
                f"`--model {name}` downloads it (once, into {model_dir()})"
            )
        return load_checkpoint(fetch_official(name), device)
    key = PRESET_ALIASES.get(name, name)
    if key in PRESETS:
        path = model_dir() / f"{key}.safetensors"
        if not path.exists():
            raise CheckpointError(
                f"no weights for preset {key!r} in {model_dir()}: convert released DAC weights with "
                f"`rvqgan import-dac weights.pth {path}` (or use rvqgan.build_model({key!r}) for an untrained model)"
            )
        return load_checkpoint(path, device)
    return None


def _load_path(name: str, device: str | torch.device) -> Codec:
    """A model from a file or folder: our `.safetensors`, a DAC `.pth`, or a `DacModel` folder."""
    path = Path(name)
    if not path.exists():
        raise CheckpointError(f"{name}: no such model file, and not a model name ({', '.join(model_names())})")
    if is_hf_folder(path):
        return load_hf_folder(path, device)
    if path.is_dir():
        raise CheckpointError(
            f"{name}: is a directory, expected a .safetensors or .pth file, or a folder with config.json and model.safetensors"
        )
    if path.suffix in WEIGHT_SUFFIXES_PTH:
        return load_dac_pth(path, device)
    return load_checkpoint(path, device)
