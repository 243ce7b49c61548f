"""Chunked and streaming encode/decode whose results do not depend on the chunk size.

A frame's codes depend only on input samples within the encoder's receptive field, and a
decoded sample only on code frames within the decoder's. Each chunk is therefore computed
on a window widened by that context on both sides (clipped at the signal's true ends, where
the convolutions' zero padding is the same as in a whole-signal pass), and only its centre
is kept. The results equal a whole-signal pass up to float rounding, for any chunk size,
with memory bounded by the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .model import Codec


def encoder_context_frames(model: Codec) -> int:
    """Frames of input context, on each side, that make a chunk's codes exact."""
    return math.ceil(model.receptive_field / model.hop_length) + 1


def decoder_context_frames(model: Codec) -> int:
    """Code frames of context, on each side, that make a chunk's decoded samples exact."""
    return model.decoder_context + 1


class StreamingEncoder:
    """Feed audio `[B, 1, t]` in pieces of any size; get codes `[B, N, f]` as they become exact.

    Codes for frame f are emitted once `context` frames of audio beyond the current chunk have
    arrived, so the algorithmic latency is `(chunk_frames + context) · hop` samples.

    Args:
        model: the codec (eval mode is used; gradients are off).
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
            features = model.encoder(x)[..., a - start // hop : b - start // hop]
            outs.append(model.quantizer(features, self.n_codebooks).codes)
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

    Samples of frame f are emitted once `context` further frames have arrived: the latency is
    `(chunk_frames + context)` frames (`context = decoder_context_frames(model)`, e.g. 13
    frames = 151 ms for the 44.1 kHz model, plus the chunk). Output equals `Codec.decode` on
    the concatenated codes, up to float rounding.
    """

    def __init__(self, model: Codec, chunk_frames: int = 64):
        self.model = model
        self.chunk = max(1, int(chunk_frames))
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
            audio = model.decode_latents(z)
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


# -- files ------------------------------------------------------------------------------------------


def _open_audio(source):
    import soundfile as sf

    from .audio import AudioError, check_sample_rate

    name = getattr(source, "name", None) or str(source)
    try:
        f = sf.SoundFile(source)
    except Exception as exc:
        from pathlib import Path

        if isinstance(source, (str, Path)) and not Path(source).exists():
            raise AudioError(f"{name}: no such file") from None
        raise AudioError(
            f"{name}: cannot read as audio ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    check_sample_rate(f.samplerate, name)
    if f.frames == 0:
        f.close()
        raise AudioError(f"{name}: audio is empty (0 samples)")
    return f, name


def _blocks(f, name: str, block: int) -> Iterator:
    """Blocks `[C, t]` float32 from an open SoundFile, checking every sample is finite."""

    from .audio import AudioError

    f.seek(0)
    while True:
        data = f.read(block, dtype="float32", always_2d=True)
        if data.shape[0] == 0:
            return
        if not np.isfinite(data).all():
            raise AudioError(f"{name}: audio contains NaN or Inf samples")
        yield np.ascontiguousarray(data.T)


def compress_file(
    model: Codec,
    source,
    out,
    *,
    n_codebooks: int | None = None,
    model_name: str = "model",
    normalize_db: float | None = None,
    chunk_seconds: float = 10.0,
    progress: bool = False,
):
    """Encode an audio file (path or binary file object) into an `.rvq` stream `out`, in bounded memory.

    Channels are coded independently (as a batch). Input at any rate is resampled to the
    model's rate on the fly. With `normalize_db`, a first pass measures loudness and peak,
    and the audio is coded at `normalize_db` LUFS (limited so the peak stays ≤ 1); the gain
    is stored and undone on decode. Returns the file's `Header`.
    """
    import soxr

    from .audio import LoudnessMeter
    from .bitstream import Header, Writer
    from .checkpoint import config_digest

    f, name = _open_audio(source)
    with f:
        sr_in, channels, length = f.samplerate, f.channels, f.frames
        block = max(4096, int(sr_in * 1.0))
        gain_db = None
        if normalize_db is not None:
            meter = LoudnessMeter(sr_in)
            for data in _blocks(f, name, block):
                meter.update(data)
            lufs = meter.loudness()
            if lufs > -70:
                gain_db = normalize_db - lufs
                if meter.peak > 0:
                    gain_db = min(gain_db, -20 * math.log10(meter.peak))
                gain_db = round(gain_db, 4)
        header = Header(
            model=model_name,
            hash=config_digest(model.config),
            sr=model.sample_rate,
            orig_sr=sr_in,
            channels=channels,
            length=length,
            n_q=n_codebooks or model.n_codebooks,
            K=model.codebook_size,
            fps=model.frame_rate,
            chunk=max(1, min(0xFFFF, int(round(model.frame_rate * 6)))),
            gain_db=gain_db,
        )
        writer = Writer(out, header)
        chunk_frames = max(1, int(chunk_seconds * model.frame_rate))
        encoder = StreamingEncoder(model, n_codebooks, chunk_frames)
        resampler = (
            soxr.ResampleStream(sr_in, model.sample_rate, channels, dtype="float32", quality="HQ")
            if sr_in != model.sample_rate
            else None
        )
        scale = 10 ** (gain_db / 20) if gain_db is not None else 1.0
        bar = _progress(length / sr_in, "encode", progress)

        def feed(data: np.ndarray, last: bool = False) -> None:
            if resampler is not None:
                data = resampler.resample_chunk(np.ascontiguousarray(data.T), last=last).T
            if data.shape[-1]:
                codes = encoder.push(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[:, None])
                if codes.shape[-1]:
                    writer.write(codes.numpy())

        for data in _blocks(f, name, block):
            feed(data * scale if scale != 1.0 else data)
            if bar is not None:
                bar.update(data.shape[-1] / sr_in)
        if resampler is not None:
            feed(np.zeros((channels, 0), dtype=np.float32), last=True)
        writer.write(encoder.flush().numpy())
        writer.close()
        if bar is not None:
            bar.close()
    return header


def decompress_file(
    model: Codec,
    reader,
    out,
    *,
    start: float | None = None,
    end: float | None = None,
    chunk_seconds: float = 5.0,
    progress: bool = False,
) -> int:
    """Decode an `.rvq` `Reader` to an audio file `out` (path or binary file), exactly `length` samples long.

    `start`/`end` (seconds) decode only that range, reading only the chunks it needs (plus
    decoder context). Returns the number of samples written per channel.
    """
    import soxr

    from .bitstream import FormatError
    from .checkpoint import config_digest

    h = reader.header
    if h.hash != config_digest(model.config) or h.sr != model.sample_rate or h.K != model.codebook_size:
        raise FormatError(
            f"the file was made by model {h.model!r} (config {h.hash}); the loaded model is a different one (config {config_digest(model.config)})"
        )
    if h.n_q > model.n_codebooks:
        raise FormatError(f"the file uses {h.n_q} codebooks; the model has {model.n_codebooks}")
    n_frames = reader.n_frames
    first_sample = 0 if start is None else max(0, min(h.length, int(round(start * h.orig_sr))))
    last_sample = h.length if end is None else max(first_sample, min(h.length, int(round(end * h.orig_sr))))
    # Model-rate frames covering the requested range, widened by the decoder's context.
    ratio = h.sr / h.orig_sr
    f0 = max(0, int(first_sample * ratio) // model.hop_length - 1)
    f1 = min(n_frames, math.ceil(last_sample * ratio / model.hop_length) + 1)
    ctx = decoder_context_frames(model)
    w0, w1 = max(0, f0 - ctx), min(n_frames, f1 + ctx)
    decoder = StreamingDecoder(model, max(1, int(chunk_seconds * model.frame_rate)))
    resampler = soxr.ResampleStream(h.sr, h.orig_sr, h.channels, dtype="float32", quality="HQ") if h.sr != h.orig_sr else None
    scale = 10 ** (-h.gain_db / 20) if h.gain_db is not None else 1.0
    # Output sample index (at orig_sr) of the first sample the resampler will produce.
    position = int(round(w0 * model.hop_length / ratio)) if w0 else 0
    written = 0
    wanted = last_sample - first_sample
    bar = _progress((w1 - w0) / model.frame_rate, "decode", progress)

    with _open_output(out, h.orig_sr, h.channels) as sink:

        def emit(audio: np.ndarray, last: bool = False) -> None:
            nonlocal position, written
            if resampler is not None:
                audio = resampler.resample_chunk(np.ascontiguousarray(audio.T), last=last).T
            n = audio.shape[-1]
            lo = max(0, first_sample - position)
            hi = min(n, last_sample - position)
            if hi > lo and written < wanted:
                piece = np.clip(audio[:, lo:hi][:, : wanted - written], -1.0, 1.0)
                sink.write(np.ascontiguousarray(piece.T))
                written += piece.shape[-1]
            position += n

        c = h.chunk
        for number in range(w0 // c, math.ceil(w1 / c)):
            codes = reader.read_range(max(w0, number * c), min(w1, (number + 1) * c))
            audio = decoder.push(torch.from_numpy(codes))
            if audio.shape[-1]:
                emit(audio[:, 0].numpy() * scale)
            if bar is not None:
                bar.update(codes.shape[-1] / model.frame_rate)
        audio = decoder.flush()
        emit(audio[:, 0].numpy() * scale, last=True)
        if written < wanted:  # resampling rounding can leave the output a few samples short
            sink.write(np.zeros((wanted - written, h.channels), dtype=np.float32))
            written = wanted
    if bar is not None:
        bar.close()
    return written


def _open_output(out, sample_rate: int, channels: int):
    from pathlib import Path

    import soundfile as sf

    name = str(getattr(out, "name", out))
    suffix = Path(name).suffix.lower()
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(suffix, "WAV")
    sub = {"FLAC": "PCM_16", "OGG": "VORBIS"}.get(fmt, "PCM_16")
    return sf.SoundFile(out, "w", samplerate=sample_rate, channels=channels, format=fmt, subtype=sub)


def _progress(total_seconds: float, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=round(total_seconds, 1),
        desc=desc,
        unit="s",
        unit_scale=False,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    )


def _unpadded(model: Codec) -> Codec:
    """A copy of `model` whose convolutions run without padding, as the reference's chunked coding does."""
    import copy

    from torch import nn

    clone = copy.deepcopy(model)
    for layer in clone.modules():
        if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
            layer.padding = (0,)
            if isinstance(layer, nn.ConvTranspose1d):
                layer.output_padding = (0,)
    return clone


@torch.no_grad()
def decode_dac_file(model: Codec, dac) -> tuple[np.ndarray, int]:
    """Decode a legacy `DacFile` as descript-audio-codec 1.0.0's `decompress` does → (`[C, T]`, sample rate).

    The first item of the file is returned (the reference CLI writes one item per file).

    Chunks of `chunk_length` frames are decoded independently (with unpadded convolutions
    when the file says so), concatenated, brought back to the stored input loudness,
    resampled to the original rate and trimmed to the original length.
    """

    from .audio import loudness, resample

    if dac.codes.shape[1] > model.n_codebooks or dac.codes.max(initial=0) >= model.codebook_size:
        raise ValueError("the .dac file's codes do not fit this model (wrong model?)")
    net = model if dac.padding else _unpadded(model)
    codes = torch.from_numpy(dac.codes)
    pieces = [net.decode(codes[..., i : i + dac.chunk_length]) for i in range(0, codes.shape[-1], dac.chunk_length)]
    audio = torch.cat(pieces, -1)[:, 0].numpy().astype(np.float64)  # [B·C, T]
    if dac.input_db is not None:
        for i in range(audio.shape[0]):
            gain_db = float(dac.input_db[i % len(dac.input_db)]) - loudness(audio[i][None], model.sample_rate)
            audio[i] *= 10 ** (gain_db / 20)
    audio = resample(audio.astype(np.float32), model.sample_rate, dac.sample_rate)[:, : dac.original_length]
    if audio.shape[-1] < dac.original_length:
        audio = np.pad(audio, ((0, 0), (0, dac.original_length - audio.shape[-1])))
    return audio.reshape(-1, dac.channels, dac.original_length)[0], dac.sample_rate
