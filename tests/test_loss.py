"""Losses: the mel filterbank, reconstruction distances, SI-SDR, and the GAN and feature-matching losses."""

from __future__ import annotations

import torch
from conftest import synth

from rvqgan.config import DiscriminatorConfig
from rvqgan.discriminator import Discriminator
from rvqgan.loss import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_filterbank,
    multiscale_mel_loss,
    multiscale_stft_loss,
    si_sdr,
)


def test_mel_filterbank_matches_slaney_reference_values():
    fb = mel_filterbank(22050, 2048, 128)
    assert fb.shape == (128, 1025)
    # Slaney-normalised triangles: each filter's area in Hz is 1 (±bin discretisation).
    df = 22050 / 2048
    area = fb.sum(1) * df
    assert torch.allclose(area[20:], torch.ones_like(area[20:]), atol=0.05)
    assert fb[0, 1] > 0 and fb[0, 10] == 0


def test_losses_on_known_cases():
    x = synth(8000)
    assert multiscale_mel_loss(x, x, 16000) == 0
    assert multiscale_mel_loss(0.5 * x, x, 16000) > 0.5  # 7 scales × |log10 0.5| ≈ 2.1, less where clamped
    assert multiscale_stft_loss(x, x) == 0
    assert si_sdr(x, 3 * x).item() > 70
    noisy = x + 0.1 * x.std() * torch.randn_like(x)  # SNR 20 dB
    assert abs(si_sdr(x, noisy).item() - 20) < 0.5


def test_gan_and_feature_matching_losses():
    d = Discriminator(DiscriminatorConfig(period_channels=(4, 8), stft_channels=4))
    real, fake = d(synth(4000)), d(torch.zeros(1, 1, 4000))
    assert discriminator_loss(real, fake) > 0 and generator_adversarial_loss(fake, "hinge").dim() == 0
    assert feature_matching_loss(real, real) == 0
