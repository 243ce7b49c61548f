"""The command line: files, folders, globs, stdin/stdout, bad input, atomic outputs, true bitrates."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, ROOT, needs_fixtures

import rvqgan
from rvqgan.bitstream import Reader
from rvqgan.cli import main


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    cfg = rvqgan.preset("44khz_8kbps")
    small = rvqgan.ModelConfig(**{**cfg.to_dict(), "encoder_dim": 4, "decoder_dim": 128, "latent_dim": 16})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "narrow44.safetensors"
    rvqgan.save_model(rvqgan.Codec(small), path)
    return path


def tone(path: Path, seconds: float, sample_rate: int = 44100, channels: int = 1) -> Path:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None].repeat(channels, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sample_rate)
    return path


def test_encode_decode_info_round_trip(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 1.3, 22050, 2)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path)]) == 0
    assert "2 ch, 9 codebooks, codes 15.504 kbps" in capsys.readouterr().err  # 7.752 kbps per channel
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "a_out.wav"), "--model", str(model_path)]) == 0
    info = sf.info(tmp_path / "a_out.wav")
    assert (info.samplerate, info.channels, info.frames) == (22050, 2, int(1.3 * 22050))
    assert main(["info", str(tmp_path / "a.rvq")]) == 0
    out = capsys.readouterr().out
    assert "9 codebooks x 1024 entries (10 bits)" in out and "codes 15.504 kbps" in out  # 2 channels


@pytest.mark.parametrize("kbps,expected", [(8, 9), (3, 3), (6.0, 6)])
def test_kbps_picks_codebooks(tmp_path, model_path, kbps, expected):
    src = tone(tmp_path / "a.wav", 0.5)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "--kbps", str(kbps)]) == 0
    with open(tmp_path / "a.rvq", "rb") as f:
        assert Reader(f).header.n_codebooks == expected


@pytest.mark.parametrize("seconds", [10.5, 60.0])
def test_file_size_within_two_percent_of_bitrate(tmp_path, model_path, seconds):
    src = tone(tmp_path / "long.wav", seconds)
    out = tmp_path / "long.rvq"
    assert main(["encode", str(src), "-o", str(out), "--model", str(model_path), "-q"]) == 0
    theoretical_bytes = 9 * 10 * (44100 / 512) * seconds / 8
    assert out.stat().st_size / theoretical_bytes < 1.02


def test_folder_tree_glob_skip_existing_and_overwrite(tmp_path, model_path, capsys):
    tone(tmp_path / "in" / "x.wav", 0.3)
    tone(tmp_path / "in" / "sub" / "y.flac", 0.3)
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    assert main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "codes"), "--model", str(model_path), "-q"]) == 0
    assert (tmp_path / "codes" / "x.rvq").exists() and (tmp_path / "codes" / "sub" / "y.rvq").exists()
    before = (tmp_path / "codes" / "x.rvq").stat().st_mtime_ns
    assert main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "codes"), "--model", str(model_path)]) == 0
    assert "exists, skipped" in capsys.readouterr().err
    assert (tmp_path / "codes" / "x.rvq").stat().st_mtime_ns == before
    assert (
        main(
            [
                "encode",
                str(tmp_path / "in" / "*.wav"),
                "-o",
                str(tmp_path / "g") + "/",
                "--model",
                str(model_path),
                "-q",
                "--overwrite",
            ]
        )
        == 0
    )
    assert (tmp_path / "g" / "x.rvq").exists()
    assert main(["decode", str(tmp_path / "codes"), "-o", str(tmp_path / "wav"), "--model", str(model_path), "-q"]) == 0
    assert (tmp_path / "wav" / "sub" / "y.wav").exists()
    assert not list(tmp_path.rglob("*.tmp*"))


def test_bad_inputs_one_line_each_and_others_complete(tmp_path, model_path, capsys):
    good = tone(tmp_path / "good.wav", 0.3)
    (tmp_path / "text.wav").write_text("this is not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1)), 16000)
    sf.write(tmp_path / "nan.wav", np.full((1000, 1), np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "inf.wav", np.full((1000, 1), np.inf, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "rate.wav", np.zeros((1000, 1)), 1)
    bad = ["text.wav", "empty.wav", "zero.wav", "nan.wav", "inf.wav", "rate.wav", "missing.wav"]
    args = [
        "encode",
        *(str(tmp_path / b) for b in bad),
        str(good),
        "-o",
        str(tmp_path / "out") + "/",
        "--model",
        str(model_path),
        "-q",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(bad), err
    for name, line in zip(bad, err):
        assert name in line and "error" in line and "Traceback" not in line
    assert any(w in " ".join(err) for w in ("NaN", "Inf"))
    assert (tmp_path / "out" / "good.rvq").exists()
    assert main(["encode", str(good), "-o", str(tmp_path / "z.rvq"), "--model", str(model_path), "--kbps", "0.3"]) == 1
    assert "lowest bitrate" in capsys.readouterr().err
    assert main(["decode", str(good), "-o", str(tmp_path / "z.wav"), "--model", str(model_path)]) == 1
    assert "bad magic" in capsys.readouterr().err


def test_wrong_model_is_refused(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 0.3)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    other = tmp_path / "other.safetensors"
    rvqgan.save_model(rvqgan.build_model("tiny"), other)
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "decoded.wav"), "--model", str(other)]) == 1
    assert "made by model" in capsys.readouterr().err


def test_stdin_stdout(tmp_path, model_path):
    src = tone(tmp_path / "a.wav", 0.4)
    cmd = [sys.executable, "-m", "rvqgan"]
    codes = subprocess.run(
        cmd + ["encode", "-", "-o", "-", "--model", str(model_path)],
        input=src.read_bytes(),
        capture_output=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert codes[:4] == b"RVQ1"
    wav = subprocess.run(
        cmd + ["decode", "-", "-o", "-", "--model", str(model_path)], input=codes, capture_output=True, check=True, cwd=ROOT
    ).stdout
    audio, sr = sf.read(io.BytesIO(wav))
    assert sr == 44100 and len(audio) == int(0.4 * 44100)


@needs_fixtures
def test_legacy_dac_cli(tmp_path, capsys):
    dac = str(FIXTURES / "reference_small.dac")
    assert main(["decode", dac, "-o", str(tmp_path / "x.wav")]) == 1
    assert "pass --model" in capsys.readouterr().err
    assert main(["decode", dac, "-o", str(tmp_path / "x.wav"), "--model", str(FIXTURES / "reference_small.pth")]) == 0
    assert sf.info(tmp_path / "x.wav").frames == 16000


def test_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rvqgan", "encode", str(tmp_path / "nope.wav"), "--model", str(tmp_path / "nope.safetensors")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
