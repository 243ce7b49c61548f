"""Typed configuration: dataclasses loaded strictly from YAML/JSON (unknown keys are errors)."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import reprlib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line meant for the user."""


# Bounds on `ModelConfig` integers (inclusive). They are far above any useful codec and far
# below what a hostile file could use to make a loader allocate gigabytes.
MODEL_LIMITS = {
    "sample_rate": (1000, 768_000),
    "encoder_dim": (1, 4096),
    "decoder_dim": (1, 16384),
    "latent_dim": (1, 8192),
    "n_codebooks": (1, 256),
    "codebook_size": (2, 65536),
    "codebook_dim": (1, 1024),
}
MAX_RATES = 8
MAX_RATE = 64
# Number formats a model trains in: fp32, bf16 autocast, or auto (`precision.resolve(..., "train")`:
# what `precision.AUTO_WHERE_NATIVE` says where bf16 is native, fp32 elsewhere).
PRECISIONS = ("auto", "fp32", "bf16")
# The generator's parts, in the order audio passes them (the `Codec` submodules `freeze` names).
GENERATOR_PARTS = ("encoder", "quantizer", "decoder")
# What a fine-tuning recipe may set in `model` besides the source's architecture.
FINE_TUNING_MODEL_KEYS = ("n_codebooks", "quantizer_dropout", "output_padding")
# Keys of earlier versions and what they are called now.
RENAMED_KEYS = {"init_generator": "init"}


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
        for name in ("encoder_rates", "decoder_rates"):
            rates = getattr(self, name)
            if (
                not isinstance(rates, (list, tuple))
                or not 1 <= len(rates) <= MAX_RATES
                or any(isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_RATE for r in rates)
            ):
                raise ConfigError(f"model.{name} must be 1 to {MAX_RATES} integers in [1, {MAX_RATE}], got {_short(rates)}")
            object.__setattr__(self, name, tuple(rates))
        if self.latent_dim is None and isinstance(self.encoder_dim, int):
            object.__setattr__(self, "latent_dim", self.encoder_dim * 2 ** len(self.encoder_rates))
        for name, (low, high) in MODEL_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"model.{name} must be an integer in [{low}, {high}], got {_short(value)}")
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise ConfigError(
                f"model.encoder_rates {list(self.encoder_rates)} and decoder_rates {list(self.decoder_rates)} "
                "must have the same product (the hop length)"
            )
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ConfigError(f"model.decoder_dim {self.decoder_dim} must be divisible by 2**{len(self.decoder_rates)}")
        if (
            isinstance(self.quantizer_dropout, bool)
            or not isinstance(self.quantizer_dropout, (int, float))
            or not 0.0 <= self.quantizer_dropout <= 1.0
        ):
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
        sample_rate=24000,
        encoder_dim=32,
        encoder_rates=(2, 4, 5, 8),
        decoder_dim=384,
        decoder_rates=(8, 5, 4, 2),
        latent_dim=256,
        n_codebooks=8,
    ),
    "tiny": ModelConfig(
        sample_rate=16000,
        encoder_dim=8,
        encoder_rates=(2, 4, 4),
        decoder_dim=32,
        decoder_rates=(4, 4, 2),
        latent_dim=32,
        n_codebooks=4,
        codebook_size=256,
    ),
}
PRESET_ALIASES = {"44khz": "44khz_8kbps", "24khz_8kbps": "24khz", "16khz_8kbps": "16khz"}


def preset(name: str) -> ModelConfig:
    """The `ModelConfig` of a named preset (see `PRESETS`)."""
    key = PRESET_ALIASES.get(name, name)
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sub-discriminators and their widths; defaults are the paper's 42.5M-parameter discriminator.

    `bands` are the STFT discriminators' frequency bands as fractions of the bins.
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    fft_sizes: tuple[int, ...] = (2048, 1024, 512)
    period_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    stft_channels: int = 32
    bands: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))

    def __post_init__(self) -> None:
        # Bounds on each value (the trainer also bounds the total size, `train.MAX_DISCRIMINATOR_PARAMETERS`).
        checks = [
            ("periods", self.periods, 1, 64),
            ("fft_sizes", self.fft_sizes, 16, 16384),
            ("period_channels", self.period_channels, 1, 4096),
        ]
        for name, values, low, high in checks:
            if not 1 <= len(values) <= 16 or any(
                isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in values
            ):
                raise ConfigError(f"discriminator.{name} must be 1 to 16 integers in [{low}, {high}], got {_short(values)}")
        if isinstance(self.stft_channels, bool) or not isinstance(self.stft_channels, int) or not 1 <= self.stft_channels <= 4096:
            raise ConfigError(f"discriminator.stft_channels must be an integer in [1, 4096], got {_short(self.stft_channels)}")
        if not 1 <= len(self.bands) <= 16 or any(len(b) != 2 or not 0.0 <= b[0] < b[1] <= 1.0 for b in self.bands):
            raise ConfigError(
                f"discriminator.bands must be 1 to 16 [low, high] fractions with 0 <= low < high <= 1, got {_short(self.bands)}"
            )


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (paper §3.5) and the adversarial loss kind ("lsgan" as the released models, or "hinge")."""

    mel: float = 15.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    codebook: float = 1.0
    commitment: float = 0.25
    gan: str = "lsgan"
    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_bands: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)

    def weights(self) -> dict[str, float]:
        """The weight of each generator loss, keyed as the trainer's loss dict."""
        return {
            "mel": self.mel,
            "feature_matching": self.feature_matching,
            "adversarial": self.adversarial,
            "codebook": self.codebook,
            "commitment": self.commitment,
        }

    def __post_init__(self) -> None:
        if self.gan not in ("lsgan", "hinge"):
            raise ConfigError(f"loss.gan must be 'lsgan' or 'hinge', got {self.gan!r}")
        if len(self.mel_windows) != len(self.mel_bands):
            raise ConfigError("loss.mel_windows and loss.mel_bands must have the same length")


@dataclass(frozen=True)
class DataConfig:
    """Where training audio comes from and how excerpts are made.

    `groups` maps a group name to its folders; `weights` gives each group's share of every
    batch (missing groups weigh 1). `holdout_fraction` of each group's files (chosen by a
    hash of their names, `data.holdout_split`) are never trained on and form the selection
    split that validation and checkpoint choice use, together with any `valid_folders`.
    """

    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    valid_folders: tuple[str, ...] = ()
    excerpt_seconds: float = 0.38
    target_loudness: float | None = -16.0
    min_loudness: float = -40.0
    loudness_jitter: float = 0.0
    phase_shift: bool = True
    num_workers: int = 2
    cache_dir: str | None = None
    valid_seconds: float = 5.0
    valid_items: int = 24
    holdout_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not self.groups:
            raise ConfigError("data.groups is empty: name at least one group of training folders")
        unknown = sorted(set(self.weights) - set(self.groups))
        if unknown:
            raise ConfigError(f"data.weights names unknown group {unknown[0]!r}")
        if self.excerpt_seconds <= 0:
            raise ConfigError(f"data.excerpt_seconds must be positive, got {self.excerpt_seconds}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"data.holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.loudness_jitter < 0:
            raise ConfigError(f"data.loudness_jitter must be >= 0 dB, got {self.loudness_jitter}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and exponential learning-rate decay for both networks; gradient clipping per network."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    lr_decay: float = 0.999996
    grad_clip_g: float = 1000.0
    grad_clip_d: float = 10.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {list(self.betas)}")


@dataclass(frozen=True)
class TrainConfig:
    """A complete training recipe (see configs/*.yaml).

    `adversarial_start` is the step at which the discriminator and adversarial losses switch
    on (0: from the start, as the paper); earlier steps train on reconstruction losses only.
    `precision` is "fp32", "bf16" (autocast) or "auto" (`precision.resolve`: fp32 for now, also
    where bf16 is native). `fuse_snake` compiles the Snake activation
    into one kernel (faster CPU steps after a ~20 s compile). `ema_decay` (e.g. 0.999) keeps an
    exponential moving average of the generator's weights, updated after every generator step;
    validation, the kept checkpoints and `export` then use the average.

    Fine-tuning: `init` starts a fresh run from a trained model, any source `load_model` takes
    (a release name, `hf:REPO`, a `DacModel` folder, one of our `.safetensors`, a DAC `.pth`) or
    one of our training checkpoints; the run's architecture is the source's
    (`with_source_architecture`). Its discriminator comes from `init_discriminator` (a
    discriminator `.safetensors`) when given, else from the source when it has one (the built-in
    model, a training checkpoint, a `NAME.discriminator.safetensors` beside `NAME.safetensors`).
    A discriminator that starts from nothing first trains alone against the unchanged generator
    for `discriminator_warmup` steps. `freeze` names parts of the generator ("encoder",
    "quantizer", "decoder") that keep their weights; freezing the encoder and the quantizer
    keeps the codes of the source, so its code files stay decodable.

    `max_cpu_minutes` ends the run early once its training steps have used that much CPU time (all
    threads of the process, rank 0's under DDP; summed over resumes; validation, checkpoint writes
    and data-loading workers not counted): runs compared at equal compute stay comparable on a
    machine that other work shares, where wall time does not. OpenMP threads that busy-wait count
    as working, so give such runs `threads: 1` or `OMP_WAIT_POLICY=PASSIVE`. Under DDP it is checked
    at logging steps only, so a run may go on for up to `log_every` steps past it.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(groups={"all": (".",)}))
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 400_000
    batch_size: int = 72
    seed: int = 0
    precision: str = "fp32"
    adversarial_start: int = 0
    log_every: int = 10
    valid_every: int = 1000
    save_every: int = 1000
    max_bad_steps: int = 20
    threads: int = 0
    fuse_snake: bool = False
    init: str | None = None
    init_discriminator: str | None = None
    discriminator_warmup: int = 0
    freeze: tuple[str, ...] = ()
    ema_decay: float | None = None
    max_cpu_minutes: float | None = None
    out_dir: str = "runs/default"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be {' or '.join(map(repr, PRECISIONS))}, got {self.precision!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        for name in ("log_every", "valid_every", "save_every", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_cpu_minutes is not None and not self.max_cpu_minutes > 0:
            raise ConfigError(f"max_cpu_minutes must be positive, got {self.max_cpu_minutes}")
        if self.discriminator_warmup < 0:
            raise ConfigError(f"discriminator_warmup must be >= 0, got {self.discriminator_warmup}")
        unknown = [part for part in self.freeze if part not in GENERATOR_PARTS]
        if unknown:
            raise ConfigError(f"freeze: unknown part {unknown[0]!r} (parts: {', '.join(GENERATOR_PARTS)})")
        if set(self.freeze) == set(GENERATOR_PARTS):
            raise ConfigError("freeze: every part of the generator is frozen; nothing would train")
        if self.init is None and (self.freeze or self.discriminator_warmup):
            raise ConfigError("freeze and discriminator_warmup are for fine-tuning: name the model to start from (--init SOURCE)")


RECIPES_DIR = Path(__file__).parent / "configs"


def recipe_names() -> list[str]:
    """The training recipes shipped with the package (`rvqgan/configs/NAME.yaml`), by name."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(recipe: str | Path) -> Path:
    """A recipe's file: an existing path as it is, or a shipped recipe's name ("cpu", "smoke", ...)."""
    path = Path(recipe)
    if path.exists() or path.suffix in (".yaml", ".yml", ".json") or len(path.parts) > 1:
        return path
    if (RECIPES_DIR / f"{recipe}.yaml").is_file():
        return RECIPES_DIR / f"{recipe}.yaml"
    raise ConfigError(f"no recipe {str(recipe)[:80]!r}: give a YAML file or one of {', '.join(recipe_names())}")


def load_train_config(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
    data_dirs: Sequence[str] = (),
) -> TrainConfig:
    """Read a training recipe (a file, or a shipped recipe's name), point it at `data_dirs`, apply
    `--set key=value` overrides, validate strictly (`read_recipe`, then `from_dict`).

    A recipe with `init` (fine-tuning) also needs its source's architecture:
    `train.load_recipe` supplies it.
    """
    return from_dict(TrainConfig, read_recipe(path, overrides, base, data_dirs))


def read_recipe(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
    data_dirs: Sequence[str] = (),
) -> dict[str, Any]:
    """A recipe as a plain dict, before validation: the file (or `base`), with `data_dirs` and overrides.

    A `model: {preset: NAME, ...}` entry starts from that preset's architecture. `data_dirs` are
    `rvqgan train --data` arguments (`with_data_dirs`); the overrides come after them, so
    `--set data.weights=...` still applies.
    """
    data = load_yaml(recipe_path(path)) if path else dict(base or {})
    if data_dirs:
        data["data"] = with_data_dirs(data.get("data"), data_dirs)
    for assignment in overrides:
        apply_override(data, assignment)
    model = data.get("model")
    if isinstance(model, dict) and "preset" in model:
        model = dict(model)
        name = model.pop("preset")
        data["model"] = {**preset(str(name)).to_dict(), **model}
    return data


def with_source_architecture(
    data: dict[str, Any], architecture: ModelConfig | DiscriminatorConfig, section: str, source: str
) -> dict[str, Any]:
    """`data` (a recipe, `read_recipe`) with its `section` ("model" or "discriminator") set to the
    `architecture` of the network that starts a fine-tuning run, read from `source`.

    In "model" the recipe may still set `FINE_TUNING_MODEL_KEYS` (fewer codebooks than the source
    keep its first ones; more start new ones; `output_padding` adds no weights). Any other setting
    the recipe makes (itself or through `model.preset`) must agree with the source's: a recipe
    written for another network is refused, not silently overridden.
    """
    given = to_dict(architecture)
    settable = FINE_TUNING_MODEL_KEYS if section == "model" else ()
    recipe = data.get(section) or {}
    if not isinstance(recipe, dict):
        raise ConfigError(f"{section} must be a mapping, got {_short(recipe)}")
    for key, value in recipe.items():
        if key in given and key not in settable and to_dict(value) != given[key]:
            raise ConfigError(
                f"{section}.{key}: the recipe says {_short(value)} but {source} has {_short(given[key])}; "
                f"a fine-tuning run keeps the architecture it starts from (use a recipe without a {section} section, "
                "such as finetune)"
            )
    return {
        **data,
        section: {**given, **{k: v for k, v in recipe.items() if k in settable or k not in given}},
    }  # unknown keys: from_dict refuses them


def with_data_dirs(section: Any, data_dirs: Sequence[str]) -> dict[str, Any]:
    """A recipe's `data` section with its groups' folders taken from `--data` arguments.

    `GROUP=DIR` gives a group its folder (repeat it for more folders; the groups named this way
    replace the recipe's). A plain `DIR` is a corpus root: where it holds a folder for every
    group of the recipe (`speech/`, `music/`, `general/` for the shipped ones), each group reads
    its own, with the recipe's weights; otherwise all audio under the plain folders is one group.
    """
    section = dict(section) if isinstance(section, dict) else {}
    recipe_groups = section.get("groups") if isinstance(section.get("groups"), dict) else {}
    named: dict[str, list[str]] = {}
    roots = []
    for item in data_dirs:
        name, sep, folder = item.partition("=")
        if sep and name and "/" not in name and folder:
            named.setdefault(name, []).append(folder)
        else:
            roots.append(item)
    groups: dict[str, list[str]] = {}
    if roots and recipe_groups and all((Path(root) / g).is_dir() for root in roots for g in recipe_groups):
        groups = {g: [str(Path(root) / g) for root in roots] for g in recipe_groups}
    elif roots:
        groups = {"all": roots}
        section.pop("weights", None)
    groups.update(named)
    section["groups"] = groups
    if isinstance(section.get("weights"), dict):
        section["weights"] = {k: v for k, v in section["weights"].items() if k in groups}
    return section


def to_dict(obj: Any) -> Any:
    """A JSON-ready copy of a (nested) config dataclass: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _short(value: Any) -> str:
    """A bounded repr for messages: a hostile value (deeply nested, shared references) must not cost its full size."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxstring, short.maxother = 2, 4, 4, 4, 40, 40
    return short.repr(value)


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
        raise ConfigError(errors[0] if errors else f"{where}: bad value {_short(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return from_dict(typing.cast(type, tp), value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_short(value)}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {_short(value)}")
        return {str(k): _coerce(v, args[1] if args else Any, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {_short(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_short(value)}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and ill-typed values."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        if RENAMED_KEYS.get(unknown[0]) in names:
            raise ConfigError(f"config key {prefix}{unknown[0]!r} is now called {RENAMED_KEYS[unknown[0]]!r}")
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


__all__ = [
    "ConfigError",
    "ModelConfig",
    "TrainConfig",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "DiscriminatorConfig",
    "load_train_config",
    "read_recipe",
    "with_source_architecture",
    "PRESETS",
    "preset",
    "from_dict",
    "to_dict",
    "load_yaml",
    "apply_override",
    "field",
]
