"""The command line: files, folders, globs, stdin/stdout, bad input, atomic outputs, true bitrates."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, ROOT, write_dac, write_rvq_unchecked

import rvqgan
from rvqgan.bitstream import Reader
from rvqgan.cli import main
from rvqgan.files import compress_file


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
    assert 1.0 <= out.stat().st_size / theoretical_bytes < 1.02  # every code is there, at 10 bits


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


def test_legacy_dac_cli(tmp_path, capsys):
    dac = str(FIXTURES / "reference_small.dac")
    assert main(["decode", dac, "-o", str(tmp_path / "x.wav")]) == 1
    assert "pass --model" in capsys.readouterr().err
    assert main(["decode", dac, "-o", str(tmp_path / "x.wav"), "--model", str(FIXTURES / "reference_small.pth")]) == 0
    assert sf.info(tmp_path / "x.wav").frames == 16000
    args = ["decode", dac, "-o", str(tmp_path / "y.wav"), "--model", str(FIXTURES / "reference_small.pth"), "--precision", "bf16"]
    assert main(args) == 0 and sf.info(tmp_path / "y.wav").frames == 16000


def test_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rvqgan", "encode", str(tmp_path / "nope.wav"), "--model", str(tmp_path / "nope.safetensors")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# -- hostile and unlucky inputs --------------------------------------------------------------------


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rvqgan {command}: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_two_inputs_that_map_to_one_output_are_refused_before_writing(tmp_path, model_path, capsys):
    tone(tmp_path / "in" / "x.wav", 0.2)
    tone(tmp_path / "in" / "x.flac", 0.2)
    assert main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model_path)]) == 1
    assert "would both be written to" in one_error_line(capsys, "encode")
    tone(tmp_path / "a" / "y.wav", 0.2)
    tone(tmp_path / "b" / "y.wav", 0.2)
    args = ["encode", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out"), "--model", str(model_path)]
    assert main(args) == 1
    assert "would both be written to" in one_error_line(capsys, "encode")
    assert not (tmp_path / "out").exists()


def test_an_output_that_would_replace_its_input_is_refused(tmp_path, model_path, capsys):
    src = tone(tmp_path / "v.wav", 0.2)
    before = src.read_bytes()
    assert main(["encode", str(src), "-o", str(src), "--overwrite", "--model", str(model_path)]) == 1
    assert "replace the input" in one_error_line(capsys, "encode")
    assert src.read_bytes() == before
    code = tmp_path / "c.rvq"
    assert main(["encode", str(src), "-o", str(code), "--model", str(model_path), "-q"]) == 0
    before = code.read_bytes()
    assert main(["encode", str(code), "--overwrite", "--model", str(model_path)]) == 1  # default output: c.rvq itself
    assert "replace the input" in one_error_line(capsys, "encode")
    assert main(["decode", str(code), "-o", str(code), "--overwrite", "--model", str(model_path)]) == 1
    assert "replace the input" in one_error_line(capsys, "decode")
    assert code.read_bytes() == before


@pytest.mark.parametrize(
    "command, option, value",
    [
        ("decode", "--start", "inf"),
        ("decode", "--start", "nan"),
        ("decode", "--end", "-1"),
        ("decode", "--start", "100"),
        ("encode", "--chunk-seconds", "0"),
        ("encode", "--chunk-seconds", "-2"),
        ("encode", "--chunk-seconds", "nan"),
        ("encode", "--kbps", "inf"),
        ("encode", "--kbps", "nan"),
        ("encode", "--normalize-db", "nan"),
        ("encode", "--normalize-db", "inf"),
    ],
)
def test_options_that_are_not_finite_or_in_range_get_one_line(tmp_path, model_path, capsys, command, option, value):
    src = tone(tmp_path / "a.wav", 0.3)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    target = str(tmp_path / ("a.rvq" if command == "decode" else "a.wav"))
    out = tmp_path / ("b.wav" if command == "decode" else "b.rvq")
    assert main([command, target, "-o", str(out), "--model", str(model_path), f"{option}={value}"]) == 1
    assert option in one_error_line(capsys, command)
    assert not out.exists() and no_leftovers(tmp_path)


def test_time_ranges_that_leave_nothing_are_refused(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 1.0)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    for extra in (["--start", "0.6", "--end", "0.4"], ["--start", "0.5", "--end", "0.5"], ["--start", "1.0"]):
        assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(model_path), *extra]) == 1
        one_error_line(capsys, "decode")
        assert not (tmp_path / "b.wav").exists()
    args = ["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(model_path), "--end", "9"]
    assert main(args) == 0 and sf.info(tmp_path / "b.wav").frames == 44100  # an end past the audio is cut to it


def test_outputs_are_written_in_the_format_their_name_asks_for(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 0.5)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "a.mp3"), "--model", str(model_path), "-q"]) == 0
    assert sf.info(tmp_path / "a.mp3").format == "MP3"
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "a.xyz"), "--model", str(model_path)]) == 1
    assert "cannot write audio as '.xyz'" in one_error_line(capsys, "decode")
    assert main(["encode", str(src), "-o", str(tmp_path / "x.mp3"), "--model", str(model_path)]) == 1
    assert ".rvq" in one_error_line(capsys, "encode")
    assert not (tmp_path / "a.xyz").exists() and not (tmp_path / "x.mp3").exists()


def test_a_header_model_name_is_a_label_never_a_path(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 0.3)
    model = rvqgan.load_model(model_path)
    with open(tmp_path / "a.rvq", "wb") as out:
        compress_file(model, str(src), out, model_name=str(model_path))  # a crafted header naming a model file
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav")]) == 1
    err = one_error_line(capsys, "decode")
    assert "not a model name" in err and "pass --model" in err
    assert not (tmp_path / "b.wav").exists()
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(model_path), "-q"]) == 0


def test_other_trained_weights_are_refused_unless_allowed(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 0.3)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    other = rvqgan.load_model(model_path)
    with torch.no_grad():
        other.decoder.model[-2].bias += 0.01
    rvqgan.save_model(other, tmp_path / "other.safetensors")
    args = ["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(tmp_path / "other.safetensors")]
    assert main(args) == 1
    assert "other trained weights" in one_error_line(capsys, "decode")
    assert main([*args, "--allow-other-weights", "-q"]) == 0


def test_bf16_on_the_command_line(tmp_path, model_path, capsys):
    src = tone(tmp_path / "a.wav", 0.5)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "--precision", "bf16", "-q"]) == 0
    args = ["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(model_path), "--precision", "bf16"]
    assert main([*args, "-q"]) == 0 and sf.info(tmp_path / "b.wav").frames == sf.info(src).frames
    with open(tmp_path / "a.rvq", "rb") as f:
        assert Reader(f).header.precision == "bf16"
    assert main(["info", str(tmp_path / "a.rvq")]) == 0 and "frames, encoded in bf16" in capsys.readouterr().out
    assert main(["encode", str(src), "-o", str(tmp_path / "c.rvq"), "--model", str(model_path), "-q"]) == 0  # auto: fp32 here
    with open(tmp_path / "c.rvq", "rb") as f:
        assert Reader(f).header.precision is None


def test_clipping_is_said(tmp_path, model_path, capsys):
    t = np.arange(22050) / 44100
    sf.write(tmp_path / "loud.wav", (1.8 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100, subtype="FLOAT")
    args = ["encode", str(tmp_path / "loud.wav"), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.startswith("rvqgan encode: warning:") and "+5.1 dBFS, above full scale" in err and err.count("\n") == 1
    assert main([*args, "--overwrite", "--normalize-db", "-16"]) == 0  # the gain keeps the coded peak at full scale
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(model_path), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("rvqgan decode: warning:") and "clipped" in err


def run_limited(args: list[str], stdin=None, seconds: float = 5.0) -> subprocess.CompletedProcess:
    """The CLI in a subprocess under a 2 GiB address-space limit."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "rvqgan", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=limit,
        timeout=60,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_bombs_fail_fast_in_bounded_memory(tmp_path, model_path, monkeypatch):
    """Every kind of bomb a hostile file can carry is refused with one line, under a 2 GiB address-space
    limit, in under 30 s each (a process start-up included; a bomb that got through would run for minutes)."""
    src = tone(tmp_path / "a.wav", 0.3)
    model = rvqgan.load_model(model_path)
    with open(tmp_path / "a.rvq", "wb") as out:
        header = compress_file(model, str(src), out)
    bombs: dict[str, list[str]] = {}
    for name, length in (("length_2e7", 2 * 10**7), ("length_1e13", 10**13)):
        path = tmp_path / f"{name}.rvq"
        path.write_bytes(write_rvq_unchecked(header, np.zeros((1, header.n_codebooks, 0), np.int64), monkeypatch, length=length))
        assert path.stat().st_size < 250
        bombs[name] = ["decode", str(path), "-o", str(tmp_path / f"{name}.wav"), "--model", str(model_path)]
    write_dac(tmp_path / "length.dac", np.zeros((1, 1, 4), np.uint16), original_length=10**12)
    bombs["dac_length"] = ["decode", str(tmp_path / "length.dac"), "-o", str(tmp_path / "d.wav"), "--model", str(model_path)]
    nest: list = [1.0]
    for _ in range(60):
        nest = [nest, nest]
    write_dac(tmp_path / "nest.dac", np.zeros((1, 1, 4), np.uint16), input_db=nest)
    assert (tmp_path / "nest.dac").stat().st_size < 2048
    bombs["dac_nest"] = ["decode", str(tmp_path / "nest.dac"), "-o", str(tmp_path / "e.wav"), "--model", str(model_path)]
    from safetensors.torch import save_file

    from rvqgan.identity import tensors_digest

    state = {"x": torch.zeros(1)}
    config = json.dumps({**model.config.to_dict(), "n_codebooks": 10**7})
    save_file(
        state,
        str(tmp_path / "bomb.safetensors"),
        metadata={"format": "rvqgan", "format_version": "1", "config": config, "sha256": tensors_digest(state)},
    )
    assert (tmp_path / "bomb.safetensors").stat().st_size < 1024
    bombs["safetensors"] = ["encode", str(src), "-o", str(tmp_path / "s.rvq"), "--model", str(tmp_path / "bomb.safetensors")]
    for name, args in bombs.items():
        t0 = time.perf_counter()
        result = run_limited(args)
        elapsed = time.perf_counter() - t0
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, (
            name,
            result.stderr,
        )
        assert elapsed < 30, (name, elapsed)  # start-up included; a bomb would run for minutes
    for command in ("encode", "decode"):
        with open("/dev/zero", "rb") as zero:
            t0 = time.perf_counter()
            result = run_limited([command, "-", "-o", "-", "--model", str(model_path)], stdin=zero)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (command, result.stderr)
        assert time.perf_counter() - t0 < 30
    assert no_leftovers(tmp_path)


WEIRD_VALUES = [None, -1, 0, 1.5, 1e308, -1e308, 2**63, "x", "1", "", [], {}, [[[]]], True, "y" * 5000]


def test_fuzzed_files_never_crash_the_cli(tmp_path, capsys, monkeypatch):
    """A few hundred byte flips, truncations and field mutations of .rvq, .dac, .safetensors and .pth
    files: every run ends with exit 0 (a mutation that is still a valid file) or exit 1 with one
    error line, and leaves no temporary or partial output behind. And the damage is seen: every
    truncated file and every changed byte of a `.rvq` file (all of it is checksummed) is refused,
    and so is every changed byte of a `.safetensors` file outside its JSON header (the tensors' SHA-256);
    at least 70 of the 75 mutations of each code file kind, all 75 of the `.safetensors` and 40 of the
    `.pth` ones are refused."""
    rng = np.random.default_rng(1234)
    tiny = rvqgan.build_model("tiny")
    model = tmp_path / "tiny.safetensors"
    rvqgan.save_model(tiny, model)
    audio = tone(tmp_path / "a.wav", 0.3, 16000)
    with open(tmp_path / "a.rvq", "wb") as f:
        header = compress_file(rvqgan.load_model(model), str(audio), f)
    rvq = (tmp_path / "a.rvq").read_bytes()
    codes = Reader(io.BytesIO(rvq)).read_all()
    dac_codes = rng.integers(0, 256, (1, 4, 16)).astype(np.uint16)
    dac = write_dac(io.BytesIO(), dac_codes, original_length=500).getvalue()
    safetensors = model.read_bytes()
    torch.save({"state_dict": tiny.state_dict(), "metadata": {"kwargs": tiny.config.to_dict()}}, tmp_path / "a.pth")
    pth = (tmp_path / "a.pth").read_bytes()

    def mutate_bytes(data: bytes) -> tuple[bytes, str]:
        """A truncation or a few changed bytes, and which of the two (or "same" when no byte changed)."""
        if rng.random() < 0.3:
            return data[: int(rng.integers(0, len(data)))], "truncated"
        bad = bytearray(data)
        for pos in rng.integers(0, len(data), int(rng.integers(1, 9))):
            bad[pos] = int(rng.integers(0, 256))
        changed = [i for i in range(len(data)) if bad[i] != data[i]]
        if not changed:
            return bytes(bad), "same"
        if data[:8] == safetensors[:8] and min(changed) >= 8 + int.from_bytes(data[:8], "little"):
            return bytes(bad), "tensor bytes"
        return bytes(bad), "changed"

    def mutate_field(kind: str) -> bytes:
        value = WEIRD_VALUES[int(rng.integers(len(WEIRD_VALUES)))]
        if kind == "rvq":
            field = str(rng.choice([f for f in vars(header) if f != "model"]))
            return write_rvq_unchecked(header, codes, monkeypatch, **{field: value})
        if kind == "dac":
            field = str(
                rng.choice(["input_db", "original_length", "sample_rate", "chunk_length", "channels", "padding", "dac_version"])
            )
            return write_dac(io.BytesIO(), dac_codes, **{"original_length": 500, field: value}).getvalue()
        if kind == "safetensors":
            from safetensors.torch import save

            from rvqgan.identity import tensors_digest

            config = tiny.config.to_dict()
            config[str(rng.choice(list(config)))] = value
            state = {k: v.contiguous() for k, v in tiny.state_dict().items()}
            metadata = {"format": "rvqgan", "format_version": "1", "config": json.dumps(config), "sha256": tensors_digest(state)}
            return save(state, metadata=metadata)
        kwargs = tiny.config.to_dict()
        kwargs[str(rng.choice(list(kwargs)))] = value
        buf = io.BytesIO()
        torch.save({"state_dict": tiny.state_dict(), "metadata": {"kwargs": kwargs}}, buf)
        return buf.getvalue()

    out = tmp_path / "out"
    cases = 0
    refused = {"rvq": 0, "dac": 0, "safetensors": 0, "pth": 0}
    t0 = time.perf_counter()
    for kind, data, suffix in (
        ("rvq", rvq, ".rvq"),
        ("dac", dac, ".dac"),
        ("safetensors", safetensors, ".safetensors"),
        ("pth", pth, ".pth"),
    ):
        for i in range(75):
            path = tmp_path / f"fuzz{suffix}"
            mutated, how = (mutate_field(kind), "field") if i % 3 == 0 else mutate_bytes(data)
            path.write_bytes(mutated)
            out.mkdir(exist_ok=True)
            if kind in ("rvq", "dac"):
                target = out / "x.wav"
                args = ["decode", str(path), "-o", str(target), "--model", str(model), "-q"]
            elif kind == "safetensors":
                target = out / "x.rvq"
                args = ["encode", str(audio), "-o", str(target), "--model", str(path), "-q"]
            else:
                target = out / "x.safetensors"
                args = ["import-dac", str(path), str(target)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's note on pickle protocols is not ours to test
                code = main(args)
            err = capsys.readouterr().err.strip()
            assert code in (0, 1), (kind, i, code, err)
            if code == 1:
                assert err.startswith(f"rvqgan {args[0]}: error:") and "\n" not in err, (kind, i, err)
                assert not target.exists(), (kind, i)
            assert no_leftovers(out), (kind, i)
            if how == "truncated" or (kind == "rvq" and how == "changed") or how == "tensor bytes":
                assert code == 1, (kind, i, how)
            refused[kind] += code == 1
            if target.exists():
                target.unlink()
            cases += 1
    assert cases == 300 and time.perf_counter() - t0 < 300
    # Of 75 mutations of each kind (this seed): the rest are still valid files, or changes the
    # format cannot see (a .pth has no checksum of its weights).
    assert refused["rvq"] >= 70 and refused["dac"] >= 70 and refused["safetensors"] == 75 and refused["pth"] >= 40, refused


@pytest.mark.parametrize(
    "field, value", [("length", 0), ("input_sample_rate", 0), ("length", "5"), ("gain_db", -1e6), ("channels", 1.5)]
)
def test_info_of_a_bad_header_is_one_line(tmp_path, model_path, capsys, monkeypatch, field, value):
    src = tone(tmp_path / "a.wav", 0.3)
    with open(tmp_path / "a.rvq", "wb") as f:
        header = compress_file(rvqgan.load_model(model_path), str(src), f)
    codes = Reader(io.BytesIO((tmp_path / "a.rvq").read_bytes())).read_all()
    (tmp_path / "b.rvq").write_bytes(write_rvq_unchecked(header, codes, monkeypatch, **{field: value}))
    assert main(["info", str(tmp_path / "b.rvq")]) == 1
    assert field in one_error_line(capsys, "info")


def test_sigterm_during_encode_leaves_nothing_behind(tmp_path, model_path):
    import signal

    src = tone(tmp_path / "long.wav", 240.0)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvqgan", "encode", str(src), "-o", str(out / "long.rvq"), "--model", str(model_path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the encode finished before it could be interrupted"
    assert list(out.iterdir()), "no temporary file appeared"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip().endswith("rvqgan encode: terminated"), err
    assert not list(out.iterdir())


def test_piped_audio_is_spooled_only_up_to_its_bound(tmp_path, model_path):
    data = tone(tmp_path / "a.wav", 0.2).read_bytes()[:44] + bytes(3_000_000)  # a WAV header, then far too much
    result = subprocess.run(
        [sys.executable, "-m", "rvqgan", "encode", "-", "-o", str(tmp_path / "a.rvq"), "--model", str(model_path)],
        input=data,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "RVQGAN_MAX_STDIN_BYTES": "1000000"},
        timeout=60,
    )
    err = result.stderr.decode().strip()
    assert result.returncode == 1 and err.count("\n") == 0 and "more than 1 MiB of audio" in err, err
    assert not (tmp_path / "a.rvq").exists()


def test_an_unexpected_error_is_one_line_with_its_own_exit_status(tmp_path, model_path, capsys, monkeypatch):
    import rvqgan.cli as cli

    def broken(args):
        raise KeyError("a bug")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=broken)  # type: ignore[union-attr]
    assert main(["info", "x.rvq"]) == 70
    err = capsys.readouterr().err.strip()
    assert err.startswith("rvqgan info: internal error") and "\n" not in err


@pytest.mark.parametrize("channels,kbps,expected", [(1, 6, 6), (2, 6, 3), (2, 8, 4), (2, 1.75, 1), (3, 100, 9)])
def test_kbps_is_the_files_bitrate_all_channels_together(tmp_path, model_path, capsys, channels, kbps, expected):
    src = tone(tmp_path / "a.wav", 0.5, channels=channels)
    out = tmp_path / "a.rvq"
    assert main(["encode", str(src), "-o", str(out), "--model", str(model_path), "--kbps", str(kbps)]) == 0
    with open(out, "rb") as f:
        header = Reader(f).header
    assert header.n_codebooks == expected and header.code_bitrate <= kbps * 1000
    if expected < 9:
        assert header.code_bitrate / header.n_codebooks * (header.n_codebooks + 1) > kbps * 1000  # one more would not fit
    per_channel = f" ({header.code_bitrate / channels / 1000:.3f} per channel)" if channels > 1 else ""
    assert f"codes {header.code_bitrate / 1000:.3f} kbps{per_channel}," in capsys.readouterr().err
    assert main(["info", str(out)]) == 0
    assert f"codes {header.code_bitrate / 1000:.3f} kbps{per_channel}, file" in capsys.readouterr().out


def test_a_kbps_below_one_codebook_for_the_files_channels_is_refused(tmp_path, model_path, capsys):
    mono, stereo = tone(tmp_path / "in" / "mono.wav", 0.3), tone(tmp_path / "in" / "stereo.wav", 0.3, channels=2)
    args = ["--model", str(model_path), "--kbps", "1.2", "-q"]  # one codebook takes 0.861 kbps per channel
    assert main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "codes"), *args]) == 1
    err = one_error_line(capsys, "encode")
    assert f"{stereo}: 1.2 kbps is below this model's lowest bitrate for 2 channels (1.72 kbps" in err
    assert (tmp_path / "codes" / "mono.rvq").exists() and not (tmp_path / "codes" / "stereo.rvq").exists()
    assert main(["encode", str(mono), "-o", str(tmp_path / "low.rvq"), "--model", str(model_path), "--kbps", "0.5"]) == 1
    assert "below this model's lowest bitrate (0.86 kbps" in one_error_line(capsys, "encode")
    assert not (tmp_path / "low.rvq").exists()


def test_piped_stereo_audio_gets_the_bitrate_of_the_file(tmp_path, model_path):
    data = tone(tmp_path / "a.wav", 0.3, channels=2).read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "rvqgan", "encode", "-", "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "--kbps", "6"],
        input=data,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "a.rvq", "rb") as f:
        assert Reader(f).header.n_codebooks == 3


def test_kbps_help_says_it_is_the_files_bitrate(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    assert "all its channels together" in " ".join(capsys.readouterr().out.split())


def test_info_and_errors_show_names_without_terminal_controls(tmp_path, model_path, capsys):
    evil = "m\x1b]0;owned\x07\x1b[2J\x1b[31mx\u202e\n"
    src = tone(tmp_path / "a.wav", 0.3)
    model = rvqgan.load_model(str(model_path))
    named = tmp_path / f"b{evil}.rvq"  # a file name can carry them too
    with open(named, "wb") as f:
        compress_file(model, src, f, model_name=evil)
    assert main(["info", str(named)]) == 0
    out = capsys.readouterr().out
    assert "  model        mx  (config" in out and f"{tmp_path}/bmx .rvq:" in out  # the line break is a space
    assert not any(ch in out.replace("\n", "") for ch in "\x1b\x07\u202e")
    (tmp_path / f"c{evil}.rvq").write_bytes(b"not codes")
    assert main(["info", str(tmp_path / f"c{evil}.rvq")]) == 1
    assert f"{tmp_path}/cmx .rvq: not an rvqgan code file" in one_error_line(capsys, "info")
    assert main(["decode", str(tmp_path / f"c{evil}.rvq"), "-o", str(tmp_path / "c.wav"), "--model", str(model_path)]) == 1
    assert "\x1b" not in one_error_line(capsys, "decode")
    assert main(["encode", str(tmp_path / f"d{evil}.wav"), "--model", str(model_path)]) == 1
    assert "\x1b" not in one_error_line(capsys, "encode")


def test_an_output_another_run_wrote_meanwhile_is_kept_without_overwrite(tmp_path, model_path, capsys, monkeypatch):
    import rvqgan.cli.commands as commands

    src = tone(tmp_path / "a.wav", 0.3)
    out = tmp_path / "a.rvq"

    def racing(model, source, f, **options):  # the other run finishes while this one encodes
        out.write_bytes(b"the other run's codes")
        return compress_file(model, source, f, **options)

    monkeypatch.setattr(commands, "compress_file", racing)
    assert main(["encode", str(src), "-o", str(out), "--model", str(model_path)]) == 1
    assert f"{out}: exists" in one_error_line(capsys, "encode")
    assert out.read_bytes() == b"the other run's codes" and sorted(os.listdir(tmp_path)) == ["a.rvq", "a.wav"]
    assert main(["encode", str(src), "-o", str(out), "--model", str(model_path), "--overwrite", "-q"]) == 0
    with open(out, "rb") as f:
        assert Reader(f).header.model == "narrow44"


def test_two_encodes_of_one_output_at_once_never_both_write_it(tmp_path, model_path):
    src = tone(tmp_path / "a.wav", 10.0)
    command = [sys.executable, "-m", "rvqgan", "encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    kinds = {(0, "codebooks"): "wrote", (0, "exists, skipped"): "skipped", (1, "a.rvq: exists (another process"): "failed"}
    outcomes = sorted(next((k for (c, text), k in kinds.items() if c == code and text in err), err) for code, err in results)
    assert outcomes in (["failed", "wrote"], ["skipped", "wrote"]), results  # the second to finish never replaces the first
    assert sorted(os.listdir(tmp_path)) == ["a.rvq", "a.wav"]


def test_a_killed_folder_encode_leaves_no_code_file_behind_and_a_rerun_cleans_up(tmp_path, model_path, capsys):
    import signal

    from rvqgan.fileio import is_temporary

    tone(tmp_path / "in" / "a.wav", 0.3)
    tone(tmp_path / "in" / "b.wav", 240.0)
    codes = tmp_path / "codes"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvqgan", "encode", str(tmp_path / "in"), "-o", str(codes), "--model", str(model_path)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not (codes.is_dir() and [p for p in codes.iterdir() if p.name.startswith(".b")]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the encode finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    [left] = [p for p in codes.iterdir() if p.name.startswith(".")]
    assert is_temporary(left) and left.suffix not in (".rvq", ".dac", ".wav") and (codes / "a.rvq").exists()
    tone(tmp_path / "in" / "b.wav", 0.3)  # shorter this time, so the re-run is quick
    assert main(["encode", str(tmp_path / "in"), "-o", str(codes), "--model", str(model_path), "-q"]) == 0
    assert sorted(os.listdir(codes)) == ["a.rvq", "b.rvq"]
    assert main(["decode", str(codes), "-o", str(tmp_path / "decoded"), "--model", str(model_path), "-q"]) == 0
    assert sorted(os.listdir(tmp_path / "decoded")) == ["a.wav", "b.wav"]


# -- decode: a header checked against the model, memory bounded by the format, a full disk ------------


def _coded(tmp_path: Path, model_path: Path) -> tuple[rvqgan.bitstream.Header, np.ndarray]:
    """A short tone coded by the test model: its header and codes, to make hostile files from."""
    src = tone(tmp_path / "a.wav", 0.3)
    with open(tmp_path / "a.rvq", "wb") as out:
        header = compress_file(rvqgan.load_model(model_path), str(src), out)
    return header, Reader(io.BytesIO((tmp_path / "a.rvq").read_bytes())).read_all()


@pytest.mark.parametrize(
    "changes, decode_error, info_error",
    [
        # valid by itself, but 65536 samples a frame where the model makes 512: it decoded 1.5 s of silence
        ({"frame_rate": 44100 / 65536, "length": 65536}, "the model makes 86.1328 (a hop of 512 samples)", None),
        ({"frame_rate": 44100 / 10**8, "length": 10**8}, "frame_rate", "frame_rate"),  # decoded 200 MB of silence
        ({"frame_rate": 5e-324}, "frame_rate", "frame_rate"),  # exit 70: OverflowError
        ({"frame_rate": 10**400}, "frame_rate", "frame_rate"),  # exit 70: OverflowError
    ],
    ids=["other-hop", "hop-1e8", "subnormal", "huge-int"],
)
def test_a_frame_rate_that_is_not_the_models_is_one_line(
    tmp_path, model_path, capsys, monkeypatch, changes, decode_error, info_error
):
    header, codes = _coded(tmp_path, model_path)
    bad = tmp_path / "bad.rvq"
    bad.write_bytes(write_rvq_unchecked(header, codes[..., :1], monkeypatch, **changes))
    assert main(["decode", str(bad), "-o", str(tmp_path / "out" / "b.wav"), "--model", str(model_path)]) == 1
    assert decode_error in one_error_line(capsys, "decode")
    assert not (tmp_path / "out" / "b.wav").exists() and no_leftovers(tmp_path)
    assert main(["info", str(bad)]) == (0 if info_error is None else 1)
    if info_error is not None:
        assert info_error in one_error_line(capsys, "info")


def test_a_start_far_past_the_end_is_one_line(tmp_path, model_path, capsys):
    _coded(tmp_path, model_path)
    args = ["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "--model", str(model_path)]
    assert main([*args, "--start", "1e305"]) == 1
    assert "--start 1e+305 is at or after the end of the audio (0.300 s)" in one_error_line(capsys, "decode")  # was exit 70


def test_the_largest_chunk_decodes_a_range_in_bounded_memory(tmp_path, model_path, monkeypatch):
    """One chunk of 65535 frames of 28 channels (16.5 M codes, just under `MAX_CHUNK_CODES`: a 20 MB file)
    decodes `--end 0.05` under a 2 GiB address-space limit: it took 1.9 GB of memory (an int64 per bit of the
    chunk). With 38 channels (28 MB) the chunk holds more than the format allows: one line, at once."""
    from test_bitstream import one_chunk_file

    from rvqgan.bitstream import MAX_CHUNK_CODES, Header

    header, _ = _coded(tmp_path, model_path)
    for channels in (28, 38):
        big = dataclasses.replace(header, channels=channels, chunk_frames=65535, length=65535 * 512)
        with monkeypatch.context() as m:
            m.setattr(Header, "check", lambda self: None)
            (tmp_path / f"big{channels}.rvq").write_bytes(one_chunk_file(big, 65535))
    assert 28 * 9 * 65535 <= MAX_CHUNK_CODES < 38 * 9 * 65535
    assert (tmp_path / "big28.rvq").stat().st_size > 20 * 10**6
    out = tmp_path / "out"
    t0 = time.perf_counter()
    args = ["decode", str(tmp_path / "big28.rvq"), "-o", str(out / "a.wav"), "--model", str(model_path), "-q"]
    result = run_limited([*args, "--end", "0.05"])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert (sf.info(out / "a.wav").frames, sf.info(out / "a.wav").channels) == (2205, 28)
    assert time.perf_counter() - t0 < 60
    result = run_limited(["decode", str(tmp_path / "big38.rvq"), "-o", str(out / "b.wav"), "--model", str(model_path)])
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"at most {MAX_CHUNK_CODES} codes a chunk" in result.stderr
    assert not (out / "b.wav").exists() and no_leftovers(out)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_a_full_disk_during_decode_is_one_line_and_leaves_nothing(tmp_path, model_path, capsys, monkeypatch, suffix):
    """The disk fills up while the audio is written (a write that fits no more, as ENOSPC comes): one line,
    exit 1, no output and no temporary file. It was an AssertionError (exit 70) after a traceback per failed
    write for WAV, and a truncated FLAC file with exit 0."""
    from test_files import FullDisk

    import rvqgan.files

    unraisable: list = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)  # where soundfile's callbacks' errors went
    real = rvqgan.files.open_audio_writer
    monkeypatch.setattr(rvqgan.files, "open_audio_writer", lambda out, rate, channels: real(FullDisk(out, 4096), rate, channels))
    src = tone(tmp_path / "a.wav", 1.0)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    out = tmp_path / "out"
    assert main(["decode", str(tmp_path / "a.rvq"), "-o", str(out / f"a{suffix}"), "--model", str(model_path)]) == 1
    assert "cannot write the audio: No space left on device" in one_error_line(capsys, "decode")
    assert not unraisable and not list(out.iterdir())


def test_decoding_to_a_full_standard_output_is_one_line(tmp_path, model_path):
    src = tone(tmp_path / "a.wav", 0.5)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.rvq"), "--model", str(model_path), "-q"]) == 0
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "rvqgan", "decode", str(tmp_path / "a.rvq"), "-o", "-", "--model", str(model_path)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "No space left on device" in result.stderr, result.stderr
