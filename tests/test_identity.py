"""Weights and architecture digests: what they cover and what they leave out."""

from __future__ import annotations

import hashlib
import io
import json

import soundfile as sf
import torch
from conftest import synth

from rvqgan.identity import config_digest, digest_matches, tensors_digest


def test_config_digest_covers_the_architecture_only(tiny_model, tmp_path):
    from rvqgan.bitstream import Reader
    from rvqgan.config import ModelConfig
    from rvqgan.files import compress_file, decompress_file

    cfg = tiny_model.config
    no_dropout = ModelConfig(**{**cfg.to_dict(), "quantizer_dropout": 0.0})
    fewer = ModelConfig(**{**cfg.to_dict(), "n_codebooks": 3})
    assert config_digest(no_dropout) == config_digest(cfg) != config_digest(fewer)
    # Files written before carry the digest of the whole config: still accepted, for that config only.
    whole = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    assert whole != config_digest(cfg) and digest_matches(whole, cfg) and not digest_matches(whole, fewer)
    wav = tmp_path / "x.wav"
    sf.write(wav, synth(8000)[0, 0].numpy(), 16000)
    buf = io.BytesIO()
    compress_file(tiny_model, str(wav), buf)
    buf.seek(0)
    reader = Reader(buf)
    assert reader.header.config_hash == config_digest(cfg)  # what new files carry
    assert decompress_file(tiny_model, reader, str(tmp_path / "y.wav")) == 8000


def test_tensors_digest_covers_names_dtypes_shapes_and_bytes():
    state = {"a": torch.arange(6, dtype=torch.float32), "b": torch.zeros(2)}
    base = tensors_digest(state)
    assert base == tensors_digest(dict(reversed(list(state.items()))))  # name order, not insertion order
    assert base != tensors_digest({**state, "a": state["a"].clone().index_fill_(0, torch.tensor([5]), 7.0)})
    assert base != tensors_digest({**state, "a": state["a"].double()})
    assert base != tensors_digest({**state, "a": state["a"].reshape(2, 3)})
    assert base != tensors_digest({"c": state["a"], "b": state["b"]})
    assert len(base) == 64 and int(base, 16) >= 0
