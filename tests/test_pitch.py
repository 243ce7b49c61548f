"""Pitch metrics on synthetic tones of known pitch."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("librosa", reason="pitch metrics need the eval extra (librosa)")

from rvqgan.pitch import pitch_errors, track_pitch  # noqa: E402

SR = 24000


def tone(f0: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """A harmonic tone (five partials) at `f0` Hz."""
    t = np.arange(int(seconds * sr)) / sr
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)).astype(np.float32)


@pytest.mark.parametrize("f0", [110.0, 220.0, 440.0])
def test_tracks_known_pitch(f0):
    f, voiced = track_pitch(tone(f0), SR)
    assert voiced[5:-5].mean() > 0.9
    assert np.nanmedian(np.abs(1200 * np.log2(f[voiced] / f0))) < 10  # within 10 cents


def test_errors_in_cents_and_voicing():
    ref = tone(220.0)
    same = pitch_errors(ref, ref, SR)
    assert same["f0_rmse_cents"] < 5 and same["voicing_error"] < 0.02
    semitone = pitch_errors(ref, tone(220.0 * 2 ** (1 / 12)), SR)
    assert 90 < semitone["f0_rmse_cents"] < 110  # one semitone = 100 cents
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    lost = pitch_errors(ref, noise, SR)
    assert lost["voicing_error"] > 0.8  # voiced tone decoded as noise
