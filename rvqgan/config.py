"""Typed configuration: dataclasses loaded strictly from YAML/JSON (unknown keys are errors)."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line meant for the user."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters of the codec (names as in the reference implementation).

    `latent_dim=None` means `encoder_dim * 2 ** len(encoder_rates)`, as in the reference.
    `output_padding` is ours: the reference's stride-5 transposed convs lose 8 samples per
    decode (T·320 − 8); with `output_padding=True` every decoder block emits exactly
    `stride × input` samples. It adds no parameters, so released weights load either way.
    """

    sample_rate: int = 44100
    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    output_padding: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_rates", tuple(int(r) for r in self.encoder_rates))
        object.__setattr__(self, "decoder_rates", tuple(int(r) for r in self.decoder_rates))
        if self.latent_dim is None:
            object.__setattr__(self, "latent_dim", self.encoder_dim * 2 ** len(self.encoder_rates))
        for name in ("sample_rate", "encoder_dim", "decoder_dim", "n_codebooks", "codebook_size", "codebook_dim", "latent_dim"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if not self.encoder_rates or any(r <= 0 for r in self.encoder_rates):
            raise ConfigError(f"model.encoder_rates must be positive integers, got {list(self.encoder_rates)}")
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise ConfigError(
                f"model.encoder_rates {list(self.encoder_rates)} and decoder_rates {list(self.decoder_rates)} "
                "must have the same product (the hop length)"
            )
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ConfigError(f"model.decoder_dim {self.decoder_dim} must be divisible by 2**{len(self.decoder_rates)}")
        if not 0.0 <= float(self.quantizer_dropout) <= 1.0:
            raise ConfigError(f"model.quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.encoder_rates)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# Released configurations (descript-audio-codec 1.0.0) plus small presets that train on a CPU.
PRESETS: dict[str, ModelConfig] = {
    "44khz_8kbps": ModelConfig(),
    "44khz_16kbps": ModelConfig(n_codebooks=18, latent_dim=128),
    "24khz": ModelConfig(sample_rate=24000, encoder_rates=(2, 4, 5, 8), decoder_rates=(8, 5, 4, 2), n_codebooks=32),
    "16khz": ModelConfig(sample_rate=16000, encoder_rates=(2, 4, 5, 8), decoder_rates=(8, 5, 4, 2), n_codebooks=12),
    "44khz_small": ModelConfig(encoder_dim=32, decoder_dim=384, latent_dim=256, n_codebooks=9),
    "24khz_small": ModelConfig(
        sample_rate=24000, encoder_dim=32, encoder_rates=(2, 4, 5, 8), decoder_dim=384,
        decoder_rates=(8, 5, 4, 2), latent_dim=256, n_codebooks=8,
    ),
    "tiny": ModelConfig(
        sample_rate=16000, encoder_dim=8, encoder_rates=(2, 4, 4), decoder_dim=32,
        decoder_rates=(4, 4, 2), latent_dim=32, n_codebooks=4, codebook_size=256,
    ),
}
PRESET_ALIASES = {"44khz": "44khz_8kbps", "24khz_8kbps": "24khz", "16khz_8kbps": "16khz"}


def preset(name: str) -> ModelConfig:
    """The `ModelConfig` of a named preset (see `PRESETS`)."""
    key = PRESET_ALIASES.get(name, name)
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


def to_dict(obj: Any) -> Any:
    """A JSON-ready copy of a (nested) config dataclass: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1] if args else Any, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and ill-typed values."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]!r} (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) file into a dict, with a one-line error on failure."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) if path.suffix != ".json" else json.loads(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot parse config {path}: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set a.b.c=value` to a nested dict; the value is a Python/YAML literal."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        lowered = raw.strip().lower()
        value = {"true": True, "false": False, "null": None, "none": None}.get(lowered, raw)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


__all__ = ["ConfigError", "ModelConfig", "PRESETS", "preset", "from_dict", "to_dict", "load_yaml", "apply_override", "field"]
