"""Shared fixtures: paths to ../shared, a tiny model, synthetic audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import rvqgan

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "dac-reference"
DATA = SHARED / "data"


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
