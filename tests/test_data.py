"""Training data: balanced groups, corrupt files, loudness levels, and the held-out selection split."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT

from rvqgan.config import DataConfig
from rvqgan.data import ExcerptDataset, expand_sources, holdout_split, interleave_pattern, quiet_worker


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


# `rvqgan` whose whole process group gets SIGTERM from another process (as from a job scheduler or
# `kill -- -PGID`) after its first training step, while its DataLoader worker is running. (A worker
# that the signal kills makes the main process raise "DataLoader worker ... is killed by signal" as
# it unwinds; one that raises in its turn prints its own traceback.)
TERMINATED_AFTER_THE_FIRST_STEP = """
import os, signal, subprocess, sys
from rvqgan.cli import main
from rvqgan.train import Trainer
step = Trainer.train_step
def step_then_terminate(self, batch):
    logs = step(self, batch)
    subprocess.run([sys.executable, "-c", f"import os, signal; os.killpg({os.getpgrp()}, signal.SIGTERM)"])
    return logs
Trainer.train_step = step_then_terminate
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_to_a_training_process_group_is_one_line_without_worker_tracebacks(corpus, tmp_path):
    """Loader workers ignore SIGINT and SIGTERM (`quiet_worker`): the main process alone unwinds and says so."""
    settings = [f'out_dir="{tmp_path}/run"', f'data.cache_dir="{tmp_path}/cache"', "data.num_workers=1", "steps=50"]
    args = ["train", "--config", "smoke", "--data", str(corpus / "train"), *(a for s in settings for a in ("--set", s))]
    proc = subprocess.run(
        [sys.executable, "-c", TERMINATED_AFTER_THE_FIRST_STEP, *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
    )
    assert proc.returncode == 143 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == "rvqgan train: terminated"


def test_loader_workers_ignore_stop_signals():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        quiet_worker(0)
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_a_fifo_among_training_files_is_skipped_with_a_warning(tmp_path, capfd):
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "ok.wav", np.zeros(160), 16000)
    os.mkfifo(tmp_path / "a" / "pipe.wav")  # opening it would wait for a writer forever
    assert expand_sources([str(tmp_path / "a")]) == [tmp_path / "a" / "ok.wav"]
    err = capfd.readouterr().err
    assert "skipping" in err and "pipe.wav: not a regular file (a FIFO)" in err
