"""Model sources: names, paths and folders resolved by `load_model`, and names never opened as paths."""

from __future__ import annotations

import pytest
import torch

import rvqgan
from rvqgan.backends import BackendError
from rvqgan.checkpoint import CheckpointError, save_model
from rvqgan.loading import is_model_name, load_model, model_names


def test_unknown_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="no such model file"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="import-dac"):
        load_model("44khz_8kbps")


def test_preset_weights_found_in_model_dir(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path))
    save_model(tiny_model, tmp_path / "tiny.safetensors")
    loaded = load_model("tiny")
    assert loaded.config == tiny_model.config and loaded.weights_id() == tiny_model.weights_id()


def test_header_model_names_never_open_paths(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rvqgan.save_model(tiny_model, tmp_path / "tiny")  # a file named like a preset
    assert is_model_name("tiny") and not is_model_name("./tiny") and not is_model_name("/etc/passwd")
    with pytest.raises(CheckpointError, match="not a model name"):
        load_model("/etc/passwd", paths=False)
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    with pytest.raises(CheckpointError, match="no weights for preset"):  # looked up in model_dir(), not ./tiny
        load_model("tiny", paths=False)


def test_a_file_named_like_a_preset_is_read_as_a_path(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))  # holds no weights for the preset
    save_model(tiny_model, tmp_path / "tiny")
    assert load_model("tiny").weights_id() == tiny_model.weights_id()


def test_a_plain_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(tmp_path)


def test_model_names_lists_default_releases_and_presets():
    names = model_names()
    assert names[0] == "default" and "dac_44khz" in names and "tiny" in names
    assert all(is_model_name(n) for n in names) and not is_model_name("no-such-model")


def test_backend_is_checked_before_loading(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        load_model(tmp_path / "missing.safetensors", backend="nope")
    with pytest.raises(BackendError, match="fp32 on the CPU"):
        load_model("default", device=torch.device("meta"), backend="onnxruntime")


def test_default_model_loads_with_its_weights_id():
    model = load_model()
    assert not model.training and model.weights_id() == rvqgan.load_model("default").weights_id()


def test_a_release_named_by_a_file_is_never_fetched(tmp_path, monkeypatch):
    """`paths=False` is for names read from files: their content must not start a download or write to the cache."""
    import rvqgan.loading

    def no_network(name, *args, **kwargs):
        raise AssertionError(f"{name} was fetched")

    monkeypatch.setattr(rvqgan.loading, "fetch_official", no_network)
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    for name in ("dac_44khz", "dac_44khz_16kbps", "dac_24khz", "dac_16khz"):
        with pytest.raises(CheckpointError, match=rf"release {name} is not downloaded.*`--model {name}` downloads it") as info:
            load_model(name, paths=False)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "home").exists()
    with pytest.raises(AssertionError, match="dac_16khz was fetched"):  # a name the user gave still downloads
        load_model("dac_16khz")
