"""File pipelines: an audio file → an `.rvq` file and back, in bounded memory.

`compress_file` reads the audio block by block (`audio.read_blocks`), resamples it to the
model's rate on the fly, codes it with a `StreamingEncoder` and writes chunks with a
`bitstream.Writer`. `decompress_file` reads the chunks a time range needs (`bitstream.Reader`),
decodes them with a `StreamingDecoder`, resamples back to the input's rate and writes exactly
the input's length (`audio.open_audio_writer`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from .audio import (
    AudioSource,
    LoudnessMeter,
    open_audio,
    open_audio_writer,
    read_blocks,
    resample_stream,
    resampled_blocks,
    sample_range,
)
from .bitstream import MAX_CHUNK_CODES, MAX_CHUNK_FRAMES, FormatError, Header, Reader, Writer
from .identity import config_digest, digest_matches
from .model import Codec
from .streaming import StreamingDecoder, StreamingEncoder, decoder_context_frames

# `--normalize-db` targets (LUFS) that make sense; the gain they imply is bounded by `bitstream.MAX_GAIN_DB`.
NORMALIZE_RANGE = (-70.0, 0.0)
# The most audio decoded per forward pass, whatever `chunk_seconds` asks (the output does not depend on it).
MAX_DECODE_SECONDS = 3600.0
# Silence that completes a decoded range is written this many samples at a time.
PAD_BLOCK = 2**16


class ClippingWarning(UserWarning):
    """Audio went beyond full scale and was (or will be) clipped to [-1, 1]."""


def check_seconds(value: float, name: str) -> float:
    """`value` if it is a finite number of seconds > 0; ValueError naming the option otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


class WeightsMismatchError(FormatError):
    """A code file made by other trained weights than the model about to decode it."""


def compress_file(
    model: Codec,
    source: AudioSource,
    out: BinaryIO,
    *,
    n_codebooks: int | None = None,
    model_name: str = "model",
    normalize_db: float | None = None,
    chunk_seconds: float = 10.0,
    progress: bool = False,
) -> Header:
    """Encode an audio file (path or binary file object) into an `.rvq` stream `out`, in bounded memory.

    Channels are coded independently (as a batch). Input at any rate is resampled to the
    model's rate on the fly. With `normalize_db`, a first pass measures loudness and peak,
    and the audio is coded at `normalize_db` LUFS (limited so the peak stays ≤ 1); the gain
    is stored and undone on decode. Input beyond full scale is coded as it is, with a
    `ClippingWarning` (its decode will clip). Returns the file's `Header`.
    """
    n_codebooks = model.check_n_codebooks(n_codebooks)
    chunk_seconds = check_seconds(chunk_seconds, "chunk_seconds")
    if normalize_db is not None and not NORMALIZE_RANGE[0] <= normalize_db <= NORMALIZE_RANGE[1]:
        raise ValueError(
            f"normalize_db must be a loudness in [{NORMALIZE_RANGE[0]:g}, {NORMALIZE_RANGE[1]:g}] LUFS, got {normalize_db}"
        )
    f, name = open_audio(source)
    with f:
        sr_in, channels, length = f.samplerate, f.channels, f.frames
        block = max(4096, int(sr_in * 1.0))
        gain_db = None if normalize_db is None else _normalizing_gain(read_blocks(f, name, block), sr_in, normalize_db)
        header = _header(model, model_name, n_codebooks, sr_in, channels, length, gain_db)
        writer = Writer(out, header)
        encoder = StreamingEncoder(model, n_codebooks, max(1, int(chunk_seconds * model.frame_rate)))
        bar = _progress(length / sr_in, "encode", progress)
        scale = 10 ** (gain_db / 20) if gain_db is not None else 1.0
        blocks = _GainedBlocks(read_blocks(f, name, block), scale, sr_in, bar)
        for data in resampled_blocks(blocks, sr_in, model.sample_rate, channels):
            codes = encoder.push(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[:, None])
            if codes.shape[-1]:
                writer.write(codes.numpy())
        writer.write(encoder.flush().numpy())
        writer.close()
        if bar is not None:
            bar.close()
    if blocks.peak > 1.0:
        warnings.warn(
            f"{name}: the input peaks at {20 * math.log10(blocks.peak):+.1f} dBFS, above full scale: its decoded audio will clip",
            ClippingWarning,
            stacklevel=2,
        )
    return header


def _normalizing_gain(blocks: Iterable[np.ndarray], sample_rate: int, target_lufs: float) -> float | None:
    """The gain (dB, rounded as stored) that brings audio blocks `[C, n]` to `target_lufs`, limited so the peak stays ≤ 1.

    None for audio too quiet to measure (-70 LUFS or less, i.e. silence), which is coded as it is.
    """
    meter = LoudnessMeter(sample_rate)
    for data in blocks:
        meter.update(data)
    lufs = meter.loudness()
    if not lufs > -70:
        return None
    gain_db = target_lufs - lufs
    if meter.peak > 0:
        gain_db = min(gain_db, -20 * math.log10(meter.peak))
    return round(gain_db, 4)


def _header(
    model: Codec, model_name: str, n_codebooks: int | None, sample_rate: int, channels: int, length: int, gain_db: float | None
) -> Header:
    """The `.rvq` header for coding `length` samples of `channels` at `sample_rate` with `model`: its identity and layout.

    A chunk is about 6 s of codes, fewer frames where the channels and codebooks would make it
    hold more than the format allows (`bitstream.MAX_CHUNK_CODES`).
    """
    n_q = n_codebooks or model.n_codebooks
    return Header(
        model=model_name,
        config_hash=config_digest(model.config),
        sample_rate=model.sample_rate,
        input_sample_rate=sample_rate,
        channels=channels,
        length=length,
        n_codebooks=n_q,
        codebook_size=model.codebook_size,
        frame_rate=model.frame_rate,
        chunk_frames=max(1, min(MAX_CHUNK_FRAMES, MAX_CHUNK_CODES // (channels * n_q), int(round(model.frame_rate * 6)))),
        gain_db=gain_db,
        weights_hash=model.weights_id(),
        precision=None if model.encode_precision == "fp32" else model.encode_precision,
    )


class _GainedBlocks:
    """Input blocks `[C, n]` times `scale`, keeping the input's peak (before the gain) for the clipping warning.

    Advances `bar` by each block's duration at `sample_rate` once the block is consumed.
    """

    def __init__(self, blocks: Iterable[np.ndarray], scale: float, sample_rate: int, bar: tqdm | None):
        self.blocks, self.scale, self.sample_rate, self.bar = blocks, scale, sample_rate, bar
        self.peak = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        for data in self.blocks:
            self.peak = max(self.peak, float(np.abs(data).max(initial=0.0)))
            yield data * self.scale if self.scale != 1.0 else data
            if self.bar is not None:
                self.bar.update(data.shape[-1] / self.sample_rate)


def decompress_file(
    model: Codec,
    reader: Reader,
    out: AudioSource,
    *,
    start: float | None = None,
    end: float | None = None,
    chunk_seconds: float = 5.0,
    progress: bool = False,
    allow_other_weights: bool = False,
) -> int:
    """Decode an `.rvq` `Reader` to an audio file `out` (path or binary file), exactly `length` samples long.

    `start`/`end` (seconds) decode only that range, reading only the chunks it needs (plus
    decoder context); a range outside the audio is a ValueError. The file must have been
    made by this model's architecture and, unless `allow_other_weights`, by these trained
    weights (`Header.weights_hash`), else `WeightsMismatchError`; its header is checked against
    the model (`_check_file_model`) before anything is allocated. Samples beyond full scale
    are clipped with a `ClippingWarning`; a model that outputs NaN is a ValueError. Memory
    follows `chunk_seconds` and one chunk of the file's packed codes, never the file's length.
    Returns the number of samples written per channel.
    """
    h = reader.header
    chunk_seconds = check_seconds(chunk_seconds, "chunk_seconds")
    _check_file_model(h, model, allow_other_weights)
    first_sample, last_sample = sample_range(*_times_within(start, end, h.duration), h.length, h.input_sample_rate)
    w0, w1 = _frames_to_read(model, h, reader.n_frames, first_sample, last_sample)
    piece = max(1, int(min(chunk_seconds, MAX_DECODE_SECONDS) * model.frame_rate))
    decoder = StreamingDecoder(model, piece)
    scale = 10 ** (-h.gain_db / 20) if h.gain_db is not None else 1.0
    bar = _progress((w1 - w0) / model.frame_rate, "decode", progress)
    with open_audio_writer(out, h.input_sample_rate, h.channels) as sink:
        trim = _RangeWriter(sink, h, w0 * model.hop_length, first_sample, last_sample)
        c, a = h.chunk_frames, w0
        while a < w1:
            b = min(w1, a + piece, (a // c + 1) * c)  # at most a piece, within one chunk of the file
            codes = reader.read_range(a, b)
            audio = decoder.push(torch.from_numpy(codes))
            if audio.shape[-1]:
                trim.write(audio[:, 0].numpy() * scale)
            if bar is not None:
                bar.update(codes.shape[-1] / model.frame_rate)
            a = b
        audio = decoder.flush()
        trim.write(audio[:, 0].numpy() * scale, last=True)
        trim.pad()
    if bar is not None:
        bar.close()
    if trim.clipped:
        warnings.warn(
            f"{trim.clipped} decoded samples were beyond full scale and clipped ({trim.clipped / (trim.written * h.channels):.2%})",
            ClippingWarning,
            stacklevel=2,
        )
    return trim.written


def _check_file_model(h: Header, model: Codec, allow_other_weights: bool) -> None:
    """FormatError unless `model` can decode a file with header `h`: same architecture, enough codebooks, same weights.

    Other trained weights of the same architecture decode without error but give garbage, so
    they are refused (`WeightsMismatchError`) unless `allow_other_weights`.
    """
    if (
        not digest_matches(h.config_hash, model.config)
        or h.sample_rate != model.sample_rate
        or h.codebook_size != model.codebook_size
    ):
        raise FormatError(
            f"the file was made by model {h.model!r} (config {h.config_hash}); the loaded model is a different one (config {config_digest(model.config)})"
        )
    if h.hop_length != model.hop_length:  # the rate that ties the header's length to the coded frames
        raise FormatError(
            f"the file says {h.frame_rate:g} code frames per second; the model makes {model.frame_rate:g} "
            f"(a hop of {model.hop_length} samples)"
        )
    if h.n_codebooks > model.n_codebooks:
        raise FormatError(f"the file uses {h.n_codebooks} codebooks; the model has {model.n_codebooks}")
    if h.weights_hash is not None and not model.makes_codes_of(h.weights_hash) and not allow_other_weights:
        raise WeightsMismatchError(
            f"the file was made by other trained weights ({h.model!r}, weights {h.weights_hash}) than the loaded model's "
            f"({model.weights_id()}); decoding would give garbage (pass the right --model, or --allow-other-weights)"
        )


def _times_within(start: float | None, end: float | None, duration: float) -> tuple[float | None, float | None]:
    """`start` and `end` (seconds) for `audio.sample_range` on audio of `duration` seconds, such that no
    finite time overflows its arithmetic: a start past the end is refused here, an end past it is cut."""
    if start is not None and math.isfinite(start) and start > duration:
        raise ValueError(f"--start {start} is at or after the end of the audio ({duration:.3f} s)")
    if end is not None and math.isfinite(end) and end > duration + 1:
        end = duration + 1  # `sample_range` cuts it to the length
    return start, end


def _frames_to_read(model: Codec, h: Header, n_frames: int, first_sample: int, last_sample: int) -> tuple[int, int]:
    """Model-rate frames `[w0, w1)` to decode for the input-rate samples `[first_sample, last_sample)`.

    The frames covering the range, widened by one frame on each side (rounding between the two
    rates) and by the decoder's context, so the range decodes as it does in the whole file.
    """
    ratio = h.sample_rate / h.input_sample_rate
    f0 = max(0, int(first_sample * ratio) // model.hop_length - 1)
    f1 = min(n_frames, math.ceil(last_sample * ratio / model.hop_length) + 1)
    ctx = decoder_context_frames(model)
    return max(0, f0 - ctx), min(n_frames, f1 + ctx)


class _RangeWriter:
    """Writes the input-rate samples `[first_sample, last_sample)` of a decoded stream to `sink`.

    The stream starts at model-rate sample `start` (the first frame decoded times the hop).
    Each decoded block `[C, n]` is resampled back to the input's rate (one resampler for the
    whole stream, so block edges leave no trace), trimmed to the range and clipped to [-1, 1];
    `clipped` counts the samples that were beyond it, `written` the samples per channel so far.
    """

    def __init__(self, sink: Any, h: Header, start: int, first_sample: int, last_sample: int):
        self.sink, self.channels = sink, h.channels
        self.resampler = (
            resample_stream(h.sample_rate, h.input_sample_rate, h.channels) if h.sample_rate != h.input_sample_rate else None
        )
        # Input-rate index of the next sample the resampler will give.
        self.position = int(round(start / (h.sample_rate / h.input_sample_rate))) if start else 0
        self.first_sample, self.last_sample = first_sample, last_sample
        self.wanted = last_sample - first_sample
        self.written = 0
        self.clipped = 0

    def write(self, audio: np.ndarray, last: bool = False) -> None:
        """Resample, trim, clip and write one decoded block `[C, n]`; `last` flushes the resampler."""
        if not np.isfinite(audio).all():
            raise ValueError("the model produced NaN or infinite samples (are its weights damaged?)")
        if self.resampler is not None:
            audio = self.resampler.resample_chunk(np.ascontiguousarray(audio.T), last=last).T
        n = audio.shape[-1]
        lo = max(0, self.first_sample - self.position)
        hi = min(n, self.last_sample - self.position)
        if hi > lo and self.written < self.wanted:
            piece = audio[:, lo:hi][:, : self.wanted - self.written]
            self.clipped += int(np.count_nonzero(np.abs(piece) > 1.0))
            piece = np.clip(piece, -1.0, 1.0)
            self.sink.write(np.ascontiguousarray(piece.T))
            self.written += piece.shape[-1]
        self.position += n

    def pad(self) -> None:
        """Complete the range with silence: resampling rounding can leave the output a few samples short
        (written `PAD_BLOCK` samples at a time, whatever the gap)."""
        while self.written < self.wanted:
            n = min(PAD_BLOCK, self.wanted - self.written)
            self.sink.write(np.zeros((n, self.channels), dtype=np.float32))
            self.written += n


def _progress(total_seconds: float, desc: str, enabled: bool) -> tqdm | None:
    """A progress bar in seconds of audio on stderr, or None when disabled."""
    if not enabled:
        return None
    return tqdm(
        total=round(total_seconds, 1),
        desc=desc,
        unit="s",
        unit_scale=False,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    )
