"""File pipelines: exact lengths, rates and channels, codes independent of chunk size, range decode, loudness."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import sys
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import narrow, synth, write_rvq_unchecked

from rvqgan import files
from rvqgan.audio import open_audio_writer, save_audio
from rvqgan.bitstream import FormatError, Reader
from rvqgan.files import ClippingWarning, WeightsMismatchError, compress_file, decompress_file


def _wav_bytes(audio: np.ndarray, sample_rate: int) -> io.BytesIO:
    buf = io.BytesIO()
    sf.write(buf, audio.T, sample_rate, format="WAV", subtype="FLOAT")
    buf.seek(0)
    buf.name = "x.wav"
    return buf


@pytest.mark.parametrize(
    "name,sample_rate,length,channels",
    [
        ("tiny", 16000, 16001, 1),
        ("tiny", 44100, 12345, 2),
        ("16khz", 22050, 7777, 1),
        ("24khz", 48000, 9999, 2),
        ("44khz_8kbps", 44100, 30001, 1),
    ],
)
def test_file_round_trip_exact_length(name, sample_rate, length, channels):
    model = narrow(name)
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal((channels, length))).astype(np.float32)
    out = io.BytesIO()
    header = compress_file(model, _wav_bytes(audio, sample_rate), out, model_name=name)
    assert (header.input_sample_rate, header.channels, header.length) == (sample_rate, channels, length)
    out.seek(0)
    wav = io.BytesIO()
    wav.name = "y.wav"
    assert decompress_file(model, Reader(out), wav) == length
    wav.seek(0)
    decoded, sr = sf.read(wav, always_2d=True)
    assert sr == sample_rate and decoded.shape == (length, channels)


def test_file_codes_independent_of_chunk_seconds_and_range_decode():
    model = narrow("tiny")
    audio = synth(16000 * 3)[0].numpy()
    files = []
    for seconds in (0.05, 0.3, 10.0):
        out = io.BytesIO()
        compress_file(model, _wav_bytes(audio, 16000), out, chunk_seconds=seconds)
        files.append(out.getvalue())
    assert files[0] == files[1] == files[2]
    full, part = io.BytesIO(), io.BytesIO()
    full.name = part.name = "x.wav"
    decompress_file(model, Reader(io.BytesIO(files[0])), full)
    n = decompress_file(model, Reader(io.BytesIO(files[0])), part, start=1.0, end=1.5)
    assert n == 8000
    full.seek(0), part.seek(0)
    a, _ = sf.read(full, dtype="float32")
    b, _ = sf.read(part, dtype="float32")
    assert np.abs(a[16000:24000] - b).max() <= 1 / 32768 + 1e-6


def test_loudness_normalisation_is_explicit_and_restored():
    model = narrow("tiny")
    audio = 0.01 * synth(16000 * 2)[0].numpy()
    for normalize in (None, -16.0):
        out = io.BytesIO()
        header = compress_file(model, _wav_bytes(audio, 16000), out, normalize_db=normalize)
        assert (header.gain_db is None) == (normalize is None)
    assert header.gain_db > 20  # a quiet input is boosted for coding...
    decoded = []
    for restore in (True, False):
        reader = Reader(io.BytesIO(out.getvalue()))
        if not restore:
            reader.header = dataclasses.replace(reader.header, gain_db=None)
        wav = io.BytesIO()
        wav.name = "y.wav"
        decompress_file(model, reader, wav)
        wav.seek(0)
        decoded.append(sf.read(wav, dtype="float32")[0])
    restored, at_coding_level = decoded
    assert np.abs(at_coding_level).max() > 1e-3  # the codes decode to audio, not silence
    # ...and brought back down by exactly the gain on decode (within 16-bit rounding of both files).
    assert np.allclose(restored, at_coding_level * 10 ** (-header.gain_db / 20), atol=2 / 32768)


def _round_trip(model, audio, sample_rate=16000, decoder=None, **decode_kw):
    out = io.BytesIO()
    compress_file(model, _wav_bytes(audio, sample_rate), out)
    out.seek(0)
    wav = io.BytesIO()
    wav.name = "y.wav"
    decompress_file(decoder or model, Reader(out), wav, **decode_kw)
    wav.seek(0)
    return sf.read(wav, always_2d=True, dtype="float32")[0].T


def test_a_file_is_refused_by_other_trained_weights_of_the_same_architecture():
    made_by, other = narrow("tiny"), narrow("tiny")
    with torch.no_grad():
        other.decoder.model[-2].bias += 0.01  # same architecture, other trained weights
    audio = 0.2 * synth(4000).numpy()[0]
    with pytest.raises(WeightsMismatchError, match="other trained weights"):
        _round_trip(made_by, audio, decoder=other)
    assert _round_trip(made_by, audio, decoder=other, allow_other_weights=True).shape == audio.shape
    assert _round_trip(made_by, audio, decoder=made_by.folded()).shape == audio.shape  # same weights, folded


def test_a_model_that_outputs_nan_is_an_error_not_silence():
    model = narrow("tiny")
    out = io.BytesIO()
    compress_file(model, _wav_bytes(0.2 * synth(4000).numpy()[0], 16000), out)
    with torch.no_grad():
        model.decoder.model[-2].bias.fill_(float("nan"))
    out.seek(0)
    with pytest.raises(ValueError, match="NaN"):
        decompress_file(model, Reader(out), io.BytesIO(), allow_other_weights=True)


def test_clipping_is_reported_on_encode_and_decode():
    model = narrow("tiny")
    loud = (1.8 * synth(8000).numpy()[0] / np.abs(synth(8000).numpy()).max()).astype(np.float32)
    with pytest.warns(ClippingWarning, match=r"peaks at \+5\.1 dBFS"):
        out = io.BytesIO()
        compress_file(model, _wav_bytes(loud, 16000), out, normalize_db=-16)
    out.seek(0)
    with pytest.warns(ClippingWarning, match="clipped"):
        decompress_file(model, Reader(out), io.BytesIO())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        _round_trip(model, 0.01 * synth(8000).numpy()[0])  # quiet audio: no warning


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"chunk_seconds": 0}, "chunk_seconds"),
        ({"chunk_seconds": -1.0}, "chunk_seconds"),
        ({"chunk_seconds": float("inf")}, "chunk_seconds"),
        ({"normalize_db": float("nan")}, "normalize_db"),
        ({"normalize_db": 30.0}, "normalize_db"),
        ({"n_codebooks": 2.7}, "n_codebooks"),
    ],
)
def test_bad_settings_are_refused_before_writing(kw, match):
    out = io.BytesIO()
    with pytest.raises((ValueError, TypeError), match=match):
        compress_file(narrow("tiny"), _wav_bytes(0.1 * synth(2000).numpy()[0], 16000), out, **kw)
    assert out.getvalue() == b""


def test_bf16_file_pipeline_round_trip():
    """The file pipeline feeds a bf16 model bf16 inputs: it runs, and decodes close to fp32."""
    model = narrow("tiny")
    audio = 0.2 * synth(6000).numpy()[0]
    assert _round_trip(model.folded("bf16"), audio).shape == audio.shape
    bf16, fp32 = _round_trip(model.folded(), audio, decoder=model.folded("bf16")), _round_trip(model.folded(), audio)
    snr = 10 * np.log10(np.sum(fp32**2) / np.sum((bf16 - fp32) ** 2))
    assert snr > 20, snr


GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.mark.parametrize(
    "name,kwargs",
    [("plain", {}), ("normalized", {"normalize_db": -20.0, "n_codebooks": 2, "chunk_seconds": 0.1})],
)
def test_rvq_bytes_match_the_golden_files(name: str, kwargs: dict) -> None:
    """The same input and weights give the same `.rvq` bytes as the files written by an earlier
    version of the code (`tests/data/golden/make_golden.py`): a refactoring that changes them
    changes the format."""
    from rvqgan import load_model

    model = load_model(GOLDEN / "tiny.safetensors")
    buf = io.BytesIO()
    compress_file(model, GOLDEN / "tone.wav", buf, model_name="tiny", **kwargs)
    assert buf.getvalue() == (GOLDEN / f"{name}.rvq").read_bytes()


def test_a_file_whose_frame_rate_is_not_the_models_is_refused_before_anything_is_written(monkeypatch):
    """The frame rate ties the header's length to the coded frames: a file that says twice the model's hop
    (its length twice what its frames make) is refused, where it used to decode to a file padded with silence
    (a one-frame file with a tiny frame rate made hundreds of MB)."""
    model = narrow("tiny")
    out = io.BytesIO()
    header = compress_file(model, _wav_bytes(0.2 * synth(8000).numpy()[0], 16000), out)
    codes = Reader(io.BytesIO(out.getvalue())).read_all()
    hop = 2 * model.hop_length
    data = write_rvq_unchecked(header, codes, monkeypatch, frame_rate=model.sample_rate / hop, length=codes.shape[-1] * hop)
    reader = Reader(io.BytesIO(data))  # valid by itself
    wav = io.BytesIO()
    wav.name = "y.wav"
    with pytest.raises(FormatError, match=r"the file says 250 code frames per second; the model makes 500 \(a hop of 32"):
        decompress_file(model, reader, wav)
    assert wav.getvalue() == b""


def test_times_far_past_the_end_are_refused_or_cut_without_overflow():
    model = narrow("tiny")
    out = io.BytesIO()
    compress_file(model, _wav_bytes(0.2 * synth(4000).numpy()[0], 16000), out)
    with pytest.raises(ValueError, match=r"--start 1e\+305 is at or after the end of the audio \(0.250 s\)"):
        decompress_file(model, Reader(io.BytesIO(out.getvalue())), io.BytesIO(), start=1e305)
    assert decompress_file(model, Reader(io.BytesIO(out.getvalue())), io.BytesIO(), end=1e305, chunk_seconds=1e308) == 4000


def test_the_encoders_chunks_hold_at_most_what_the_format_allows(monkeypatch):
    model = narrow("44khz_8kbps")
    assert files._header(model, "m", None, 44100, 2, 1000, None).chunk_frames == round(6 * model.frame_rate)  # 517
    monkeypatch.setattr(files, "MAX_CHUNK_CODES", 5000)
    header = files._header(model, "m", None, 44100, 2, 1000, None)
    assert header.chunk_frames == 5000 // (2 * 9)


class FullDisk:
    """Binary file `f` on a disk with room for `room` bytes: a write that does not fit writes what fits and says
    so (a short write, as a filling disk gives), and the next one fails with ENOSPC."""

    def __init__(self, f: BinaryIO, room: int):
        self.f, self.room = f, room
        self.name = getattr(f, "name", "out.wav")

    def write(self, data: bytes) -> int:
        n = max(0, min(len(data), self.room - self.f.tell()))
        if len(data) and not n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(bytes(data[:n]))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def read(self, n: int = -1) -> bytes:
        return self.f.read(n)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_a_full_disk_is_one_oserror_for_every_output_format(suffix, monkeypatch):
    """soundfile writes through C callbacks: a write that failed there printed a traceback and then failed
    soundfile's assert (AssertionError, exit 70), or, for FLAC, went on to close a truncated file as if
    nothing had happened. Now it is one OSError from the write (or the open, or the close) that met it."""
    unraisable: list = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)  # where a C callback's exception goes
    audio = (0.3 * synth(32000).numpy()[0]).repeat(2, 0)
    for room in (10, 100, 5000):
        out = io.BytesIO()
        out.name = f"x{suffix}"
        with pytest.raises(OSError, match="^cannot write the audio: No space left on device$") as caught:
            save_audio(FullDisk(out, room), audio, 16000)
        assert caught.value.errno == errno.ENOSPC, room
    assert not unraisable
    with pytest.raises(OSError, match="No space left on device"):
        with open_audio_writer(FullDisk(io.BytesIO(), 3000), 16000, 2) as f:
            for a in range(0, 32000, 1000):
                f.write(audio.T[a : a + 1000])
    assert not unraisable


def test_a_full_disk_during_decode_is_an_oserror(monkeypatch):
    unraisable: list = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    model = narrow("tiny")
    out = io.BytesIO()
    compress_file(model, _wav_bytes(0.2 * synth(16000).numpy()[0], 16000), out)
    wav = io.BytesIO()
    wav.name = "y.flac"
    with pytest.raises(OSError, match="cannot write the audio: No space left on device") as caught:
        decompress_file(model, Reader(io.BytesIO(out.getvalue())), FullDisk(wav, 4000), chunk_seconds=0.1)
    assert caught.value.errno == errno.ENOSPC and not unraisable


def test_an_interrupt_while_soundfile_writes_is_raised_not_swallowed(monkeypatch):
    """SIGINT or SIGTERM (`cli.Terminated`) arriving inside soundfile's C callback was printed and swallowed
    there, and the write ended in an AssertionError (exit 70): it reaches the command, which exits 130 or 143."""
    unraisable: list = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    class Interrupted(io.BytesIO):
        def write(self, data) -> int:  # type: ignore[override]
            if self.tell() > 1000:
                raise KeyboardInterrupt
            return super().write(data)

    out = Interrupted()
    out.name = "x.wav"
    with pytest.raises(KeyboardInterrupt):
        save_audio(out, 0.1 * synth(16000).numpy()[0], 16000)
    assert not unraisable
