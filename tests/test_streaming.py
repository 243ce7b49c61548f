"""Chunked and streaming coding: chunk-size independence, streaming = offline, the context walked from the network."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import narrow, synth

import rvqgan
from rvqgan.config import PRESETS
from rvqgan.streaming import (
    StreamingDecoder,
    StreamingEncoder,
    conv_geometry,
    decode_chunked,
    decoder_context_frames,
    decoder_reach_frames,
    encode_chunked,
    encoder_context_frames,
    encoder_reach_samples,
    stream_decode,
)


def _formula_encoder_reach(cfg: rvqgan.ModelConfig) -> int:
    """The encoder's context as it was first written, restating the kernels and dilations (k7, d 1/3/9, k 2s, k3)."""
    ctx = 3
    scale = 1
    for stride in cfg.encoder_rates:
        ctx += scale * sum(3 * d for d in (1, 3, 9))
        ctx += scale * stride
        scale *= stride
    return ctx + scale * 1


def _formula_decoder_reach(cfg: rvqgan.ModelConfig) -> int:
    """The decoder's context as it was first written (k7, then per block k 2s and d 1/3/9, then k7)."""
    ctx = 3.0
    scale = 1
    for stride in cfg.decoder_rates:
        scale *= stride
        ctx += 1.0 + sum(3 * d for d in (1, 3, 9)) / scale
    ctx += 3.0 / scale
    return math.ceil(ctx)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_walked_context_equals_the_formula_for_every_preset(name):
    cfg = rvqgan.preset(name)
    with torch.device("meta"):
        model = rvqgan.Codec(cfg)
    assert encoder_reach_samples(model) == _formula_encoder_reach(cfg)
    assert decoder_reach_frames(model) == _formula_decoder_reach(cfg)
    assert encoder_context_frames(model) == math.ceil(_formula_encoder_reach(cfg) / cfg.hop_length) + 1
    assert decoder_context_frames(model) == _formula_decoder_reach(cfg) + 1


@pytest.mark.parametrize("name", ["tiny", "16khz", "44khz_8kbps"])
@torch.no_grad()
def test_context_bounds_the_measured_reach(name):
    model = narrow(name)
    # Folding weight norm swaps the conv classes, not their geometry.
    assert conv_geometry(model.folded().decoder) == conv_geometry(model.decoder)
    hop, frames, mid = model.hop_length, 60, 30
    codes = torch.randint(0, model.codebook_size, (1, model.n_codebooks, frames))
    changed = codes.clone()
    changed[..., mid] = (changed[..., mid] + 1) % model.codebook_size
    moved = ((model.decode(codes) - model.decode(changed)).abs()[0, 0] > 0).nonzero()[:, 0]
    assert mid - int(moved.min()) // hop <= decoder_reach_frames(model)
    assert int(moved.max()) // hop - mid <= decoder_reach_frames(model)
    x = torch.randn(1, 1, frames * hop)
    poked = x.clone()
    poked[..., mid * hop] += 1.0
    moved = ((model.encode_features(x) - model.encode_features(poked)).abs().amax(1)[0] > 0).nonzero()[:, 0]
    reach = encoder_reach_samples(model)
    assert (mid - int(moved.min())) * hop <= reach + hop and (int(moved.max()) - mid) * hop <= reach


def test_unbounded_convs_are_refused():
    model = rvqgan.build_model("tiny")
    conv = model.encoder.block[0]
    conv.padding = (0,)  # a one-sided (causal-like) conv: the symmetric bound no longer holds
    with pytest.raises(ValueError, match="cannot bound"):
        encoder_reach_samples(model)


@pytest.mark.parametrize("name", ["tiny", "16khz", "44khz_8kbps"])
def test_codes_do_not_depend_on_chunk_size(name):
    model = narrow(name)
    x = synth(model.hop_length * 37 + 11, model.sample_rate).repeat(2, 1, 1)
    x[1] *= -0.5
    with torch.no_grad():
        whole = model.encode(x)
    for chunk in (1, 4, 9, 1000):
        assert torch.equal(encode_chunked(model, x, chunk_frames=chunk), whole), chunk


@pytest.mark.parametrize("name", ["tiny", "24khz", "44khz_8kbps"])
def test_chunked_decode_equals_whole_decode(name):
    model = narrow(name)
    codes = torch.randint(0, model.codebook_size, (1, model.n_codebooks, 40))
    with torch.no_grad():
        whole = model.decode(codes)
    for chunk in (1, 3, 16, 100):
        out = decode_chunked(model, codes, chunk_frames=chunk)
        assert out.shape == whole.shape
        assert (out - whole).abs().max() < 1e-4


def test_streaming_equals_offline_with_irregular_pieces():
    model = narrow("tiny")
    x = synth(5000)
    with torch.no_grad():
        codes = model.encode(x)
        offline = model.decode(codes)
    enc = StreamingEncoder(model, chunk_frames=5)
    pieces, i, sizes = [], 0, [1, 7, 300, 33, 900, 2, 1500]
    while i < x.shape[-1]:
        n = sizes[len(pieces) % len(sizes)]
        pieces.append(enc.push(x[..., i : i + n]))
        i += n
    pieces.append(enc.flush())
    assert torch.equal(torch.cat(pieces, -1), codes)
    dec = StreamingDecoder(model, chunk_frames=4)
    code_pieces = [codes[..., i : i + 3] for i in range(0, codes.shape[-1], 3)]
    out, emitted_after = [], []
    for piece in code_pieces:
        audio = dec.push(piece)
        out.append(audio)
        emitted_after.append(sum(a.shape[-1] for a in out))
    out.append(dec.flush())
    audio = torch.cat(out, -1)
    assert audio.shape == offline.shape
    assert (audio - offline).abs().max() < 1e-5
    # Bounded latency: after k frames have arrived, all but the last latency_frames are out.
    for k, emitted in enumerate(emitted_after, 1):
        received = min(3 * k, codes.shape[-1])
        assert emitted >= (received - dec.latency_frames) * model.hop_length
    assert torch.equal(torch.cat(list(stream_decode(model, code_pieces, 4)), -1), audio)


@torch.no_grad()
def test_streaming_encoder_runs_a_bf16_model():
    model = rvqgan.build_model("tiny").folded("bf16")
    x = synth(3000)
    codes = encode_chunked(model, x, chunk_frames=7)
    assert codes.shape == (1, model.n_codebooks, math.ceil(3000 / model.hop_length))
    assert torch.equal(codes, model.encode(x))
