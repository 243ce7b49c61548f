"""Evaluation metrics on hand-computable cases, bootstrap statistics, and the HTML report in Chromium."""

from __future__ import annotations

import csv
import json
import math
import subprocess

import numpy as np
import pytest
from conftest import chromium, modulated_tone, write_recordings

import rvqgan
from rvqgan.evaluate import _write_tables, align, bootstrap_ci, paired, run_evaluation, score, summary_lines, visqol


def test_identical_signals():
    x = modulated_tone(3.0)
    s = score(x, x.copy(), 44100, speech=False, with_visqol=False)
    assert s["mel"] == 0 and s["stft"] == 0 and s["waveform_l1"] == 0 and s["si_sdr"] > 70


def test_pitch_metrics_only_when_asked():
    pytest.importorskip("librosa")
    x = modulated_tone(3.0)
    assert "f0_rmse_cents" not in score(x, x.copy(), 44100, speech=False, with_visqol=False)
    s = score(x, x.copy(), 44100, speech=True, with_visqol=False, with_pitch=True)
    assert s["f0_rmse_cents"] < 5 and s["voicing_error"] < 0.05


def test_known_gain():
    x = modulated_tone(3.0)
    s = score(x, 0.5 * x, 44100, speech=False, with_visqol=False)
    assert s["si_sdr"] > 70  # scale-invariant
    assert s["waveform_l1"] == pytest.approx(0.5 * np.abs(x).mean(), rel=1e-5)
    # Mel magnitudes scale linearly, so every one of the 7 scales differs by log10(2) where nothing is clamped.
    assert s["mel"] == pytest.approx(7 * math.log10(2), abs=0.01)


@pytest.mark.parametrize("delay", [0, 37, -120, 2000])
def test_known_delay_is_recovered(delay):
    x = modulated_tone(2.0)
    shifted = np.roll(x, delay)
    aligned = align(x, shifted, 2205)
    inner = slice(2205, -2205)
    assert np.array_equal(aligned[inner], x[inner])


@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_white_noise_at_known_snr(snr):
    x = modulated_tone(5.0)
    x = x - x.mean()
    noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr / 10))
    s = score(x, x + noise, 44100, speech=False, with_visqol=False)
    assert s["si_sdr"] == pytest.approx(snr, abs=0.3)


def test_visqol_orders_quality():
    pytest.importorskip("visqol")
    x = modulated_tone(3.0, 48000)
    noisy = x + 0.05 * np.random.default_rng(2).standard_normal(len(x)).astype(np.float32)
    same, worse = visqol(x, x, 48000, "audio"), visqol(x, noisy, 48000, "audio")
    assert same > 4.5 and worse < same - 0.3


def test_bootstrap_and_paired():
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 1.0, 400)
    mean, lo, hi = bootstrap_ci(values)
    assert lo < mean < hi and lo < 1.0 < hi and hi - lo < 0.3
    rows = [
        {"item": str(i), "group": "g", "system": s, "m": v}
        for i in range(30)
        for s, v in (("a", 1.0 + i * 0.01), ("b", 0.5 + i * 0.01 + 0.05 * np.sin(i)))
    ]
    assert paired(rows, "a", "b", "m")["excludes_zero"]
    rows = [
        {"item": str(i), "group": "g", "system": s, "m": float(np.sin(i * (1 + (s == "b"))))} for i in range(30) for s in "ab"
    ]
    assert not paired(rows, "a", "b", "m")["excludes_zero"]


@pytest.mark.slow
def test_report_in_headless_chromium(tmp_path):
    """An evaluation of one synthetic speech and one synthetic music item (16 kHz mono FLAC and 44.1 kHz
    stereo WAV, pitched both), its numbers, and its report rendered without errors in Chromium."""
    pytest.importorskip("av")
    pytest.importorskip("visqol")
    pytest.importorskip("librosa")
    browser = chromium()
    data = write_recordings(tmp_path / "data", files=1, seconds=1.5, groups=("speech", "music"))
    model = tmp_path / "tiny.safetensors"
    rvqgan.save_model(rvqgan.build_model("tiny"), model)
    result = run_evaluation(
        str(model),
        data,
        tmp_path / "report",
        n_codebooks=[1, 4],
        baselines=["opus:8", "cmd:copy=cp {in} {out}"],
        seconds=1.5,
        workers=1,
        progress=False,
    )
    assert set(result["summary"]) == {"tiny 1q", "tiny 4q", "opus 8", "copy"}
    copy = result["summary"]["copy"]["overall"]
    assert copy["mel"][0] < 0.02 and copy["si_sdr"][0] > 40  # 16-bit WAV round trip
    assert (
        "visqol_speech" in result["summary"]["tiny 4q"]["speech"] and "visqol_speech" not in result["summary"]["tiny 4q"]["music"]
    )
    # Pitch on speech and music: the untrained model voices nothing, so only the copy has an F0 error.
    assert "voicing_error" in result["summary"]["tiny 4q"]["speech"] and "f0_rmse_cents" in copy
    for name in ("items.csv", "items.json", "summary.json", "report.html"):
        assert (tmp_path / "report" / name).exists()
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--autoplay-policy=no-user-gesture-required",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=20000",
        "--dump-dom",
        (tmp_path / "report" / "report.html").as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert 'data-ok="yes"' in out.stdout, out.stdout[-500:]
    assert "images 7/7 loaded" in out.stdout  # 3 rate-quality curves, 2 spectrogram panels, 2 per-item pairs
    assert "CONSOLE" not in out.stderr, [line for line in out.stderr.splitlines() if "CONSOLE" in line]


def test_items_csv_cells_from_names_are_never_formulas_and_numbers_stay_numbers(tmp_path):
    names = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "plain"]
    rows = [
        {"item": f"{name}.wav", "group": name, "system": name, "family": name, "n_codebooks": 4, "si_sdr": -3.2, "mel": 1.5}
        for name in names
    ]
    _write_tables(tmp_path, rows, {})
    with open(tmp_path / "items.csv", newline="") as f:
        read = list(csv.DictReader(f))
    for name, row in zip(names, read):
        text = name if name == "plain" else "'" + name
        assert (row["item"], row["group"], row["system"], row["family"]) == (f"{text}.wav", text, text, text)
        assert (row["si_sdr"], row["mel"], row["n_codebooks"]) == ("-3.2", "1.5", "4")  # numbers as they are
    assert [r["item"] for r in json.loads((tmp_path / "items.json").read_text())] == [f"{n}.wav" for n in names]


def test_printed_summary_lines_carry_no_terminal_controls():
    result = {"summary": {"m\x1b]0;owned\x07\x1b[2J 4q": {"overall": {"kbps_codes": (6.0, 6.0, 6.0), "mel": (1.0, 1.0, 1.0)}}}}
    assert summary_lines(result) == [f"  {'m 4q':<24} 6.00 kbps, mel 1.000"]
