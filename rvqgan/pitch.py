"""Pitch metrics: does decoded audio keep the original's fundamental frequency and voicing?

Spectral distances barely notice a codec that turns voiced speech or a solo instrument into
noise of the right spectral envelope; a pitch tracker does. Both signals are tracked with
pYIN (Mauch & Dixon, 2014; `librosa.pyin`, an optional dependency of the `eval` extra) at
16 kHz, and compared frame by frame:

- F0 error: RMS difference in cents, 1200·log2(f_est / f_ref), over the frames voiced in both;
- voicing error: the fraction of frames whose voiced/unvoiced decision differs.

Meant for speech and monophonic music: on polyphonic audio pYIN follows one of the voices.
"""

from __future__ import annotations

import numpy as np

from .audio import resample

TRACK_RATE = 16000
FMIN = 50.0  # Hz: below the lowest speaking voices
FMAX = 1100.0  # Hz: above a soprano's top C
FRAME = 1024  # samples at 16 kHz (64 ms, two periods of FMIN)
HOP = 160  # 10 ms


def track_pitch(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz (NaN where unvoiced) and the voiced flag per 10 ms frame of mono `[T]` audio."""
    try:
        import librosa  # optional: eval extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("pitch metrics need librosa: pip install 'rvqgan[eval]'") from exc
    x = resample(np.asarray(audio, dtype=np.float32)[None], sample_rate, TRACK_RATE)[0]
    if len(x) < FRAME:
        x = np.pad(x, (0, FRAME - len(x)))
    f0, voiced, _ = librosa.pyin(x, fmin=FMIN, fmax=FMAX, sr=TRACK_RATE, frame_length=FRAME, hop_length=HOP, center=True)
    return f0.astype(np.float64), voiced.astype(bool)


def pitch_errors(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> dict[str, float | None]:
    """`f0_rmse_cents` (None when no frame is voiced in both) and `voicing_error` (0–1) of `estimate` against `reference`."""
    f_ref, v_ref = track_pitch(reference, sample_rate)
    f_est, v_est = track_pitch(estimate, sample_rate)
    n = min(len(f_ref), len(f_est))
    f_ref, v_ref, f_est, v_est = f_ref[:n], v_ref[:n], f_est[:n], v_est[:n]
    both = v_ref & v_est & np.isfinite(f_ref) & np.isfinite(f_est)
    cents = 1200.0 * np.log2(f_est[both] / f_ref[both])
    return {
        "f0_rmse_cents": float(np.sqrt(np.mean(cents**2))) if both.any() else None,
        "voicing_error": float(np.mean(v_ref != v_est)) if n else None,
    }


__all__ = ["track_pitch", "pitch_errors"]
