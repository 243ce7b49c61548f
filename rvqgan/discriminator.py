"""Discriminators: multi-period waveform (HiFi-GAN) and multi-band multi-scale complex STFT (Improved RVQGAN §3.4)."""

from __future__ import annotations

import typing

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .config import DiscriminatorConfig


def _conv2d(
    cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)
) -> nn.Module:
    return weight_norm(nn.Conv2d(cin, cout, kernel, stride, padding))


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into `[T / p, p]` and applies 2-d convs along time (HiFi-GAN's MPD branch)."""

    def __init__(self, period: int, channels: tuple[int, ...]):
        super().__init__()
        self.period = period
        layers, cin = [], 1
        for i, cout in enumerate(channels):
            last = i == len(channels) - 1
            layers.append(_conv2d(cin, cout, (5, 1), (1, 1) if last else (3, 1), (2, 0)))
            cin = cout
        self.convs = nn.ModuleList(layers)
        self.conv_post = _conv2d(cin, 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`[B, 1, T]` → feature maps, the last being the logits."""
        pad = self.period - x.shape[-1] % self.period
        x = F.pad(x, (0, pad), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        feats.append(self.conv_post(x))
        return feats


class BandSTFTDiscriminator(nn.Module):
    """Complex STFT (real, imaginary as two channels) split into frequency bands, one conv stack per band."""

    def __init__(self, window: int, channels: int, bands: tuple[tuple[float, float], ...]):
        super().__init__()
        self.window = window
        n_bins = window // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    _conv2d(2, channels, (3, 9), padding=(1, 4)),
                    _conv2d(channels, channels, (3, 9), (1, 2), (1, 4)),
                    _conv2d(channels, channels, (3, 9), (1, 2), (1, 4)),
                    _conv2d(channels, channels, (3, 9), (1, 2), (1, 4)),
                    _conv2d(channels, channels, (3, 3), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList([stack() for _ in self.bands])
        self.conv_post = _conv2d(channels, 1, (3, 3), padding=(1, 1))
        self.hann: torch.Tensor
        self.register_buffer("hann", torch.hann_window(window), persistent=False)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """Complex STFT of `[B, 1, T]` as `[B, 2, ceil(T / hop), bins]` (real, imaginary), framed as the reference.

        The reference frames with audiotools' `match_stride=True`: reflect-pad (w − hop)/2 on both
        sides plus up to a multiple of hop on the right, a centred STFT, then drop two frames at
        each end; frame k is centred at sample k·hop + hop/2.
        """
        hop = self.window // 4
        x = x.reshape(-1, x.shape[-1]).float()
        right = -x.shape[-1] % hop
        pad = (self.window - hop) // 2
        x = F.pad(x[:, None], (pad, pad + right), mode="reflect")[:, 0]
        spec = torch.stft(x, self.window, hop, window=self.hann, center=True, pad_mode="reflect", return_complex=True)
        return torch.view_as_real(spec[..., 2:-2]).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`[B, 1, T]` → feature maps of every band's conv stack, the logits last."""
        spec = self.spectrogram(x)
        feats, outs = [], []
        for (lo, hi), convs in zip(self.bands, typing.cast(list[nn.ModuleList], list(self.band_convs))):
            band = spec[..., lo:hi]
            for conv in convs:
                band = F.leaky_relu(conv(band), 0.1)
                feats.append(band)
            outs.append(band)
        feats.append(self.conv_post(torch.cat(outs, -1)))
        return feats


class Discriminator(nn.Module):
    """All sub-discriminators, built from a `DiscriminatorConfig` (its defaults: the paper's discriminator).

    Input audio is DC-removed and peak-normalised to 0.8 first, as in the reference.
    """

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        cfg = config or DiscriminatorConfig()
        subs: list[nn.Module] = [PeriodDiscriminator(p, tuple(cfg.period_channels)) for p in cfg.periods]
        subs += [BandSTFTDiscriminator(w, cfg.stft_channels, cfg.bands) for w in cfg.fft_sizes]
        self.discriminators = nn.ModuleList(subs)

    def forward(self, audio: torch.Tensor) -> list[list[torch.Tensor]]:
        """`[B, 1, T]` → per sub-discriminator, its feature maps with the logits last."""
        x = audio - audio.mean(-1, keepdim=True)
        x = 0.8 * x / (x.abs().amax(-1, keepdim=True) + 1e-9)
        return [d(x) for d in self.discriminators]
