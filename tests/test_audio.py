"""The audio I/O layer: one-line errors, block reading, the output format table, the loudest window, piped input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from rvqgan.audio import (
    AudioError,
    LoudnessMeter,
    load_audio,
    looks_like_audio,
    loudest_window,
    loudness,
    open_audio,
    open_audio_writer,
    output_format,
    read_blocks,
    read_stdin_audio,
    sample_range,
    save_audio,
    stdin_limit,
)


def test_loudest_window_picks_the_loudest_of_five_evenly_spaced():
    audio = np.zeros(1000, np.float32)
    audio[690:790] = 1.0  # the window starting at 675 (the 4th of 0, 225, 450, 675, 900) holds the most of it
    audio[0:10] = 1.0
    out = loudest_window(audio, 100)
    assert out.shape == (100,) and out.sum() == 85.0
    assert out.base is audio and np.array_equal(out, audio[675:775])  # a view
    assert loudest_window(audio, 1000) is audio and loudest_window(audio, 5000) is audio
    quiet = np.zeros(1000, np.float32)
    assert np.array_equal(loudest_window(quiet, 100), quiet[:100])  # a tie: the first window
    stereo = np.stack([audio, audio])
    assert loudest_window(stereo, 100).shape == (2, 100)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("a.flac", ("FLAC", "PCM_16")),
        ("a.OGG", ("OGG", "VORBIS")),
        ("a.mp3", ("MP3", "MPEG_LAYER_III")),
        ("a.wav", ("WAV", "PCM_16")),
    ],
)
def test_output_format_follows_the_suffix(name, expected):
    assert output_format(name) == expected


@pytest.mark.parametrize("name", ["a.xyz", "a.rvq", "noext"])
def test_an_output_name_of_unknown_format_is_refused(name):
    with pytest.raises(AudioError, match="cannot write audio as"):
        output_format(name)
    assert output_format(io.BytesIO()) == ("WAV", "PCM_16")  # no name: WAV


@pytest.mark.parametrize(
    "start, end, expected",
    [(None, None, (0, 1000)), (0.01, None, (10, 1000)), (None, 5.0, (0, 1000)), (0.1, 0.2, (100, 200))],
)
def test_sample_range(start, end, expected):
    assert sample_range(start, end, 1000, 1000) == expected


@pytest.mark.parametrize(
    "start, end",
    [(1.0, None), (2.0, 3.0), (0.5, 0.5), (0.5, 0.2), (-0.1, None), (None, -1.0), (float("nan"), None), (None, float("inf"))],
)
def test_sample_range_refuses_ranges_that_leave_nothing_or_are_not_times(start, end):
    with pytest.raises(ValueError, match="--start|--end"):
        sample_range(start, end, 1000, 1000)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
def test_whole_and_block_writers_agree_on_format(tmp_path, suffix):
    audio = 0.1 * np.sin(np.linspace(0, 200, 8000, dtype=np.float32))[None].repeat(2, 0)
    save_audio(tmp_path / f"whole{suffix}", audio, 16000)
    with open_audio_writer(tmp_path / f"blocks{suffix}", 16000, 2) as f:
        f.write(audio.T[:3000])
        f.write(audio.T[3000:])
    infos = [sf.info(tmp_path / f"{name}{suffix}") for name in ("whole", "blocks")]
    assert len({(i.format, i.subtype, i.channels, i.samplerate) for i in infos}) == 1
    if suffix != ".mp3":  # lossless: the same samples
        assert np.array_equal(sf.read(tmp_path / f"whole{suffix}")[0], sf.read(tmp_path / f"blocks{suffix}")[0])


def test_block_reading_checks_samples(tmp_path):
    audio = np.zeros((3000, 1), np.float32)
    audio[2500] = np.nan
    sf.write(tmp_path / "nan.wav", audio, 16000, subtype="FLOAT")
    f, name = open_audio(tmp_path / "nan.wav")
    with f:
        blocks = read_blocks(f, name, 1000)
        assert next(blocks).shape == (1, 1000)
        next(blocks)
        with pytest.raises(AudioError, match="NaN or Inf"):
            next(blocks)


def test_reading_errors_are_one_line_naming_the_file(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    sf.write(tmp_path / "rate.wav", np.zeros((10, 1)), 1)
    cases = {"missing.wav": "no such file", "text.wav": "cannot read as audio", "empty.wav": "empty", "rate.wav": "sample rate"}
    for name, reason in cases.items():
        path = str(tmp_path / name)
        for read in (load_audio, open_audio):
            with pytest.raises(AudioError, match=reason) as info:
                read(path)
            message = str(info.value)
            assert message.startswith(path + ": ") and "\n" not in message
            assert message.count(path) == 1  # soundfile's repeated path is dropped
    stream = io.BytesIO(b"not audio at all")
    stream.name = "<stdin>"
    with pytest.raises(AudioError, match="<stdin>: cannot read as audio"):
        open_audio(stream)


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_loudness_of_the_bs1770_calibration_tone(sample_rate):
    """BS.1770-4: a full-scale 997 Hz sine in one channel reads −3.01 LUFS; two such channels, +3 LU; −20 dB, −20 LU."""
    t = np.arange(5 * sample_rate) / sample_rate
    tone = np.sin(2 * np.pi * 997 * t)[None].astype(np.float32)
    assert abs(loudness(tone, sample_rate) + 3.01) < 0.1
    assert abs(loudness(np.vstack([tone, tone]), sample_rate) - loudness(tone, sample_rate) - 3.01) < 0.01
    assert abs(loudness(0.1 * tone, sample_rate) - loudness(tone, sample_rate) + 20) < 0.01
    meter = LoudnessMeter(sample_rate)  # fed in uneven pieces, one sample among them: the same as one call
    for a, b in ((0, 1000), (1000, 50000), (50000, 50001), (50001, tone.shape[1])):
        meter.update(tone[:, a:b])
    assert abs(meter.loudness() - loudness(tone, sample_rate)) < 1e-9


def wav_bytes(seconds: float = 0.1, sample_rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * sample_rate), 1), np.float32), sample_rate, format="WAV")
    return buf.getvalue()


def test_piped_audio_becomes_a_seekable_file_named_stdin():
    f = read_stdin_audio(io.BytesIO(wav_bytes()))
    assert f.name == "<stdin>" and f.seekable()
    audio, sample_rate = load_audio(f)
    assert audio.shape == (1, 1600) and sample_rate == 16000


@pytest.mark.parametrize(
    "head, audio",
    [
        (b"RIFF\0\0\0\0WAVE", True),
        (b"fLaC", True),
        (b"OggS", True),
        (b"ID3\3", True),
        (b"\xff\xfb\x90", True),
        (b"<html>", False),
    ],
)
def test_audio_is_recognised_by_its_first_bytes(head, audio):
    assert looks_like_audio(head) is audio


def test_piped_input_that_is_empty_not_audio_or_too_long_is_one_line(monkeypatch):
    with pytest.raises(AudioError, match="<stdin>: no input"):
        read_stdin_audio(io.BytesIO(b""))
    with pytest.raises(AudioError, match="<stdin>: not an audio stream"):
        read_stdin_audio(io.BytesIO(b"<html>" + bytes(100)))
    monkeypatch.setenv("RVQGAN_MAX_STDIN_BYTES", str(2**20))
    assert stdin_limit() == 2**20
    with pytest.raises(AudioError, match="more than 1 MiB of audio"):
        read_stdin_audio(io.BytesIO(wav_bytes()[:44] + bytes(2**20)))
    monkeypatch.setenv("RVQGAN_MAX_STDIN_BYTES", "lots")
    with pytest.raises(AudioError, match="RVQGAN_MAX_STDIN_BYTES must be a positive number"):
        read_stdin_audio(io.BytesIO(wav_bytes()))
