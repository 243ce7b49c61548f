"""Training data: balanced groups, corrupt files, loudness levels, and the held-out selection split."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from rvqgan.config import DataConfig
from rvqgan.data import ExcerptDataset, expand_sources, holdout_split, interleave_pattern


def test_balanced_groups_and_corrupt_files(tmp_path, capfd):
    for group in ("a", "b"):
        (tmp_path / group).mkdir()
        t = np.arange(16000) / 16000
        sf.write(tmp_path / group / "ok.wav", 0.3 * np.sin(2 * np.pi * (220 if group == "a" else 880) * t), 16000)
    (tmp_path / "a" / "broken.flac").write_bytes(b"fLaC" + bytes(range(200)))
    groups = {"a": [str(tmp_path / "a")], "b": [str(tmp_path / "b")]}
    ds = ExcerptDataset(groups, DataConfig(groups=groups, weights={"a": 2, "b": 1}), 16000, 4000)
    err = capfd.readouterr().err
    assert len([line for line in err.splitlines() if "broken.flac" in line]) == 1 and "skipping" in err
    assert [ds.group_of(i) for i in range(6)] == ["a", "b", "a", "a", "b", "a"]
    x = ds[5]
    assert x.shape == (1, 4000) and torch.equal(x, ds[5])  # deterministic per index
    assert interleave_pattern([3, 2, 1]).count(0) == 3


def test_loudness_jitter_spreads_levels(tmp_path):
    from rvqgan.audio import loudness

    (tmp_path / "a").mkdir()
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a" / "noise.wav", 0.1 * rng.standard_normal(48000), 16000)
    groups = {"a": [str(tmp_path / "a")]}
    fixed = ExcerptDataset(groups, DataConfig(groups=groups, target_loudness=-16.0, phase_shift=False), 16000, 8000)
    config = DataConfig(groups=groups, target_loudness=-16.0, loudness_jitter=20.0, phase_shift=False)
    jitter = ExcerptDataset(groups, config, 16000, 8000)
    fixed_levels = [loudness(fixed[i][0].numpy()[None], 16000) for i in range(12)]
    levels = [loudness(jitter[i][0].numpy()[None], 16000) for i in range(12)]
    assert max(abs(v + 16.0) for v in fixed_levels) < 0.1
    assert all(-36.1 < v < -15.9 for v in levels) and max(levels) - min(levels) > 8.0


def test_holdout_split_is_stable_disjoint_and_per_group(tmp_path):
    for group, n in (("a", 20), ("b", 3)):
        (tmp_path / group / "sub").mkdir(parents=True)
        for i in range(n):
            sf.write(tmp_path / group / "sub" / f"{i}.wav", np.zeros(160), 16000)
    groups = {"a": [str(tmp_path / "a")], "b": [str(tmp_path / "b")]}
    train, held = holdout_split(groups, 0.1)
    assert len(held["a"]) == 2 and len(held["b"]) == 1  # at least one per group
    for g in groups:
        assert not set(train[g]) & set(held[g]) and len(train[g]) + len(held[g]) == len(os.listdir(tmp_path / g / "sub"))
    assert holdout_split(groups, 0.1) == (train, held)  # the same files every time
    # The rule reads names relative to the group's folder, not where the folder lies.
    moved = tmp_path / "elsewhere"
    (tmp_path / "a").rename(moved)
    _, held_moved = holdout_split({"a": [str(moved)]}, 0.1)
    assert [os.path.basename(p) for p in held_moved["a"]] == [os.path.basename(p) for p in held["a"]]
    assert holdout_split(groups | {"a": [str(moved)]}, 0.0)[1] == {"a": [], "b": []}


def test_sources_are_folders_files_or_globs(tmp_path):
    for name in ("a/x.wav", "a/sub/y.flac", "b.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, np.zeros(160), 16000)
    (tmp_path / "empty").mkdir()
    found = expand_sources([str(tmp_path / "a"), str(tmp_path / "*.wav"), str(tmp_path / "empty")])
    assert found == [tmp_path / "a" / "sub" / "y.flac", tmp_path / "a" / "x.wav", tmp_path / "b.wav"]
    with pytest.raises(FileNotFoundError, match="data folder .*missing does not exist"):
        expand_sources([str(tmp_path / "a"), str(tmp_path / "missing")])
