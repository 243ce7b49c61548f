"""The backend registry: names, rules, help, and a new backend added as one entry."""

from __future__ import annotations

import pytest
import torch
from conftest import synth

import rvqgan
from rvqgan import backends
from rvqgan.backends import BACKENDS, REGISTERED, Backend, BackendError, backends_help, check_backend, with_backend
from rvqgan.loading import load_model


def test_registry_names_every_backend_once():
    assert list(BACKENDS) == ["torch", "compile", "onnxruntime"] == [b.name for b in REGISTERED]
    help_text = backends_help()
    assert all(f"{b.name}: {b.summary}" in help_text for b in REGISTERED)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of torch, compile, onnxruntime; got 'nope'"):
        check_backend("nope")
    with pytest.raises(ValueError):
        with_backend(rvqgan.build_model("tiny").folded(), "nope")


def test_rules_are_checked_per_backend():
    check_backend("torch", torch.device("meta"), torch.bfloat16)
    check_backend("compile", torch.device("cpu"), torch.bfloat16)
    check_backend("onnxruntime", torch.device("cpu"), torch.float32)
    for device, dtype in ((torch.device("meta"), None), (None, torch.bfloat16)):
        with pytest.raises(BackendError, match="fp32 on the CPU"):
            check_backend("onnxruntime", device, dtype)


def test_torch_backend_returns_the_model_itself():
    model = rvqgan.build_model("tiny").folded()
    assert with_backend(model, "torch") is model


def test_a_new_backend_is_one_registry_entry(tmp_path, monkeypatch):
    """A backend registered in `BACKENDS` is usable by name in `load_model` and keeps the weights id."""
    calls = []

    class Halved(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return self.net(z) / 2

    def halve_decoder(model):
        calls.append(model.weights_id())
        runtime = model.folded()
        runtime.decoder = Halved(runtime.decoder)
        runtime.set_weights_digest(model.weights_digest())
        return runtime

    tiny = rvqgan.build_model("tiny")
    path = rvqgan.save_model(tiny, tmp_path / "tiny.safetensors")
    entry = Backend("half", "halves the output (a test backend)", halve_decoder, devices=("cpu",))
    monkeypatch.setitem(BACKENDS, entry.name, entry)
    model = load_model(path, backend="half")
    reference = load_model(path)
    assert calls == [reference.weights_id()] and model.weights_id() == reference.weights_id()
    x = synth(tiny.hop_length * 8)
    with torch.no_grad():
        assert torch.allclose(model.decode(model.encode(x)), reference.decode(reference.encode(x)) / 2, atol=1e-6)
    with pytest.raises(BackendError):
        backends.check_backend("half", torch.device("meta"))
