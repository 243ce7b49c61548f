"""Chunked and streaming coding: chunk-size independence, exact lengths, streaming = offline."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, synth

import rvqgan
from rvqgan.bitstream import Reader, read_dac_file
from rvqgan.codec import (
    StreamingDecoder,
    StreamingEncoder,
    compress_file,
    decode_chunked,
    decode_dac_file,
    decompress_file,
    encode_chunked,
    stream_decode,
)


def narrow(name: str) -> rvqgan.Codec:
    """A cheap model with the strides (and so the length arithmetic and receptive field) of a preset."""
    cfg = rvqgan.preset(name)
    small = rvqgan.ModelConfig(
        **{**cfg.to_dict(), "encoder_dim": 4, "decoder_dim": 16 * 2 ** len(cfg.decoder_rates), "latent_dim": 16}
    )
    torch.manual_seed(0)
    return rvqgan.Codec(small).eval()


@pytest.mark.parametrize("name", ["tiny", "16khz", "44khz_8kbps"])
def test_codes_do_not_depend_on_chunk_size(name):
    model = narrow(name)
    x = synth(model.hop_length * 37 + 11, model.sample_rate).repeat(2, 1, 1)
    x[1] *= -0.5
    with torch.no_grad():
        whole = model.encode(x)
    for chunk in (1, 4, 9, 1000):
        assert torch.equal(encode_chunked(model, x, chunk_frames=chunk), whole), chunk


@pytest.mark.parametrize("name", ["tiny", "24khz", "44khz_8kbps"])
def test_chunked_decode_equals_whole_decode(name):
    model = narrow(name)
    codes = torch.randint(0, model.codebook_size, (1, model.n_codebooks, 40))
    with torch.no_grad():
        whole = model.decode(codes)
    for chunk in (1, 3, 16, 100):
        out = decode_chunked(model, codes, chunk_frames=chunk)
        assert out.shape == whole.shape
        assert (out - whole).abs().max() < 1e-4


def test_streaming_equals_offline_with_irregular_pieces():
    model = narrow("tiny")
    x = synth(5000)
    with torch.no_grad():
        codes = model.encode(x)
        offline = model.decode(codes)
    enc = StreamingEncoder(model, chunk_frames=5)
    pieces, i, sizes = [], 0, [1, 7, 300, 33, 900, 2, 1500]
    while i < x.shape[-1]:
        n = sizes[len(pieces) % len(sizes)]
        pieces.append(enc.push(x[..., i : i + n]))
        i += n
    pieces.append(enc.flush())
    assert torch.equal(torch.cat(pieces, -1), codes)
    dec = StreamingDecoder(model, chunk_frames=4)
    code_pieces = [codes[..., i : i + 3] for i in range(0, codes.shape[-1], 3)]
    out, emitted_after = [], []
    for piece in code_pieces:
        audio = dec.push(piece)
        out.append(audio)
        emitted_after.append(sum(a.shape[-1] for a in out))
    out.append(dec.flush())
    audio = torch.cat(out, -1)
    assert audio.shape == offline.shape
    assert (audio - offline).abs().max() < 1e-5
    # Bounded latency: after k frames have arrived, all but the last latency_frames are out.
    for k, emitted in enumerate(emitted_after, 1):
        received = min(3 * k, codes.shape[-1])
        assert emitted >= (received - dec.latency_frames) * model.hop_length
    assert torch.equal(torch.cat(list(stream_decode(model, code_pieces, 4)), -1), audio)


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
    assert (header.orig_sr, header.channels, header.length) == (sample_rate, channels, length)
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


def test_legacy_dac_file_decodes_like_the_reference():
    with open(FIXTURES / "reference_small.dac", "rb") as f:
        dac = read_dac_file(f)
    assert dac.codes.shape == (1, 4, 657) and not dac.padding
    model = rvqgan.load_model(FIXTURES / "reference_small.pth")
    audio, sr = decode_dac_file(model, dac)
    ref, ref_sr = sf.read(FIXTURES / "reference_small_decompressed.wav", dtype="float32")
    assert sr == ref_sr and audio.shape == (1, len(ref))
    # Same waveform; the level differs by our loudness meter's 0.02 dB from the reference's.
    assert np.corrcoef(audio[0], ref)[0, 1] > 0.99999
    gain = float(audio[0] @ ref / (ref @ ref))
    assert abs(gain - 1) < 0.006
    assert np.abs(audio[0] / gain - ref).max() < 1e-4
