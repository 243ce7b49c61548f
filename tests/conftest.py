"""Shared fixtures: paths to ../shared, skip marks for when it is missing, a tiny model, synthetic audio.

The reference fixtures in ../shared/fixtures/dac-reference (weights, expected tensors, a
`.dac` file and its decoding) were made with descript-audio-codec 1.0.0 by
../shared/fixtures/dac-reference/make_reference_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import rvqgan
from rvqgan.bitstream import Header, Writer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "dac-reference"
DATA = SHARED / "data"

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"reference fixtures not found at {FIXTURES} (made by make_reference_fixtures.py in that folder)",
)
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"audio data not found at {DATA}")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_model() -> rvqgan.Codec:
    return rvqgan.build_model("tiny")


def synth(n: int, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Sines plus noise, `[1, 1, n]`."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / sample_rate
    x = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.1 * torch.sin(2 * torch.pi * 1770 * t) + 0.05 * torch.randn(n, generator=g)
    return x.view(1, 1, n)


def narrow(name: str) -> rvqgan.Codec:
    """A cheap model with the strides (and so the length arithmetic and receptive field) of a preset."""
    cfg = rvqgan.preset(name)
    small = rvqgan.ModelConfig(
        **{**cfg.to_dict(), "encoder_dim": 4, "decoder_dim": 16 * 2 ** len(cfg.decoder_rates), "latent_dim": 16}
    )
    torch.manual_seed(0)
    return rvqgan.Codec(small).eval()


def write_rvq_unchecked(header: Header, codes: np.ndarray, monkeypatch: pytest.MonkeyPatch, **changes: object) -> bytes:
    """An `.rvq` file of `codes` written as `header` says, but stored under `header` with `changes`
    (values the writer would refuse: hostile files for the reader's checks)."""
    import dataclasses
    import io

    with monkeypatch.context() as m:
        m.setattr(Header, "check", lambda self: None)
        stored = dataclasses.replace(header, **changes).to_bytes()
        m.setattr(Header, "to_bytes", lambda self: stored)
        buf = io.BytesIO()
        writer = Writer(buf, header)
        writer.write(codes)
        writer.close()
    return buf.getvalue()


def write_dac(path, codes=None, **meta):
    """A `.dac` file (path or binary file) as the reference writes it (`np.save` of a pickled dict), with `meta`
    overriding its metadata."""
    metadata = {
        "input_db": np.array([-20.0], np.float32),
        "original_length": 16000,
        "sample_rate": 16000,
        "chunk_length": 72,
        "channels": 1,
        "padding": True,
        "dac_version": "1.0.0",
        **meta,
    }
    codes = np.zeros((1, 2, 50), np.uint16) if codes is None else codes
    if hasattr(path, "write"):
        np.save(path, {"codes": codes, "metadata": metadata}, allow_pickle=True)
        return path
    with open(path, "wb") as f:
        np.save(f, {"codes": codes, "metadata": metadata}, allow_pickle=True)
    return path
