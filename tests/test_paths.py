"""The model cache and the bundled weights: where they are and what moves them."""

from __future__ import annotations

from pathlib import Path

from rvqgan.paths import DEFAULT_WEIGHTS, model_dir


def test_model_dir_follows_rvqgan_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "cache"))
    assert model_dir() == tmp_path / "cache"


def test_model_dir_defaults_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("RVQGAN_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_dir() == Path(tmp_path) / ".cache" / "rvqgan"


def test_default_weights_are_inside_the_package():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.parent.parent.name == "rvqgan"
