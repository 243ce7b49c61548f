"""File pipelines: exact lengths, rates and channels, codes independent of chunk size, range decode, loudness."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from conftest import narrow, synth

from rvqgan.bitstream import Reader
from rvqgan.files import compress_file, decompress_file


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
    wav = io.BytesIO()
    wav.name = "y.wav"
    decompress_file(model, Reader(io.BytesIO(out.getvalue())), wav)
    wav.seek(0)
    y, _ = sf.read(wav)
    assert np.abs(y).max() < 0.05  # ...and brought back to its level on decode
