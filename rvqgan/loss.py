"""Losses and the distances built from them, as pure functions on `[B, 1, T]` tensors.

Definitions follow the reference implementation (descript-audio-codec 1.0.0 with its
`conf/base.yml` settings); the evaluation metrics reuse the same functions.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .config import LossConfig

STFT_WINDOWS = (2048, 512)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return torch.where(f >= min_log_hz, min_log_mel + torch.log(f.clamp(min=1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=64)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Slaney-normalised triangular mel filterbank `[n_mels, n_fft // 2 + 1]` (= librosa.filters.mel, fmin 0, fmax sr/2)."""
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_pts = torch.linspace(
        _hz_to_mel(torch.tensor(0.0, dtype=torch.float64)).item(),
        _hz_to_mel(torch.tensor(sample_rate / 2, dtype=torch.float64)).item(),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_pts = _mel_to_hz(mel_pts)
    fdiff = hz_pts.diff()
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights.float()


@functools.lru_cache(maxsize=64)
def _hann(n: int, device: str) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, device=device)


def stft_magnitude(audio: torch.Tensor, window: int, hop: int | None = None) -> torch.Tensor:
    """|STFT| of `[B, 1, T]` → `[B, window // 2 + 1, frames]` (hann, centred, reflect padding)."""
    hop = hop or window // 4
    x = audio.reshape(-1, audio.shape[-1]).float()
    if x.shape[-1] <= window // 2:  # reflect padding needs T > pad
        x = F.pad(x, (0, window // 2 + 1 - x.shape[-1]))
    spec = torch.stft(x, window, hop, window=_hann(window, str(x.device)), center=True, pad_mode="reflect", return_complex=True)
    return spec.abs()


def mel_spectrogram(audio: torch.Tensor, sample_rate: int, window: int, n_mels: int) -> torch.Tensor:
    """Mel magnitude spectrogram `[B, n_mels, frames]` with hop `window // 4`."""
    mag = stft_magnitude(audio, window)
    fb = mel_filterbank(sample_rate, window, n_mels).to(mag.device)
    return torch.matmul(fb, mag)


def multiscale_mel_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    sample_rate: int,
    windows: tuple[int, ...] = LossConfig.mel_windows,
    n_mels: tuple[int, ...] = LossConfig.mel_bands,
    clamp_eps: float = 1e-5,
) -> torch.Tensor:
    """Sum over scales of mean |log10 mel(x) − log10 mel(y)| (the paper's 7-scale mel loss and 'mel distance').

    Args:
        x: estimate `[B, 1, T]`; y: reference `[B, 1, T]`.
    """
    total = x.new_zeros((), dtype=torch.float32)
    for window, bands in zip(windows, n_mels):
        mx = mel_spectrogram(x, sample_rate, window, bands).clamp(min=clamp_eps).log10()
        my = mel_spectrogram(y, sample_rate, window, bands).clamp(min=clamp_eps).log10()
        total = total + (mx - my).abs().mean()
    return total


def multiscale_stft_loss(
    x: torch.Tensor, y: torch.Tensor, windows: tuple[int, ...] = STFT_WINDOWS, clamp_eps: float = 1e-5
) -> torch.Tensor:
    """Sum over windows of L1(log10 |X|², log10 |Y|²) + L1(|X|, |Y|) (the paper's 'STFT distance')."""
    total = x.new_zeros((), dtype=torch.float32)
    for window in windows:
        mx, my = stft_magnitude(x, window), stft_magnitude(y, window)
        total = total + (mx.clamp(min=clamp_eps).pow(2).log10() - my.clamp(min=clamp_eps).pow(2).log10()).abs().mean()
        total = total + (mx - my).abs().mean()
    return total


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item (zero-mean, reference first), `[B]`.

    α = (⟨ŝ, s⟩ + ε) / (‖s‖² + ε); SI-SDR = 10 log10(‖αs‖² / ‖ŝ − αs‖² + ε), as in
    "SDR – half-baked or well done?" and the reference's SISDRLoss.
    """
    s = reference.reshape(reference.shape[0], -1).double()
    e = estimate.reshape(estimate.shape[0], -1).double()
    s = s - s.mean(-1, keepdim=True)
    e = e - e.mean(-1, keepdim=True)
    alpha = ((e * s).sum(-1) + eps) / (s.pow(2).sum(-1) + eps)
    target = alpha[:, None] * s
    noise = e - target
    return (10 * torch.log10(target.pow(2).sum(-1) / noise.pow(2).sum(-1).clamp(min=1e-30) + eps)).float()


def discriminator_loss(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]], kind: str = LossConfig.gan
) -> torch.Tensor:
    """Adversarial loss of the discriminator, summed over sub-discriminators (last feature map = logits)."""
    loss = torch.zeros(())
    for r, f in zip(real, fake):
        if kind == "hinge":
            loss = loss + F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean()
        else:
            loss = loss + f[-1].pow(2).mean() + (1 - r[-1]).pow(2).mean()
    return loss


def generator_adversarial_loss(fake: list[list[torch.Tensor]], kind: str = LossConfig.gan) -> torch.Tensor:
    """Adversarial loss of the generator, summed over sub-discriminators."""
    loss = torch.zeros(())
    for f in fake:
        loss = loss + (-f[-1].mean() if kind == "hinge" else (1 - f[-1]).pow(2).mean())
    return loss


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Σ over sub-discriminators and their feature maps (all but the logits) of L1(fake, real.detach())."""
    loss = torch.zeros(())
    for r, f in zip(real, fake):
        for rj, fj in zip(r[:-1], f[:-1]):
            loss = loss + F.l1_loss(fj, rj.detach())
    return loss
