"""The Improved RVQGAN codec: convolutional encoder, residual vector quantiser, decoder."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .identity import tensors_digest
from .layers import Snake1d, WNConv1d, WNConvTranspose1d, conv_padding, fold_weight_norm, strided_padding, without_autocast
from .precision import resolve
from .quantize import QuantizerOutput, ResidualVectorQuantize


class ResidualUnit(nn.Module):
    """Snake → dilated conv (k7) → Snake → conv (k1), plus the input."""

    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=conv_padding(7, dilation)),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        crop = (x.shape[-1] - y.shape[-1]) // 2
        if crop > 0:  # only when convs run unpadded
            x = x[..., crop:-crop]
        return x + y


class EncoderBlock(nn.Module):
    """Three residual units at `dim / 2` channels (dilations 1, 3, 9), then a strided conv to `dim`."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(dim // 2, 1),
            ResidualUnit(dim // 2, 3),
            ResidualUnit(dim // 2, 9),
            Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=strided_padding(stride)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    """Waveform `[B, 1, T]` → continuous latent `[B, latent_dim, T / hop]`."""

    def __init__(self, d_model: int, strides: tuple[int, ...], d_latent: int):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride))
        layers += [Snake1d(d_model), WNConv1d(d_model, d_latent, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake → transposed conv (upsample by `stride`) → three residual units (dilations 1, 3, 9)."""

    def __init__(self, input_dim: int, output_dim: int, stride: int, output_padding: bool):
        super().__init__()
        # Kernel 2s with padding ceil(s/2) yields s·L + s − 2·ceil(s/2) samples: one short for odd s.
        extra = stride % 2 if output_padding else 0
        self.block = nn.Sequential(
            Snake1d(input_dim),
            WNConvTranspose1d(
                input_dim,
                output_dim,
                kernel_size=2 * stride,
                stride=stride,
                padding=strided_padding(stride),
                output_padding=extra,
            ),
            ResidualUnit(output_dim, 1),
            ResidualUnit(output_dim, 3),
            ResidualUnit(output_dim, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


TAIL_LAYERS = 4  # the decoder's last DecoderBlock, then Snake1d, WNConv1d, Tanh: kept in fp32 (`Decoder.to_bf16`)


class Decoder(nn.Module):
    """Latent `[B, latent_dim, F]` → waveform `[B, 1, F · hop]` in [-1, 1] (tanh output)."""

    def __init__(self, input_channel: int, channels: int, rates: tuple[int, ...], output_padding: bool):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(input_channel, channels, kernel_size=7, padding=3)]
        for i, stride in enumerate(rates):
            layers.append(DecoderBlock(channels // 2**i, channels // 2 ** (i + 1), stride, output_padding))
        output_dim = channels // 2 ** len(rates)
        layers += [Snake1d(output_dim), WNConv1d(output_dim, 1, kernel_size=7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.fp32_tail: int | None = None  # index of the first layer run in fp32 after bf16 ones (`to_bf16`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Under bf16 autocast (training), the tail that `to_bf16` keeps in fp32 runs in fp32 too."""
        if self.fp32_tail is None and not torch.is_autocast_enabled(x.device.type):
            return self.model(x)
        tail = len(self.model) - TAIL_LAYERS
        x = self.model[:tail](x)
        tail_dtype = next(self.model[tail].parameters()).dtype  # fp32 unless cast again since
        with without_autocast(x):
            return self.model[tail:](x.to(tail_dtype))

    def to_bf16(self) -> None:
        """Run in bfloat16 except the last upsampling block and the output layers, which stay in fp32.

        bf16 rounding in the layers at the output rate is white noise about 50 dB below the signal,
        and nothing after them filters it: a broadband floor that fills bands the input leaves silent
        (above 8 kHz in 16 kHz-sourced speech). Rounding in earlier layers is shaped by the fp32 tail
        and stays far below it. The tail is the least compute of the decoder's blocks (fewest channels).
        """
        self.to(torch.bfloat16)
        self.fp32_tail = len(self.model) - TAIL_LAYERS
        assert isinstance(self.model[self.fp32_tail], DecoderBlock)
        for layer in list(self.model)[self.fp32_tail :]:
            layer.float()


@dataclass
class EncodeOutput:
    """Everything the encoder side computes.

    Attributes:
        features: continuous encoder output before quantisation `[B, D, F]`.
        z: quantised latent `[B, D, F]` (what the decoder consumes).
        codes: `[B, N, F]` int64.
        latents: projected per-codebook latents `[B, N · codebook_dim, F]`.
        commitment_loss, codebook_loss: scalars (see `QuantizerOutput`).
    """

    features: torch.Tensor
    z: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor


@dataclass
class CodecOutput(EncodeOutput):
    """`EncodeOutput` plus the reconstruction `audio` `[B, 1, T]`, trimmed to the input length."""

    audio: torch.Tensor = None  # type: ignore[assignment]


def _init_weights(module: nn.Module) -> None:
    # The reference calls trunc_normal_(std=0.02) on weight-normed convs, which is a no-op
    # because their weight is recomputed from g and v; we keep PyTorch's default init of v
    # (g = ‖v‖) and zero biases, which is what its models actually start from.
    if isinstance(module, nn.Conv1d) and module.bias is not None:
        nn.init.zeros_(module.bias)


class Codec(nn.Module):
    """Improved RVQGAN (Kumar et al., 2023): waveform ↔ discrete codes.

    Parameter names match the released DAC checkpoints, so their state dicts load as they are.
    Audio is mono at `sample_rate`; inputs of any length are right-padded to a multiple of
    `hop_length` internally.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        latent_dim = config.latent_dim
        assert latent_dim is not None  # ModelConfig.__post_init__ fills it in
        self.encoder = Encoder(config.encoder_dim, config.encoder_rates, latent_dim)
        self.quantizer = ResidualVectorQuantize(
            latent_dim, config.n_codebooks, config.codebook_size, config.codebook_dim, config.quantizer_dropout
        )
        self.decoder = Decoder(latent_dim, config.decoder_dim, config.decoder_rates, config.output_padding)
        self.apply(_init_weights)
        # SHA-256 of the weights as a loader read them, and the tensors' version counters then; see `weights_id`.
        self.weights_sha256: str | None = None
        self._weights_versions: tuple[int, ...] = ()
        # `weights_id`s of other trained models whose codes this one decodes: a fine-tune that kept
        # their encoder and quantizer (recorded in our checkpoints as "decodes_codes_of").
        self.decodes_codes_of: frozenset[str] = frozenset()
        # What a fine-tune was trained from ("SOURCE (weights ID)"), as its training recorded it.
        self.finetuned_from: str | None = None

    def _versions(self) -> tuple[int, ...]:
        return tuple(t._version for t in itertools.chain(self.parameters(), self.buffers()))

    def set_weights_digest(self, digest: str) -> None:
        """Record `digest` (SHA-256 hex) as the identity of the weights the model holds now."""
        self.weights_sha256 = digest
        self._weights_versions = self._versions()

    def weights_digest(self) -> str:
        """The SHA-256 recorded by the loader, while no weight has changed since; else that of the current weights."""
        if self.weights_sha256 is not None and self._weights_versions == self._versions():
            return self.weights_sha256
        return tensors_digest(self.state_dict())

    def weights_id(self) -> str:
        """16 hex digits naming this trained model: the digest of its weights as loaded from a file.

        Code files record it, so a file is not decoded by a different trained model of the same
        architecture. Copies made by `folded` keep it. A model that was not loaded from a file,
        or whose weights changed after loading (in-place updates: training, `remove_output_dc`,
        `load_state_dict`), gets the digest of its current weights.
        """
        return self.weights_digest()[:16]

    def makes_codes_of(self, weights_id: str) -> bool:
        """Whether codes made by the model `weights_id` names are this model's codes (its own, or a
        source it was fine-tuned from with the encoder and quantizer frozen, `decodes_codes_of`)."""
        return weights_id == self.weights_id() or weights_id in self.decodes_codes_of

    def provenance(self) -> dict[str, str]:
        """What the model records about its origin, as string metadata (what each export writes and each
        loader reads back, `checkpoint.set_provenance`): "finetuned_from" and "decodes_codes_of" (weights ids,
        comma-separated), where there is something to say."""
        record = {"finetuned_from": self.finetuned_from or "", "decodes_codes_of": ",".join(sorted(self.decodes_codes_of))}
        return {k: v for k, v in record.items() if v}

    # Properties users need to size inputs and report bitrates.
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def n_codebooks(self) -> int:
        return self.config.n_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def frame_rate(self) -> float:
        """Code frames per second (e.g. 86.13 for 44.1 kHz / 512)."""
        return self.sample_rate / self.hop_length

    @property
    def encode_precision(self) -> str:
        """ "bf16" where the encoder runs in bfloat16 (`folded`), else "fp32": what code files and token
        shards record of how their codes were made."""
        weight = next(self.encoder.parameters(), None)
        return "bf16" if weight is not None and weight.dtype == torch.bfloat16 else "fp32"

    def bitrate(self, n_codebooks: int | None = None) -> float:
        """True bitrate in bits/s of the codes for `n_codebooks` (all if None)."""
        n = self.n_codebooks if n_codebooks is None else n_codebooks
        return n * self.bits_per_code * self.frame_rate

    def n_codebooks_for_kbps(self, kbps: float, channels: int = 1) -> int:
        """The most codebooks whose true bitrate for `channels` channels (each coded on its own, so
        the bitrate of one times `channels`) does not exceed `kbps`; ValueError if even one does."""
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        fits = kbps * 1000 / (channels * self.bitrate(1)) + 1e-9  # codebooks that fit; inf for a huge kbps
        if not fits >= 1:
            lowest = self.bitrate(1) * channels / 1000
            what = "" if channels == 1 else f" for {channels} channels"
            raise ValueError(f"{kbps:g} kbps is below this model's lowest bitrate{what} ({lowest:.2f} kbps with 1 codebook)")
        return int(min(fits, self.n_codebooks))

    def num_frames(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.hop_length)

    def _check_audio(self, audio: torch.Tensor) -> torch.Tensor:
        if not isinstance(audio, torch.Tensor) or not audio.is_floating_point():
            raise TypeError(f"audio must be a floating-point tensor [B, 1, T], got {_describe(audio)}")
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be [B, 1, T], got {list(audio.shape)}")
        if audio.shape[-1] == 0:
            raise ValueError("audio is empty (T = 0)")
        return audio

    def preprocess(self, audio: torch.Tensor) -> torch.Tensor:
        """Right-pad `[B, 1, T]` with zeros to `[B, 1, ceil(T / hop) · hop]`."""
        self._check_audio(audio)
        pad = self.num_frames(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        return nn.functional.pad(audio, (0, pad))

    def encode_features(self, audio: torch.Tensor) -> torch.Tensor:
        """The encoder's continuous output `[B, D, t / hop]` (float32) for audio `[B, 1, t]`.

        No padding is added: `t` should be a whole number of frames (`preprocess` pads to one),
        or the last partial frame is dropped. The input is cast to the encoder's dtype (bf16
        for `folded("bf16")`) here, so every caller runs the encoder the same way.
        """
        return self.encoder(audio.to(_dtype_of(self.encoder))).float().contiguous()

    def quantize(self, features: torch.Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """Quantise encoder features `[B, D, F]` with the first `n_codebooks` codebooks (all if None).

        Always in float32, under bf16 autocast (training) too (`ResidualVectorQuantize`).
        """
        return self.quantizer(features.float(), self.check_n_codebooks(n_codebooks))

    def check_n_codebooks(self, n_codebooks: int | None) -> int | None:
        """`n_codebooks` if it is None or an int in [1, n_codebooks]; TypeError or ValueError otherwise."""
        if n_codebooks is None:
            return None
        if isinstance(n_codebooks, bool) or not isinstance(n_codebooks, (int, np.integer)):
            raise TypeError(f"n_codebooks must be an integer, got {n_codebooks!r}")
        if not 1 <= n_codebooks <= self.n_codebooks:
            raise ValueError(f"n_codebooks must be between 1 and {self.n_codebooks}, got {n_codebooks}")
        return int(n_codebooks)

    def encode_output(self, audio: torch.Tensor, n_codebooks: int | None = None) -> EncodeOutput:
        """Encode `[B, 1, T]` and return features, quantised latent, codes and losses (F = ceil(T / hop))."""
        features = self.encode_features(self.preprocess(audio))
        q = self.quantize(features, n_codebooks)
        return EncodeOutput(features, q.z, q.codes, q.latents, q.commitment_loss, q.codebook_loss)

    def encode(self, audio: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """Audio `[B, 1, T]` at `sample_rate` → codes `[B, n_codebooks, ceil(T / hop)]` (int64).

        Raises ValueError for audio with NaN or infinite samples (their codes would be arbitrary).
        """
        self._check_audio(audio)
        if not bool(torch.isfinite(audio).all()):
            raise ValueError("audio contains NaN or infinite samples")
        return self.encode_output(audio, n_codebooks).codes

    def codes_to_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, N', F]` → quantised latent z `[B, D, F]` (the decoder's input)."""
        return self.quantizer.from_codes(codes).z

    def latents_to_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """Projected latents `[B, N'·codebook_dim, F]` → codes `[B, N', F]` (nearest entries)."""
        return self.quantizer.from_latents(latents).codes

    def decode_latents(self, z: torch.Tensor, whole_frames: bool = True) -> torch.Tensor:
        """Quantised latent `[B, D, F]` → audio `[B, 1, F · hop]`.

        A decoder without `output_padding` (the reference's: its odd-stride blocks emit one
        sample less each, 8 in all for the 24 and 16 kHz models) is run as the reference runs it,
        and the samples it does not emit are zeros appended outside the network, so every caller
        gets `F · hop` samples whose first ones are the reference's exactly. `whole_frames=False`
        returns what the network emits (the reference's length; shorter still with unpadded convs).
        """
        audio = self.decoder(z.to(_dtype_of(self.decoder))).float()
        missing = z.shape[-1] * self.hop_length - audio.shape[-1]
        return nn.functional.pad(audio, (0, missing)) if whole_frames and missing > 0 else audio

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, N', F]` for any 1 ≤ N' ≤ n_codebooks, F ≥ 1 → audio `[B, 1, F · hop]`.

        Raises TypeError for codes that are not an integer tensor, ValueError for a wrong shape
        or codes outside `[0, codebook_size)`.
        """
        self.check_codes(codes)
        return self.decode_latents(self.codes_to_latents(codes))

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise TypeError/ValueError unless `codes` is an integer tensor `[B, N', F]` this model can decode."""
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor [B, N, F], got {_describe(codes)}")
        if codes.dim() != 3 or codes.shape[0] == 0 or codes.shape[-1] == 0:
            raise ValueError(f"codes must be [B, N, F] with B, F ≥ 1, got {list(codes.shape)}")
        if not 1 <= codes.shape[1] <= self.n_codebooks:
            raise ValueError(f"codes have {codes.shape[1]} codebooks; this model has 1 to {self.n_codebooks}")
        if bool((codes < 0).any()) or bool((codes >= self.codebook_size).any()):
            raise ValueError(
                f"codes must be in [0, {self.codebook_size}), got values in [{int(codes.min())}, {int(codes.max())}]"
            )

    def forward(self, audio: torch.Tensor, n_codebooks: int | None = None) -> CodecOutput:
        """Encode, quantise (with dropout in training mode) and decode; output trimmed to T."""
        out = self.encode_output(audio, n_codebooks)
        recon = self.decode_latents(out.z)[..., : audio.shape[-1]]
        return CodecOutput(**vars(out), audio=recon)

    @torch.no_grad()
    def remove_output_dc(self, examples: list[torch.Tensor], iterations: int = 3) -> float:
        """Shift the decoder's last bias so that decoded audio carries no constant offset.

        GAN-trained decoders drift to a small DC offset (the mel and adversarial losses barely
        see 0 Hz); it shows as a low-frequency floor in pauses. The offset is measured as the
        mean of `decode(encode(x)) − x` over `examples` (each `[1, 1, T]`, all codebooks) and
        removed through the bias before the tanh, scaled by tanh's mean slope.

        Returns:
            The offset measured before the correction (in full-scale units).
        """
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        conv = self.decoder.model[-2]
        assert isinstance(conv, nn.Conv1d) and conv.bias is not None  # the last conv, before the tanh
        bias = conv.bias
        was_training = self.training
        self.eval()
        measured: list[float] = []
        try:
            for _ in range(iterations):
                offsets, slopes = [], []
                for x in examples:
                    y = self.decode(self.encode(x))[..., : x.shape[-1]]
                    offsets.append(float((y - x).mean()))
                    slopes.append(float((1 - y.pow(2)).mean()))
                offset = float(np.median(offsets))
                measured.append(offset)
                bias -= offset / max(float(np.mean(slopes)), 0.1)
        finally:
            self.train(was_training)
        return measured[0]

    def folded(self, precision: str = "fp32") -> Codec:
        """An eval-mode inference copy with weight norm folded into plain conv weights.

        Args:
            precision: "fp32" (same outputs as the training path, within 1e-5) or "bf16"
                (encoder and decoder weights and activations in bfloat16, except the decoder's
                last block and output layers, `Decoder.to_bf16`; the quantiser's lookup stays in
                fp32, so codes differ only where bf16 moves a latent across a Voronoi border).
                bf16 is only faster on CPUs with native bf16 (AVX512-BF16/AMX) or GPUs. "auto": each
                of encoder and decoder in what `precision.resolve` picks for it on the device the model
                is on now (move it first; `loading.inference_model` also keeps fp32-only backends fp32).
        """
        device = next(self.parameters()).device
        encode, decode = resolve(precision, "encode", device), resolve(precision, "decode", device)
        model = fold_weight_norm(self).eval()
        if encode == "bf16":
            model.encoder.to(torch.bfloat16)
        if decode == "bf16":
            model.decoder.to_bf16()
        model.set_weights_digest(self.weights_digest())
        model.decodes_codes_of, model.finetuned_from = self.decodes_codes_of, self.finetuned_from
        return model


def _dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__
