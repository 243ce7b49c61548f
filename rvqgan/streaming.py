"""Chunked and streaming encode/decode whose results do not depend on the chunk size.

A frame's codes depend only on input samples within the encoder's receptive field, and a
decoded sample only on code frames within the decoder's. Each chunk is therefore computed
on a window widened by that context on both sides (clipped at the signal's true ends, where
the convolutions' zero padding is the same as in a whole-signal pass), and only its centre
is kept. The results equal a whole-signal pass up to float rounding, for any chunk size,
with memory bounded by the chunk size.

The context is found by walking the network's convolutions (`conv_geometry`): their kernel
sizes, dilations, strides and paddings are read from the modules, not restated here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from .model import Codec


@dataclass(frozen=True)
class ConvGeometry:
    """The shape of one 1-d convolution, as far as its reach is concerned."""

    kernel_size: int
    dilation: int
    stride: int
    padding: int
    transposed: bool

    @property
    def reach(self) -> int:
        """Positions of its input, on either side, that one output position can depend on.

        A conv reads `(k − 1)·d + 1` input positions per output; half of that span, rounded up,
        bounds how far it reaches beyond the input positions the output stands for (exact for
        the network's 'same'-padded convs, an upper bound for its strided ones). A transposed
        conv's output reads the inputs whose `k` taps (`d` apart) cover it, a span of
        `(k − 1)·d` output samples, i.e. `(k − 1)·d / stride` input positions: the bound is half
        of that, rounded up (1 input position for kernel 2·stride). `check` verifies the bound.
        """
        span = (self.kernel_size - 1) * self.dilation
        if self.transposed:
            return math.ceil(span / (2 * self.stride))
        return math.ceil(span / 2)

    def check(self) -> None:
        """Raise ValueError unless `reach` really bounds this conv's reach on both sides.

        It does for the convs this network builds; it would not, e.g., for unpadded or
        causal convs, whose reach is one-sided.
        """
        span = (self.kernel_size - 1) * self.dilation
        if self.transposed:  # output i reads inputs j with j·s − p ≤ i ≤ j·s − p + span
            left = (span - self.padding) // self.stride
            right = (self.stride - 1 + self.padding) // self.stride
        else:  # output j reads inputs j·s − p … j·s − p + span; it stands for inputs j·s … j·s + s − 1
            left = self.padding
            right = span - self.padding - (self.stride - 1)
        if max(left, right) > self.reach:
            raise ValueError(f"cannot bound the context of {self}: it reaches {left} / {right} positions")


def conv_geometry(module: nn.Module) -> list[ConvGeometry]:
    """Every `nn.Conv1d` / `nn.ConvTranspose1d` in `module`, in the order they run.

    Registration order is execution order for the codec's encoder and decoder (nested
    `nn.Sequential`s; a residual unit's skip path holds no conv).
    """
    out = []
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
            padding = layer.padding
            if isinstance(padding, str):
                raise ValueError(f"cannot bound the context of a conv with padding={padding!r}")
            out.append(
                ConvGeometry(
                    kernel_size=layer.kernel_size[0],
                    dilation=layer.dilation[0],
                    stride=layer.stride[0],
                    padding=padding[0],
                    transposed=isinstance(layer, nn.ConvTranspose1d),
                )
            )
    return out


def encoder_reach_samples(model: Codec) -> int:
    """Input samples, on each side of a frame's own `hop` samples, that can change its codes (an upper bound).

    Each conv reaches `reach` positions of its input, and one position there is as many
    samples as the strides before it multiply to.
    """
    samples, scale = 0, 1
    for conv in conv_geometry(model.encoder):
        conv.check()
        samples += conv.reach * scale
        scale *= conv.stride
    return samples


def decoder_reach_frames(model: Codec) -> int:
    """Code frames, on each side of a frame, that can change its decoded samples (an upper bound, whole frames).

    A conv after upsampling by `scale` reaches `reach / scale` frames. A transposed conv's
    reach is counted as whole frames whatever its input's rate (1 frame for kernel 2·stride,
    where `1 / scale` would do after the first block): a deliberately loose bound, kept so
    that the context, and with it the streaming latency and the frames a range decode reads,
    are those this codec has always used.
    """
    frames, scale = Fraction(0), 1
    for conv in conv_geometry(model.decoder):
        conv.check()
        if conv.transposed:
            frames += conv.reach
            scale *= conv.stride
        else:
            frames += Fraction(conv.reach, scale)
    return math.ceil(frames)


def encoder_context_frames(model: Codec) -> int:
    """Frames of input context, on each side, that make a chunk's codes exact."""
    return math.ceil(encoder_reach_samples(model) / model.hop_length) + 1


def decoder_context_frames(model: Codec) -> int:
    """Code frames of context, on each side, that make a chunk's decoded samples exact."""
    return decoder_reach_frames(model) + 1


class StreamingEncoder:
    """Feed audio `[B, 1, t]` in pieces of any size; get codes `[B, N, f]` as they become exact.

    Codes for frame f are emitted once `context` frames of audio beyond the current chunk have
    arrived, so the algorithmic latency is `(chunk_frames + context) · hop` samples.

    Args:
        model: the codec, in eval mode (in training mode quantizer dropout applies); gradients are off.
        n_codebooks: codebooks to emit (all if None).
        chunk_frames: frames computed per forward pass (memory ∝ chunk_frames + 2·context).
    """

    def __init__(self, model: Codec, n_codebooks: int | None = None, chunk_frames: int = 256):
        self.model = model
        self.n_codebooks = n_codebooks
        self.chunk = max(1, int(chunk_frames))
        self.context = encoder_context_frames(model)
        self.hop = model.hop_length
        self.buffer: torch.Tensor | None = None
        self.buffer_start = 0  # sample index of buffer[..., 0]
        self.received = 0  # samples received so far
        self.next_frame = 0

    def push(self, audio: torch.Tensor) -> torch.Tensor:
        """Add samples `[B, 1, t]`; return the codes that are now final (possibly 0 frames)."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be [B, 1, T], got {list(audio.shape)}")
        self.buffer = audio if self.buffer is None else torch.cat([self.buffer, audio], -1)
        self.received += audio.shape[-1]
        return self._run(final=False)

    def flush(self) -> torch.Tensor:
        """Encode what remains (the end is zero-padded to a whole frame, as `Codec.encode` does)."""
        if self.buffer is None or self.received == 0:
            raise ValueError("no audio was pushed")
        return self._run(final=True)

    @torch.no_grad()
    def _run(self, final: bool) -> torch.Tensor:
        model, hop, ctx = self.model, self.hop, self.context
        assert self.buffer is not None
        total_frames = math.ceil(self.received / hop)
        outs = []
        while True:
            a = self.next_frame
            b = a + self.chunk
            if final:
                b = min(b, total_frames)
                if a >= b:
                    break
                end = min(total_frames, b + ctx) * hop
            else:
                end = (b + ctx) * hop
                if end > self.received:
                    break
            start = max(0, a - ctx) * hop
            x = self.buffer[..., start - self.buffer_start : end - self.buffer_start]
            if x.shape[-1] < end - start:  # only at the true end: zero padding to a whole frame
                x = torch.nn.functional.pad(x, (0, end - start - x.shape[-1]))
            features = model.encode_features(x)[..., a - start // hop : b - start // hop]
            outs.append(model.quantize(features, self.n_codebooks).codes)
            self.next_frame = b
            keep_from = max(0, b - ctx) * hop
            self.buffer = self.buffer[..., keep_from - self.buffer_start :]
            self.buffer_start = keep_from
        if not outs:
            n = self.n_codebooks or model.n_codebooks
            return torch.zeros(self.buffer.shape[0], n, 0, dtype=torch.long)
        return torch.cat(outs, -1)


class StreamingDecoder:
    """Feed codes `[B, N, f]` in pieces of any size; get audio `[B, 1, t]` as it becomes exact.

    Items are decoded `batch` at a time, so memory does not grow with B (the channels of a file).
    Samples of frame f are emitted once `context` further frames have arrived: the latency is
    `(chunk_frames + context)` frames (`context = decoder_context_frames(model)`, e.g. 14
    frames = 163 ms for the 44.1 kHz presets, plus the chunk). Output equals `Codec.decode` on
    the concatenated codes, up to float rounding.
    """

    def __init__(self, model: Codec, chunk_frames: int = 64, batch: int = 8):
        self.model = model
        self.chunk = max(1, int(chunk_frames))
        self.batch = max(1, int(batch))
        self.context = decoder_context_frames(model)
        self.hop = model.hop_length
        self.codes: torch.Tensor | None = None
        self.codes_start = 0
        self.received = 0
        self.next_frame = 0

    @property
    def latency_frames(self) -> int:
        return self.chunk + self.context

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, N, F], got {list(codes.shape)}")
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], -1)
        self.received += codes.shape[-1]
        return self._run(final=False)

    def flush(self) -> torch.Tensor:
        if self.codes is None:
            raise ValueError("no codes were pushed")
        return self._run(final=True)

    @torch.no_grad()
    def _run(self, final: bool) -> torch.Tensor:
        model, hop, ctx = self.model, self.hop, self.context
        assert self.codes is not None
        outs = []
        while True:
            a = self.next_frame
            b = a + self.chunk
            if final:
                b = min(b, self.received)
                if a >= b:
                    break
                end = min(self.received, b + ctx)
            else:
                end = b + ctx
                if end > self.received:
                    break
            start = max(0, a - ctx)
            z = model.codes_to_latents(self.codes[..., start - self.codes_start : end - self.codes_start])
            # At most `batch` items at a time: memory stays bounded however many channels a file has.
            audio = torch.cat([model.decode_latents(part) for part in z.split(self.batch)], 0)
            outs.append(audio[..., (a - start) * hop : (b - start) * hop])
            self.next_frame = b
            keep_from = max(0, b - ctx)
            self.codes = self.codes[..., keep_from - self.codes_start :]
            self.codes_start = keep_from
        if not outs:
            return torch.zeros(self.codes.shape[0], 1, 0)
        return torch.cat(outs, -1)


def encode_chunked(model: Codec, audio: torch.Tensor, n_codebooks: int | None = None, chunk_frames: int = 256) -> torch.Tensor:
    """`Codec.encode` in bounded memory: `[B, 1, T]` → `[B, N, ceil(T / hop)]`, identical codes."""
    enc = StreamingEncoder(model, n_codebooks, chunk_frames)
    return torch.cat([enc.push(audio), enc.flush()], -1)


def decode_chunked(model: Codec, codes: torch.Tensor, chunk_frames: int = 64) -> torch.Tensor:
    """`Codec.decode` in bounded memory: `[B, N, F]` → `[B, 1, F · hop]`."""
    dec = StreamingDecoder(model, chunk_frames)
    return torch.cat([dec.push(codes), dec.flush()], -1)


def stream_decode(model: Codec, pieces: Iterable[torch.Tensor], chunk_frames: int = 64) -> Iterator[torch.Tensor]:
    """Yield audio `[B, 1, t]` from an iterable of code pieces `[B, N, f]` as soon as it is exact."""
    dec = StreamingDecoder(model, chunk_frames)
    for piece in pieces:
        out = dec.push(piece)
        if out.shape[-1]:
            yield out
    out = dec.flush()
    if out.shape[-1]:
        yield out
