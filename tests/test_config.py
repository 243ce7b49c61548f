"""Typed configuration: strict loading, presets, overrides, and validation with one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

from rvqgan.config import (
    ConfigError,
    DataConfig,
    DiscriminatorConfig,
    LossConfig,
    OptimConfig,
    load_train_config,
    preset,
)


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_preset_and_overrides(tmp_path):
    path = _write(tmp_path, "model: {preset: tiny, n_codebooks: 3}\ndata: {groups: {a: [x]}}\n")
    cfg = load_train_config(path, ["optim.lr=0.002", "ema_decay=0.99", "data.holdout_fraction=0.1"])
    assert cfg.model == preset("tiny").__class__(**{**preset("tiny").to_dict(), "n_codebooks": 3})
    assert cfg.optim.lr == 0.002 and cfg.ema_decay == 0.99 and cfg.data.holdout_fraction == 0.1


@pytest.mark.parametrize(
    "text, message",
    [
        ("data: {groups: {a: [x]}}\nlearning_rat: 1\n", "unknown config key 'learning_rat'"),
        ("data: {groups: {a: [x]}, holdout_fraction: 1.0}\n", "holdout_fraction must be in"),
        ("data: {groups: {a: [x]}}\nema_decay: 1.5\n", "ema_decay must be in"),
        ("data: {groups: {a: [x]}}\nloss: {gan: wgan}\n", "loss.gan must be"),
        ("data: {groups: {a: [x]}}\noptim: {lr: fast}\n", "must be a number"),
        ("model: {preset: huge}\ndata: {groups: {a: [x]}}\n", "unknown preset"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_train_config(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_defaults_are_written_once(tmp_path):
    """Loss weights come keyed as the trainer's loss dict; a recipe that names only its data folders gets
    every other value from the dataclasses' own defaults (the loader and TrainConfig add none of their own)."""
    assert set(LossConfig().weights()) == {"mel", "feature_matching", "adversarial", "codebook", "commitment"}
    cfg = load_train_config(_write(tmp_path, "data: {groups: {a: [x]}}\n"))
    assert cfg.data == DataConfig(groups={"a": ("x",)})
    for f in dataclasses.fields(cfg):
        if f.default is not dataclasses.MISSING:
            assert getattr(cfg, f.name) == f.default, f.name
    assert cfg.loss == LossConfig() and cfg.optim == OptimConfig() and cfg.discriminator == DiscriminatorConfig()


def test_shipped_recipes_load_by_name_and_name_no_outside_folder(tmp_path):
    from rvqgan.config import RECIPES_DIR, recipe_names, recipe_path

    assert {"cpu", "smoke", "24khz", "44khz", "finetune"} <= set(recipe_names())
    assert recipe_path("cpu") == RECIPES_DIR / "cpu.yaml"
    for name in recipe_names():
        text = recipe_path(name).read_text()
        assert "../shared" not in text, name  # data comes from --data, never from this repository's layout
        if name == "finetune":  # needs the model it starts from (train.load_recipe, --init)
            with pytest.raises(ConfigError, match="name the model to start from"):
                load_train_config(name, data_dirs=[str(tmp_path)])
            continue
        load_train_config(name, data_dirs=[str(tmp_path)])
    with pytest.raises(ConfigError, match="no recipe 'nope': give a YAML file or one of"):
        recipe_path("nope")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_train_config("missing.yaml")


def test_data_dirs_point_a_recipe_at_folders(tmp_path):
    corpus = tmp_path / "corpus"
    for group in ("speech", "music", "general"):
        (corpus / group).mkdir(parents=True)
    by_group = load_train_config("cpu", data_dirs=[str(corpus)])
    assert by_group.data.groups == {g: (str(corpus / g),) for g in ("speech", "music", "general")}
    assert by_group.data.weights == {"speech": 2.0, "music": 1.0, "general": 1.0}  # the recipe's
    flat = load_train_config("cpu", data_dirs=[str(tmp_path / "corpus" / "speech")])  # no group folders: one group
    assert flat.data.groups == {"all": (str(corpus / "speech"),)} and flat.data.weights == {}
    named = load_train_config("cpu", ["data.weights={'voice': 3.0}"], data_dirs=[f"voice={corpus / 'speech'}", "x=/a", "x=/b"])
    assert named.data.groups == {"voice": (str(corpus / "speech"),), "x": ("/a", "/b")}
    assert named.data.weights == {"voice": 3.0}  # overrides come after --data


@pytest.mark.parametrize(
    "override, message",
    [
        ("freeze=['encoder', 'vocoder']", "freeze: unknown part 'vocoder'"),
        ("freeze=['encoder', 'quantizer', 'decoder']", "every part of the generator is frozen"),
        ("discriminator_warmup=-1", "discriminator_warmup must be >= 0"),
        ("freeze=['encoder']", r"are for fine-tuning: name the model to start from \(--init SOURCE\)"),
        ("discriminator_warmup=10", "are for fine-tuning"),
        ("init_generator='g.safetensors'", "config key 'init_generator' is now called 'init'"),
        ("discriminator.period_channels=[16, 100000]", r"period_channels must be 1 to 16 integers in \[1, 4096\]"),
        ("discriminator.fft_sizes=[8]", "fft_sizes"),
        ("discriminator.periods=[]", "periods"),
        ("discriminator.stft_channels=0", "stft_channels"),
        ("discriminator.bands=[[0.5, 0.2]]", "bands"),
        ("discriminator.bands=[[0.0, 0.5, 1.0]]", "bands"),
    ],
)
def test_fine_tuning_and_discriminator_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_train_config(None, ["data.groups={'a': ['x']}", override])
    assert "\n" not in str(info.value)


def test_a_fine_tuning_source_sets_the_architecture_the_recipe_may_not_contradict():
    from rvqgan.config import read_recipe, with_source_architecture

    source = preset("tiny")
    settings = ["model.n_codebooks=2", "model.quantizer_dropout=0.0", "model.output_padding=False"]
    merged = with_source_architecture(read_recipe(None, ["data.groups={'a': ['x']}", *settings]), source, "model", "src")
    cfg = load_train_config(None, base=merged)
    assert cfg.model == dataclasses.replace(source, n_codebooks=2, quantizer_dropout=0.0, output_padding=False)
    # A recipe's architecture that agrees with the source is accepted; one that differs is named.
    agreeing = read_recipe(None, ["data.groups={'a': ['x']}", "model.preset='tiny'"])
    assert load_train_config(None, base=with_source_architecture(agreeing, source, "model", "src")).model == source
    contradicting = read_recipe(None, ["data.groups={'a': ['x']}", "model.decoder_dim=64"])
    with pytest.raises(ConfigError, match="model.decoder_dim: the recipe says 64 but src has 32; .* without a model section"):
        with_source_architecture(contradicting, source, "model", "src")
    unknown = with_source_architecture(read_recipe(None, ["data.groups={'a': ['x']}", "model.dims=3"]), source, "model", "src")
    with pytest.raises(ConfigError, match="unknown config key model.'dims'"):
        load_train_config(None, base=unknown)
    small = DiscriminatorConfig(periods=(2,), fft_sizes=(512,), period_channels=(8,), stft_channels=8)
    merged = with_source_architecture(read_recipe(None, ["data.groups={'a': ['x']}"]), small, "discriminator", "d")
    assert load_train_config(None, base=merged).discriminator == small
