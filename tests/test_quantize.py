"""Residual vector quantisation: typed results, n_codebooks in training, quantizer dropout, codes ↔ latents."""

from __future__ import annotations

import pytest
import torch
from conftest import synth

from rvqgan.quantize import CodebookOutput, Lookup, QuantizerOutput, ResidualVectorQuantize, VectorQuantize, codebook_usage


@torch.no_grad()
def test_typed_results_agree():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantize(input_dim=16, n_codebooks=3, codebook_size=32, codebook_dim=4, quantizer_dropout=0.0).eval()
    z = torch.randn(2, 16, 10)
    one = rvq.codebook(0)(z)
    assert isinstance(rvq.codebook(0), VectorQuantize) and isinstance(one, CodebookOutput)
    assert one.z_q.shape == (2, 16, 10) and one.codes.shape == (2, 10) and one.latent.shape == (2, 4, 10)
    assert one.commitment_loss.shape == one.codebook_loss.shape == (2,)
    out = rvq(z, n_codebooks=2)
    assert isinstance(out, QuantizerOutput) and out.codes.shape == (2, 2, 10) and out.latents.shape == (2, 8, 10)
    assert torch.equal(out.codes[:, 0], one.codes)
    by_codes = rvq.from_codes(out.codes)
    assert isinstance(by_codes, Lookup) and torch.equal(by_codes.codes, out.codes)
    assert torch.allclose(by_codes.z, out.z, atol=1e-5)
    by_latents = rvq.from_latents(out.latents)
    assert torch.equal(by_latents.codes, out.codes) and torch.equal(by_latents.latents, by_codes.latents)
    assert torch.allclose(by_latents.z, by_codes.z, atol=1e-6)


def test_n_codebooks_honoured_in_training_mode(tiny_model):
    tiny_model.train()
    out = tiny_model(synth(640), n_codebooks=2)
    assert out.codes.shape[1] == 2
    with pytest.raises(ValueError, match="between 1 and 4"):
        tiny_model.encode(synth(64), n_codebooks=5)


def test_quantizer_dropout_only_in_training(tiny_model):
    torch.manual_seed(1)
    x = synth(640).repeat(8, 1, 1)
    tiny_model.train()
    out = tiny_model(x)
    z_full = tiny_model.codes_to_latents(out.codes)
    # Dropped items (first half) differ from a full-rate quantisation; the rest match it.
    differs = [(out.z[i] - z_full[i]).abs().max().item() > 1e-5 for i in range(8)]
    assert not any(differs[4:]) and any(differs[:4])
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(x)
        assert torch.allclose(out.z, tiny_model.codes_to_latents(out.codes), atol=1e-5)


@torch.no_grad()
def test_latents_round_trip(tiny_model):
    out = tiny_model.encode_output(synth(1000))
    assert torch.equal(tiny_model.latents_to_codes(out.latents), out.codes)
    assert torch.allclose(tiny_model.codes_to_latents(out.codes), out.z, atol=1e-5)


def test_codebook_usage():
    uniform = torch.arange(1024).repeat(4).view(1, 1, -1).repeat(1, 2, 1)
    assert codebook_usage(uniform, 1024)["efficiency"] == pytest.approx(1.0)
    collapsed = torch.zeros(1, 2, 100, dtype=torch.long)
    assert codebook_usage(collapsed, 1024)["efficiency"] == 0.0
