"""Residual vector quantisation with factorised, L2-normalised codebooks (Improved RVQGAN §3.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import WNConv1d, fp32_under_autocast


@dataclass
class QuantizerOutput:
    """Result of quantising a latent.

    Attributes:
        z: quantised latent `[B, D, F]` (sum of the codebooks' output projections).
        codes: code indices `[B, N, F]`, int64.
        latents: projected (pre-quantisation) latents `[B, N * codebook_dim, F]`.
        commitment_loss: scalar, summed over codebooks, mean over batch, dims and frames.
        codebook_loss: scalar, likewise.
    """

    z: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor


class CodebookOutput(NamedTuple):
    """What one codebook computes for one residual (`VectorQuantize.forward`).

    Attributes:
        z_q: its contribution to the quantised latent `[B, D, F]` (after the output projection,
            with a straight-through gradient).
        codes: chosen entries `[B, F]`, int64.
        latent: the projected (pre-quantisation) residual `[B, codebook_dim, F]`.
        commitment_loss, codebook_loss: per batch item, `[B]`.
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    latent: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor


class Lookup(NamedTuple):
    """Codebook entries found for codes (`from_codes`) or for projected latents (`from_latents`).

    Attributes:
        z: quantised latent `[B, D, F]` (sum of the codebooks' output projections).
        codes: `[B, N', F]`, int64.
        latents: the codebook rows, one block of `codebook_dim` channels per codebook,
            `[B, N' · codebook_dim, F]` (what `from_latents` matched; not L2-normalised).
    """

    z: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor


class VectorQuantize(nn.Module):
    """One codebook: project to `codebook_dim`, look up by cosine similarity, project back.

    Factorised (low-dimensional) and L2-normalised codes come from ViT-VQGAN (Yu et al., 2021);
    they keep every entry in use without EMA updates or restarts.
    """

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.in_proj = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim, _weight=torch.empty(codebook_size, codebook_dim))
        if not self.codebook.weight.is_meta:  # nn.Embedding's own init; the meta device only needs shapes
            nn.init.normal_(self.codebook.weight)

    def forward(self, z: torch.Tensor) -> CodebookOutput:
        """Quantise `z` `[B, D, F]` with this codebook."""
        z_e = self.in_proj(z)
        z_q, codes = self.quantize_latents(z_e)
        commitment = F.mse_loss(z_e, z_q.detach(), reduction="none").mean([1, 2])
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").mean([1, 2])
        z_q = z_e + (z_q - z_e).detach()  # straight-through: forward z_q, backward identity
        return CodebookOutput(self.out_proj(z_q), codes, z_e, commitment, codebook)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook rows for `codes` `[B, F]` → `[B, d, F]` (un-normalised, as the reference)."""
        return self.codebook(codes).transpose(1, 2)

    def quantize_latents(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest entry by cosine similarity for projected latents `[B, d, F]` → (rows `[B, d, F]`, codes `[B, F]`)."""
        b, d, f = z_e.shape
        enc = F.normalize(z_e.transpose(1, 2).reshape(b * f, d))
        book = F.normalize(self.codebook.weight)
        # Same arithmetic as the reference (squared distance of unit vectors) so ties resolve alike.
        dist = enc.pow(2).sum(1, keepdim=True) - 2 * enc @ book.t() + book.pow(2).sum(1, keepdim=True).t()
        codes = (-dist).max(1)[1].view(b, f)
        return self.lookup(codes), codes


class ResidualVectorQuantize(nn.Module):
    """N codebooks, each quantising the residual of the previous ones (SoundStream, Zeghidour et al., 2021).

    Every entry point computes in float32, under bf16 autocast (training) too: bf16 distances pick
    other entries and bf16 residuals lose what later codebooks code. Outputs are contiguous.

    Quantizer dropout (training only): a fraction `quantizer_dropout` of the batch items uses
    a random number of codebooks in [1, n], so that the model also works at low bitrates.
    Unlike the reference, a caller's `n_codebooks` is honoured in training mode too.
    """

    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int, quantizer_dropout: float):
        super().__init__()
        self.n_codebooks = n_codebooks
        self.codebook_dim = codebook_dim
        self.codebook_size = codebook_size
        self.quantizer_dropout = float(quantizer_dropout)
        self.quantizers = nn.ModuleList(VectorQuantize(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks))

    def codebook(self, i: int) -> VectorQuantize:
        """The `i`-th codebook's quantiser."""
        quantizer = self.quantizers[i]
        assert isinstance(quantizer, VectorQuantize)
        return quantizer

    def _check_n(self, n_codebooks: int | None) -> int:
        if n_codebooks is None:
            return self.n_codebooks
        n = int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_codebooks must be between 1 and {self.n_codebooks}, got {n_codebooks}")
        return n

    @fp32_under_autocast
    def forward(self, z: torch.Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """Quantise `z` `[B, D, F]` with the first `n_codebooks` codebooks (all if None).

        In training mode with dropout, items whose drawn count is below n still run every
        codebook (their codes stay valid) but the extra codebooks' outputs and losses are
        masked out, as in the reference.
        """
        n = self._check_n(n_codebooks)
        batch = z.shape[0]
        n_per_item = torch.full((batch,), n, device=z.device)
        if self.training and self.quantizer_dropout > 0:
            n_drop = int(batch * self.quantizer_dropout)
            if n_drop:
                n_per_item[:n_drop] = torch.randint(1, n + 1, (n_drop,), device=z.device)

        z_q = torch.zeros_like(z)
        residual = z
        commitment = z.new_zeros(())
        codebook = z.new_zeros(())
        codes, latents = [], []
        for i in range(n):
            out = self.codebook(i)(residual)
            mask = (i < n_per_item).to(z.dtype)
            z_q = z_q + out.z_q * mask[:, None, None]
            residual = residual - out.z_q
            commitment = commitment + (out.commitment_loss * mask).mean()
            codebook = codebook + (out.codebook_loss * mask).mean()
            codes.append(out.codes)
            latents.append(out.latent)
        return QuantizerOutput(z_q.contiguous(), torch.stack(codes, 1), torch.cat(latents, 1), commitment, codebook)

    @fp32_under_autocast
    def from_codes(self, codes: torch.Tensor) -> Lookup:
        """Codes `[B, N', F]` (N' ≤ N) → quantised latent `z` `[B, D, F]` and the codebook rows `[B, N'·d, F]`."""
        n = codes.shape[1]
        self._check_n(n)
        if codes.dtype.is_floating_point:
            raise TypeError("codes must be an integer tensor")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must be in [0, {self.codebook_size}), got values in [{int(codes.min())}, {int(codes.max())}]"
            )
        codes = codes.long()
        rows = [self.codebook(i).lookup(codes[:, i]) for i in range(n)]
        return Lookup(self._project(rows), codes, torch.cat(rows, 1))

    @fp32_under_autocast
    def from_latents(self, latents: torch.Tensor) -> Lookup:
        """Projected latents `[B, N'·d, F]` (e.g. predicted by a generative model) → nearest entries: `z`, `codes`, rows."""
        n = latents.shape[1] // self.codebook_dim
        self._check_n(n)
        d = self.codebook_dim
        latents = latents.float()
        found = [self.codebook(i).quantize_latents(latents[:, i * d : (i + 1) * d]) for i in range(n)]
        rows = [r for r, _ in found]
        return Lookup(self._project(rows), torch.stack([c for _, c in found], 1), torch.cat(rows, 1))

    def _project(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """Sum of the codebooks' output projections of their rows `[B, d, F]` → z `[B, D, F]`."""
        z_q = self.codebook(0).out_proj(rows[0])
        for i in range(1, len(rows)):
            z_q = z_q + self.codebook(i).out_proj(rows[i])
        return z_q.contiguous()


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> dict[str, Any]:
    """Per-codebook entropy (bits), perplexity, and overall bitrate efficiency of codes `[B, N, F]`.

    Efficiency = Σ_i H_i / (N · log2 K), the paper's measure: 100 % when every codebook is used uniformly.
    """
    flat = codes.transpose(0, 1).reshape(codes.shape[1], -1)
    entropies = []
    for row in flat:
        p = torch.bincount(row, minlength=codebook_size).double()
        p = p[p > 0] / p.sum()
        entropies.append(float(-(p * p.log2()).sum()))
    bits = math.log2(codebook_size)
    return {
        "entropy": entropies,
        "perplexity": [2**h for h in entropies],
        "efficiency": sum(entropies) / (bits * len(entropies)),
    }
