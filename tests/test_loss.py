"""Losses: the mel filterbank, reconstruction distances, SI-SDR, and the GAN and feature-matching losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import synth

from rvqgan.config import DiscriminatorConfig
from rvqgan.discriminator import Discriminator
from rvqgan.loss import (
    STFT_WINDOWS,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_filterbank,
    multiscale_mel_loss,
    multiscale_stft_loss,
    si_sdr,
    stft_magnitude,
)


def test_mel_filterbank_matches_slaney_reference_values():
    librosa = pytest.importorskip("librosa")
    fb = mel_filterbank(22050, 2048, 128)
    assert fb.shape == (128, 1025)
    reference = librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128)  # Slaney scale and area normalisation
    assert np.allclose(fb.numpy(), reference, atol=1e-6)
    # Slaney-normalised triangles: each filter's area in Hz is 1 (±bin discretisation).
    area = fb.sum(1) * 22050 / 2048
    assert torch.allclose(area[20:], torch.ones_like(area[20:]), atol=0.05)


def test_losses_on_known_cases():
    x = synth(8000)
    assert multiscale_mel_loss(x, x, 16000) == 0
    assert multiscale_mel_loss(0.5 * x, x, 16000) > 0.5  # 7 scales × |log10 0.5| ≈ 2.1, less where clamped
    assert multiscale_stft_loss(x, x) == 0
    noise = torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(0))  # no bin near the clamp
    halved = sum(math.log10(4) + 0.5 * stft_magnitude(noise, w).mean().item() for w in STFT_WINDOWS)
    assert math.isclose(multiscale_stft_loss(0.5 * noise, noise).item(), halved, rel_tol=1e-4)  # log term + L1 term
    assert si_sdr(x, 3 * x).item() > 70
    noisy = x + 0.1 * x.std() * torch.randn_like(x)  # SNR 20 dB
    assert abs(si_sdr(x, noisy).item() - 20) < 0.5


def test_gan_and_feature_matching_losses():
    d = Discriminator(DiscriminatorConfig(period_channels=(4, 8), stft_channels=4))
    real = d(synth(4000))
    assert feature_matching_loss(real, real) == 0
    # Two sub-discriminators, each one feature map and logits; real logits 2, fake logits −2.
    fmap = torch.randn(1, 3, 5)
    real = [[fmap, torch.full((1, 4), 2.0)], [fmap, torch.full((1, 4), 2.0)]]
    fake = [[fmap + 0.5, torch.full((1, 4), -2.0)], [fmap - 0.5, torch.full((1, 4), -2.0)]]
    assert discriminator_loss(real, fake, "lsgan").item() == 2 * (4 + 1)  # f² + (1 − r)²
    assert discriminator_loss(real, fake, "hinge").item() == 0  # relu(1 − 2) + relu(1 − 2)
    assert generator_adversarial_loss(fake, "lsgan").item() == 2 * 9  # (1 − f)²
    assert generator_adversarial_loss(fake, "hinge").item() == 2 * 2  # −f
    assert math.isclose(feature_matching_loss(real, fake).item(), 2 * 0.5, rel_tol=1e-6)  # logits are not features
