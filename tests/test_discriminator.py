"""Discriminators: shapes, the paper's parameter count, and the STFT framing of the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import synth

from rvqgan.config import DiscriminatorConfig
from rvqgan.discriminator import BandSTFTDiscriminator, Discriminator


def test_discriminator_shapes_and_parameter_count():
    d = Discriminator(DiscriminatorConfig(period_channels=(4, 8), stft_channels=4))
    feats = d(synth(4000).repeat(2, 1, 1))
    assert len(feats) == 8 and all(f[-1].shape[0] == 2 for f in feats)
    full = Discriminator()
    assert sum(p.numel() for p in full.parameters()) == 42_519_760  # the paper's discriminator


@pytest.mark.parametrize("length", [4000, 4096, 4100])
def test_stft_discriminator_frames_as_the_reference(length):
    """ceil(T / hop) frames, frame k centred at k·hop + hop/2 (audiotools' match_stride=True)."""
    window = 512
    hop = window // 4
    d = BandSTFTDiscriminator(window, 4, DiscriminatorConfig().bands)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(length).astype(np.float32)).view(1, 1, -1)
    spec = d.spectrogram(x)  # [B, 2, frames, bins]
    assert spec.shape == (1, 2, math.ceil(length / hop), window // 2 + 1)
    signal = x[0, 0].double().numpy()
    hann = np.hanning(window + 1)[:-1]  # periodic Hann

    def frame(k: int) -> np.ndarray:
        return spec[0, 0, k].double().numpy() + 1j * spec[0, 1, k].double().numpy()

    # An interior frame is the windowed signal centred at k·hop + hop/2.
    k = spec.shape[2] // 2
    centre = k * hop + hop // 2
    expected = np.fft.rfft(signal[centre - window // 2 : centre + window // 2] * hann)
    assert np.allclose(frame(k), expected, atol=1e-4 * np.abs(expected).max())
    # The edge frames: the reference's reflect padding by (w − hop)/2 (+ up to a hop on the right),
    # then torch.stft's own centring padding of w/2, dropping two frames at each end.
    right = -length % hop
    padded = np.pad(
        np.pad(signal, ((window - hop) // 2, (window - hop) // 2 + right), mode="reflect"), window // 2, mode="reflect"
    )
    for k in (0, spec.shape[2] - 1):
        start = (k + 2) * hop
        expected = np.fft.rfft(padded[start : start + window] * hann)
        assert np.allclose(frame(k), expected, atol=1e-4 * np.abs(expected).max()), k
