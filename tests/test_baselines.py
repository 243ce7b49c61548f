"""The baseline registry: specs to baselines, clear errors, families added from outside, and round trips."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import modulated_tone

from rvqgan import baselines
from rvqgan.baselines import Baseline, codec_family, help_text, parse_baselines
from rvqgan.evaluate import align, score


def test_parse_baselines():
    parsed = parse_baselines(["opus:6,8", "mp3:32", "cmd:copy=cp {in} {out}"])
    assert [b.name for b in parsed] == ["opus 6", "opus 8", "mp3 32", "copy"]
    assert [b.family for b in parsed] == ["opus", "opus", "mp3", "copy"]  # a command is a family of its own
    assert [b.kbps for b in parsed] == [6.0, 8.0, 32.0, None]
    with pytest.raises(ValueError):
        parse_baselines(["flac:1"])


@pytest.mark.parametrize(
    "spec,message",
    [
        ("flac:1", "use opus:K,... mp3:K,... or cmd:NAME=TEMPLATE"),
        ("opus", "no bitrates"),
        ("opus:six", "expected e.g. opus:6,8,12"),
        ("mp3:-32", "bitrates must be positive"),
        ("opus:nan", "bitrates must be positive"),
        ("cmd:copy", "expected cmd:NAME=TEMPLATE"),
        ("cmd:=cp {in} {out}", "expected cmd:NAME=TEMPLATE"),
        ("cmd:copy=cp {in} out.wav", "needs {in} and {out}"),
    ],
)
def test_bad_specs_name_the_spec_in_one_line(spec, message):
    with pytest.raises(ValueError) as info:
        parse_baselines([spec])
    text = str(info.value)
    assert text.startswith(f"bad baseline {spec!r}: ") and message in text and "\n" not in text


def test_help_shows_every_family():
    text = help_text()
    assert text == "opus:6,8,12 | mp3:32 | cmd:NAME='prog {in} {out}' (repeatable)"


def halve(audio: np.ndarray, sample_rate: int, kbps: float) -> tuple[np.ndarray, int | None]:
    """A stand-in codec: half the amplitude, `kbps` worth of bytes."""
    return 0.5 * audio, int(kbps * 1000 / 8 * len(audio) / sample_rate)


def test_a_registered_family_is_usable_through_parse_baselines(monkeypatch):
    monkeypatch.setattr(baselines, "FAMILIES", dict(baselines.FAMILIES))
    baselines.register(codec_family("half", halve, example="4,8"))
    assert "half:4,8" in help_text()
    (half,) = parse_baselines(["half:4"])
    assert half == Baseline("half 4", "half", 4.0, half.roundtrip)
    x = modulated_tone(1.0)
    y, size = half.roundtrip(x, 44100)
    assert np.array_equal(y, 0.5 * x) and size == 500
    assert pickle.loads(pickle.dumps(half)).roundtrip(x, 44100)[1] == 500  # evaluation workers receive it pickled
    with pytest.raises(ValueError, match="use opus:K,... mp3:K,... cmd:NAME=TEMPLATE or half:K,..."):
        parse_baselines(["aac:32"])


def test_built_in_baselines_pickle():
    parsed = parse_baselines(["opus:8", "mp3:32", "cmd:copy=cp {in} {out}"])
    assert [b.name for b in pickle.loads(pickle.dumps(parsed))] == ["opus 8", "mp3 32", "copy"]


def test_command_round_trip():
    x = modulated_tone(1.0)
    (copy,) = parse_baselines(["cmd:copy=cp {in} {out}"])
    y, size = copy.roundtrip(x, 44100)
    assert size is None and np.abs(y - x).max() < 1e-4  # a 16-bit WAV round trip
    (broken,) = parse_baselines(["cmd:broken=echo 'no such codec' >&2; false {in} {out}"])
    with pytest.raises(RuntimeError, match=r"baseline command failed \(1\): no such codec"):
        broken.roundtrip(x, 44100)


@pytest.mark.parametrize("codec,kbps", [("opus", 8), ("mp3", 32)])
def test_pyav_baselines_round_trip(codec, kbps):
    pytest.importorskip("av")
    x = modulated_tone(2.0)
    (baseline,) = parse_baselines([f"{codec}:{kbps}"])
    y, size = baseline.roundtrip(x, 44100)
    assert size is not None and size * 8 / 2.0 / 1000 == pytest.approx(kbps, rel=0.15)  # bytes match the asked bitrate
    s = score(x, align(x, y, 2205), 44100, speech=False, with_visqol=False)
    assert s["si_sdr"] > 8
