"""All audio I/O, resampling and loudness measurement (ITU-R BS.1770) live here.

Arrays are float32 `[C, T]` in [-1, 1]. soundfile reads WAV, FLAC, OGG/Vorbis, MP3 and
more; soxr resamples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aif", ".aiff", ".au", ".w64", ".caf")


class AudioError(ValueError):
    """Audio that cannot be read or used; the message is one line."""


def load_audio(source: str | Path | BinaryIO, *, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Read audio → (`[C, T]` float32, sample_rate). Rejects empty, non-finite or absurd-rate audio."""
    import soundfile as sf

    name = getattr(source, "name", None) or str(source)
    try:
        data, sample_rate = sf.read(source, start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, OSError
        if isinstance(source, (str, Path)) and not Path(source).exists():
            raise AudioError(f"{name}: no such file") from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = reason.split(": ")[-1] if name in reason else reason  # soundfile repeats the path
        raise AudioError(f"{name}: cannot read as audio ({reason})") from None
    check_sample_rate(sample_rate, name)
    audio = np.ascontiguousarray(data.T)
    if audio.shape[1] == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: audio contains NaN or Inf samples")
    return audio, int(sample_rate)


def check_sample_rate(sample_rate: int, name: str = "audio") -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate {sample_rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]")


def save_audio(target: str | Path | BinaryIO, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write `[C, T]` float audio. WAV defaults to 16-bit PCM; the format follows the suffix (WAV if unknown)."""
    import soundfile as sf

    name = str(getattr(target, "name", target))
    suffix = Path(name).suffix.lower()
    fmt = {".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}.get(suffix, "WAV")
    if subtype is None:
        subtype = {"FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}.get(fmt, "PCM_16")
    data = np.clip(np.asarray(audio, dtype=np.float32).T, -1.0, 1.0)
    sf.write(target, data, sample_rate, format=fmt, subtype=subtype)


def resample(audio: np.ndarray, sample_rate_in: int, sample_rate_out: int) -> np.ndarray:
    """Resample `[C, T]` with soxr (high quality); the output has round(T · out / in) samples."""
    if sample_rate_in == sample_rate_out:
        return audio
    import soxr

    out = soxr.resample(np.ascontiguousarray(audio.T), sample_rate_in, sample_rate_out, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)


def _biquad_power_response(
    b: tuple[float, float, float], a: tuple[float, float, float], freqs: np.ndarray, sample_rate: int
) -> np.ndarray:
    w = 2 * np.pi * freqs / sample_rate
    z1, z2 = np.exp(-1j * w), np.exp(-2j * w)
    h = (b[0] + b[1] * z1 + b[2] * z2) / (a[0] + a[1] * z1 + a[2] * z2)
    return np.abs(h) ** 2


def k_weighting_power(freqs: np.ndarray, sample_rate: int) -> np.ndarray:
    """|H(f)|² of the BS.1770 K-weighting (high shelf +4 dB at 1.5 kHz, then high-pass at 38 Hz)."""
    w0 = 2 * np.pi * 1500.0 / sample_rate
    q = 1 / math.sqrt(2)
    big_a = 10 ** (4.0 / 40)
    alpha = math.sin(w0) / (2 * q)
    cos = math.cos(w0)
    sq = 2 * math.sqrt(big_a) * alpha
    shelf_b = (
        big_a * ((big_a + 1) + (big_a - 1) * cos + sq),
        -2 * big_a * ((big_a - 1) + (big_a + 1) * cos),
        big_a * ((big_a + 1) + (big_a - 1) * cos - sq),
    )
    shelf_a = ((big_a + 1) - (big_a - 1) * cos + sq, 2 * ((big_a - 1) - (big_a + 1) * cos), (big_a + 1) - (big_a - 1) * cos - sq)
    w0 = 2 * np.pi * 38.0 / sample_rate
    alpha, cos = math.sin(w0) / (2 * 0.5), math.cos(w0)
    hp_b = ((1 + cos) / 2, -(1 + cos), (1 + cos) / 2)
    hp_a = (1 + alpha, -2 * cos, 1 - alpha)
    return _biquad_power_response(shelf_b, shelf_a, freqs, sample_rate) * _biquad_power_response(hp_b, hp_a, freqs, sample_rate)


class LoudnessMeter:
    """Integrated loudness (ITU-R BS.1770-4) of audio fed in pieces, plus its sample peak.

    400 ms blocks with 75 % overlap, gated at −70 LUFS absolute and −10 LU relative. The
    K-weighting is applied as its power response on each block's spectrum (zero-phase) rather
    than as a recursive filter: on our validation clips the result is within 0.01 dB of
    pyloudnorm's for most files and within 0.25 dB for all. Memory does not grow with duration
    beyond one float per 100 ms block.
    """

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.block = int(round(0.4 * sample_rate))
        self.step = self.block // 4
        self.weight = k_weighting_power(np.fft.rfftfreq(self.block, 1 / sample_rate), sample_rate)
        scale = np.full(len(self.weight), 2.0)  # one-sided spectrum: DC and Nyquist count once
        scale[0] = 1.0
        if self.block % 2 == 0:
            scale[-1] = 1.0
        self.weight = self.weight * scale / self.block**2
        self.tail: np.ndarray | None = None
        self.energies: list[np.ndarray] = []
        self.peak = 0.0
        self.seen = 0

    def update(self, audio: np.ndarray) -> None:
        """Add `[C, t]` samples."""
        audio = np.asarray(audio, dtype=np.float64)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.shape[1] == 0:
            return
        self.peak = max(self.peak, float(np.abs(audio).max()))
        self.seen += audio.shape[1]
        buf = audio if self.tail is None else np.concatenate([self.tail, audio], 1)
        n_blocks = 0 if buf.shape[1] < self.block else 1 + (buf.shape[1] - self.block) // self.step
        for start in range(0, n_blocks, 256):
            idx = np.arange(start, min(n_blocks, start + 256))
            frames = np.stack([buf[:, i * self.step : i * self.step + self.block] for i in idx], 1)  # [C, n, block]
            spec = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
            self.energies.append((spec * self.weight).sum(-1).sum(0))
        self.tail = buf[:, n_blocks * self.step :]

    def loudness(self) -> float:
        """Integrated loudness in LUFS (−70 for silence); audio shorter than 0.4 s is zero-padded."""
        energies = np.concatenate(self.energies) if self.energies else np.zeros(0)
        if energies.size == 0 and self.tail is not None and self.tail.shape[1]:
            padded = np.pad(self.tail, ((0, 0), (0, self.block - self.tail.shape[1])))
            spec = np.abs(np.fft.rfft(padded, axis=-1)) ** 2
            energies = np.array([(spec * self.weight).sum()])
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10 * np.log10(energies + 1e-20)
        gated = energies[block_lufs > -70]
        if gated.size == 0:
            return -70.0
        relative = -0.691 + 10 * np.log10(gated.mean()) - 10
        gated = energies[(block_lufs > -70) & (block_lufs > relative)]
        if gated.size == 0:
            return -70.0
        return float(max(-70.0, -0.691 + 10 * np.log10(gated.mean())))


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of `[C, T]` (see `LoudnessMeter`)."""
    meter = LoudnessMeter(sample_rate)
    meter.update(audio)
    return meter.loudness()


def is_audio_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def find_audio_files(folder: str | Path) -> list[Path]:
    """All audio files under `folder`, recursively, sorted."""
    out = []
    for root, _, files in os.walk(folder):
        out += [Path(root) / f for f in files if is_audio_path(f)]
    return sorted(out)
