"""Training data: folders of audio decoded once, balanced sampling across named groups, random excerpts.

Every excerpt is a pure function of (seed, index), so a run that resumes at step N sees exactly
the batches it would have seen, whatever the number of loader workers.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import AUDIO_SUFFIXES, AudioError, load_audio, loudest_window, loudness, resample
from .config import DataConfig
from .fileio import atomic_write, expand_inputs, shorten


@dataclass
class _Clip:
    path: str
    audio: np.ndarray  # [T] float16 at the target rate (halves memory; excerpts are promoted to float32)


def _cache_path(cache_dir: Path, path: Path, sample_rate: int) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{sample_rate}|mono-f16"
    return cache_dir / (hashlib.sha1(key.encode()).hexdigest() + ".npy")


def decode_file(path: Path, sample_rate: int, cache_dir: Path | None) -> np.ndarray:
    """A file as mono float16 `[T]` at `sample_rate`, through an optional on-disk cache."""
    cache = _cache_path(cache_dir, path, sample_rate) if cache_dir else None
    if cache is not None and cache.exists():
        try:
            return np.load(cache, allow_pickle=False)
        except (OSError, ValueError):
            pass
    audio, sr = load_audio(path)
    mono = resample(audio.mean(0, keepdims=True), sr, sample_rate)[0].astype(np.float16)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda tmp: np.save(tmp, mono))
    return mono


def expand_sources(sources: list[str]) -> list[Path]:
    """The audio files `sources` name (`fileio.expand_inputs`): folders searched recursively (an
    empty one gives nothing), globs, files. What is there but is no regular file (a FIFO, a link
    loop) is reported once on stderr and skipped."""
    found = expand_inputs(sources, AUDIO_SUFFIXES, strict=False)
    for item in found:
        if item.rel is None and item.error is None and not os.path.isfile(item.path):
            raise FileNotFoundError(f"data folder {shorten(item.path)} does not exist")
        if item.error is not None and not os.path.isdir(item.path):
            print(f"warning: skipping {item.error}", file=sys.stderr)
    return [Path(item.path) for item in found if item.error is None]


def holdout_split(groups: dict[str, list[str]], fraction: float) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split each group's files into (training, held-out) by a hash of the file name.

    In every group, the `round(fraction · n)` files (at least one when `fraction` > 0) with the
    smallest SHA-1 of `GROUP/NAME` (the group's name, then the file's path relative to its folder)
    are held out. The rule depends only on the names, so the same files are held out on every
    machine and in every run, and the held-out files are never trained on: they are the selection
    split for choosing checkpoints and recipes.
    """
    train: dict[str, list[str]] = {}
    held: dict[str, list[str]] = {}
    for name, folders in groups.items():
        files = []
        for folder in folders:
            root = Path(folder)
            for path in expand_sources([folder]):
                rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
                files.append((hashlib.sha1(f"{name}/{rel}".encode()).hexdigest(), str(path)))
        files.sort()
        # At least one file per group, but never a group's last file: training needs one.
        k = 0 if fraction <= 0 else min(max(1, round(fraction * len(files))), len(files) - 1)
        held[name] = sorted(p for _, p in files[:k])
        train[name] = sorted(p for _, p in files[k:])
    return train, held


def load_group(sources: list[str], sample_rate: int, cache_dir: Path | None, min_samples: int) -> list[_Clip]:
    """Decode every audio file named by `sources` (folders or files); unreadable ones are reported once on stderr and skipped."""
    clips = []
    for path in expand_sources(sources):
        try:
            audio = decode_file(path, sample_rate, cache_dir)
        except (AudioError, OSError, ValueError, RuntimeError) as exc:
            _warn_skip(path, exc)
            continue
        if len(audio) >= min_samples:
            clips.append(_Clip(str(path), audio))
    return clips


def interleave_pattern(weights: list[float], max_len: int = 24) -> list[int]:
    """Group indices in a repeating pattern whose proportions approximate `weights` (e.g. [3, 2, 1])."""
    w = np.asarray(weights, dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"group weights must be non-negative and not all zero, got {weights}")
    w = w / w.sum()
    best = None
    for n in range(len(w), max_len + 1):
        counts = np.floor(w * n).astype(int)
        while counts.sum() < n:  # largest remainder
            counts[np.argmax(w * n - counts)] += 1
        err = np.abs(counts / n - w).max()
        if best is None or err < best[0] - 1e-9:
            best = (err, counts)
        if err < 1e-6:
            break
    assert best is not None
    counts = best[1]
    # Spread each group's slots evenly over the pattern.
    slots = sorted((((k + 0.5) / c, g) for g, c in enumerate(counts) for k in range(c)))
    return [g for _, g in slots]


class ExcerptDataset(torch.utils.data.Dataset):
    """Random mono excerpts from named groups of audio, balanced by `config.weights`.

    Item `i` comes from group `pattern[i % len(pattern)]`; the file is drawn with probability
    proportional to its duration, then an offset; excerpts quieter than `min_loudness` LUFS
    are redrawn (up to 8 tries). Each excerpt is normalised to `target_loudness` LUFS (None:
    unchanged), or with `loudness_jitter` > 0 to a level drawn uniformly from
    [target − jitter, target] so the model also learns quiet passages and a low noise floor,
    then peak-limited to 1, and optionally given a random constant phase shift.

    Args:
        groups: group name → folders or files (after `holdout_split`); `config.groups` is not read.
        config: the `data` section of the recipe (weights, levels, phase shift, cache).

    Returns `[1, n_samples]` float32.
    """

    def __init__(
        self,
        groups: dict[str, list[str]],
        config: DataConfig,
        sample_rate: int,
        n_samples: int,
        *,
        seed: int = 0,
        length: int = 10**9,
    ):
        self.names = list(groups)
        self.sample_rate = sample_rate
        self.n_samples = n_samples
        self.seed = seed
        self.target_loudness = config.target_loudness
        self.min_loudness = config.min_loudness
        self.loudness_jitter = config.loudness_jitter
        self.phase_shift = config.phase_shift
        self.length = length
        cache = Path(config.cache_dir) if config.cache_dir else None
        self.clips = [load_group(groups[name], sample_rate, cache, min_samples=max(1, n_samples // 4)) for name in self.names]
        for name, clips in zip(self.names, self.clips):
            if not clips:
                raise ValueError(f"data group {name!r} has no readable audio ({len(groups[name])} sources)")
        self.cum = [np.cumsum([len(c.audio) for c in clips]) for clips in self.clips]
        self.pattern = interleave_pattern([float(config.weights.get(n, 1.0)) for n in self.names])

    def __len__(self) -> int:
        return self.length

    def group_of(self, index: int) -> str:
        return self.names[self.pattern[index % len(self.pattern)]]

    def _draw(self, group: int, rng: np.random.Generator) -> np.ndarray:
        cum = self.cum[group]
        clip = self.clips[group][int(np.searchsorted(cum, rng.integers(cum[-1]), side="right"))]
        audio = clip.audio
        if len(audio) <= self.n_samples:
            out = np.zeros(self.n_samples, dtype=np.float32)
            out[: len(audio)] = audio
            return out
        start = int(rng.integers(len(audio) - self.n_samples + 1))
        return audio[start : start + self.n_samples].astype(np.float32)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        group = self.pattern[index % len(self.pattern)]
        for _ in range(8):
            x = self._draw(group, rng)
            lufs = loudness(x[None], self.sample_rate)
            if lufs > self.min_loudness:
                break
        if self.target_loudness is not None and lufs > -70:
            target = self.target_loudness
            if self.loudness_jitter > 0:
                target -= rng.uniform(0.0, self.loudness_jitter)
            x = x * 10 ** ((target - lufs) / 20)
        peak = np.abs(x).max()
        if peak > 1:
            x = x / peak
        if self.phase_shift:
            x = shift_phase(x, rng.uniform(-math.pi, math.pi))
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]


def quiet_worker(worker_id: int) -> None:
    """A DataLoader's `worker_init_fn`: the worker ignores SIGINT and SIGTERM, which the main process handles.

    Workers are forked with the main process's signal handlers (the CLI's SIGTERM handler raises),
    so a Ctrl-C or a SIGTERM sent to the whole process group (a terminal, a job scheduler) would
    end each worker with a traceback of its own. The main process stops its workers as it unwinds,
    and a worker whose main process is gone exits by itself (the DataLoader's watchdog).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def shift_phase(x: np.ndarray, phase: float) -> np.ndarray:
    """Add a constant phase to every frequency of `x` `[T]` (analytic-signal rotation): same spectrum magnitude."""
    spec = np.fft.rfft(x)
    spec[1:] *= np.exp(1j * phase)
    return np.fft.irfft(spec, n=len(x)).astype(np.float32)


class StepSampler(torch.utils.data.Sampler):
    """Indices `start, start + 1, ...` restricted to this rank's share of each global batch."""

    def __init__(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start = start_step * batch_size * world_size
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __iter__(self):
        i = self.start
        while True:
            step, slot = divmod(i, self.batch_size)
            yield step * self.batch_size * self.world_size + self.rank * self.batch_size + slot
            i += 1

    def __len__(self) -> int:  # effectively endless
        return sys.maxsize


def validation_excerpts(
    sources: list[str], sample_rate: int, seconds: float, max_items: int, cache_dir: str | Path | None
) -> list[tuple[str, torch.Tensor]]:
    """Fixed validation items from `sources` (folders or files): `max_items` files evenly spaced in sorted
    order (unreadable ones are skipped), from each the loudest `seconds`-long window among a few evenly spaced ones."""
    paths = sorted(expand_sources(sources), key=str)
    if len(paths) > max_items:  # choose before decoding: only the chosen files are read
        step = len(paths) / max_items
        paths = [paths[int(i * step)] for i in range(max_items)]
    items = []
    n = int(seconds * sample_rate)
    for path in paths:
        try:
            audio = decode_file(path, sample_rate, Path(cache_dir) if cache_dir else None).astype(np.float32)
        except (AudioError, OSError, ValueError, RuntimeError) as exc:
            _warn_skip(path, exc)
            continue
        items.append((str(path), torch.from_numpy(loudest_window(audio, n).copy())[None]))
    return items


def _warn_skip(path: Path, exc: Exception) -> None:
    message = str(exc) if isinstance(exc, AudioError) else f"{path}: {exc}"
    print(f"warning: skipping unreadable file: {message.splitlines()[0] if message else path}", file=sys.stderr)
