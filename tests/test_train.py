"""Training: losses, discriminators, data pipeline, the smoke recipe learning, exact resume, DDP, failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DATA, ROOT, synth

from rvqgan.checkpoint import load_model
from rvqgan.cli import main
from rvqgan.config import ConfigError, load_train_config
from rvqgan.data import ExcerptDataset, interleave_pattern
from rvqgan.discriminator import Discriminator
from rvqgan.loss import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_filterbank,
    multiscale_mel_loss,
    multiscale_stft_loss,
    si_sdr,
)
from rvqgan.train import Trainer, TrainingError, codebook_usage

SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke(tmp_path: Path, *overrides: str):
    data = [
        f'data.groups={{"speech": ["{DATA}/train/speech"], "music": ["{DATA}/train/music"], "general": ["{DATA}/train/general"]}}',
        f'data.valid_folders=["{DATA}/valid/speech"]',
        f'data.cache_dir="{ROOT}/.cache/audio"',
        f'out_dir="{tmp_path}/run"',
    ]
    return load_train_config(SMOKE, [*data, *overrides])


def test_mel_filterbank_matches_slaney_reference_values():
    fb = mel_filterbank(22050, 2048, 128)
    assert fb.shape == (128, 1025)
    # Slaney-normalised triangles: each filter's area in Hz is 1 (±bin discretisation).
    df = 22050 / 2048
    area = fb.sum(1) * df
    assert torch.allclose(area[20:], torch.ones_like(area[20:]), atol=0.05)
    assert fb[0, 1] > 0 and fb[0, 10] == 0


def test_losses_on_known_cases():
    x = synth(8000)
    assert multiscale_mel_loss(x, x, 16000) == 0
    assert multiscale_mel_loss(0.5 * x, x, 16000) > 0.5  # 7 scales × |log10 0.5| ≈ 2.1, less where clamped
    assert multiscale_stft_loss(x, x) == 0
    assert si_sdr(x, 3 * x).item() > 70
    noisy = x + 0.1 * x.std() * torch.randn_like(x)  # SNR 20 dB
    assert abs(si_sdr(x, noisy).item() - 20) < 0.5


def test_discriminator_shapes_and_gan_losses():
    d = Discriminator(period_channels=(4, 8), stft_channels=4)
    feats = d(synth(4000).repeat(2, 1, 1))
    assert len(feats) == 8 and all(f[-1].shape[0] == 2 for f in feats)
    real, fake = d(synth(4000)), d(torch.zeros(1, 1, 4000))
    assert discriminator_loss(real, fake) > 0 and generator_adversarial_loss(fake, "hinge").dim() == 0
    assert feature_matching_loss(real, real) == 0
    full = Discriminator()
    assert sum(p.numel() for p in full.parameters()) == 42_519_760  # the paper's discriminator


def test_codebook_usage():
    uniform = torch.arange(1024).repeat(4).view(1, 1, -1).repeat(1, 2, 1)
    assert codebook_usage(uniform, 1024)["efficiency"] == pytest.approx(1.0)
    collapsed = torch.zeros(1, 2, 100, dtype=torch.long)
    assert codebook_usage(collapsed, 1024)["efficiency"] == 0.0


def test_balanced_groups_and_corrupt_files(tmp_path, capfd):
    for group in ("a", "b"):
        (tmp_path / group).mkdir()
        t = np.arange(16000) / 16000
        sf.write(tmp_path / group / "ok.wav", 0.3 * np.sin(2 * np.pi * (220 if group == "a" else 880) * t), 16000)
    (tmp_path / "a" / "broken.flac").write_bytes(b"fLaC" + os.urandom(200))
    ds = ExcerptDataset({"a": [str(tmp_path / "a")], "b": [str(tmp_path / "b")]}, {"a": 2, "b": 1}, 16000, 4000)
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
    fixed = ExcerptDataset({"a": [str(tmp_path / "a")]}, None, 16000, 8000, target_loudness=-16.0)
    jitter = ExcerptDataset({"a": [str(tmp_path / "a")]}, None, 16000, 8000, target_loudness=-16.0, loudness_jitter=20.0)
    fixed_levels = [loudness(fixed[i][0].numpy()[None], 16000) for i in range(12)]
    levels = [loudness(jitter[i][0].numpy()[None], 16000) for i in range(12)]
    assert max(abs(v + 16.0) for v in fixed_levels) < 0.1
    assert all(-36.1 < v < -15.9 for v in levels) and max(levels) - min(levels) > 8.0


def test_config_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text() + "\nlearning_rat: 0.1\n")
    assert main(["train", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "unknown config key 'learning_rat'" in err and "\n" not in err
    with pytest.raises(ConfigError, match="does not exist"):
        Trainer(smoke(tmp_path, 'data.groups={"x": ["/nonexistent"]}'))
    with pytest.raises(ConfigError, match="precision"):
        smoke(tmp_path, 'precision="fp8"')
    with pytest.raises(ConfigError, match="must be a number"):
        smoke(tmp_path, 'optim.lr="fast"')


@pytest.mark.slow
def test_smoke_recipe_lowers_held_out_mel(tmp_path):
    trainer = Trainer(smoke(tmp_path, "steps=150"), progress=False)
    before = trainer.validate()["valid/mel"]
    trainer.fit()
    after = trainer.validate()["valid/mel"]
    assert after < 0.85 * before, (before, after)
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").exists() and (tmp_path / "run" / "best.safetensors").exists()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any("codebook/0/perplexity" in line for line in lines) and any("grad_norm/g" in line for line in lines)


def test_resume_is_exact(tmp_path):
    common = ["adversarial_start=2", "save_every=3", "valid_every=1000", "batch_size=2", "data.excerpt_seconds=0.25"]
    straight = Trainer(smoke(tmp_path / "a", "steps=6", *common), progress=False)
    straight.fit()
    first = Trainer(smoke(tmp_path / "b", "steps=3", *common), progress=False)
    first.fit()
    resumed = Trainer(smoke(tmp_path / "b", "steps=6", *common), resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    for a, b in [(straight.generator, resumed.generator), (straight.discriminator, resumed.discriminator)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ckpt = tmp_path / "b" / "run" / "checkpoints" / "latest.pt"
    assert main(["export", str(ckpt), str(tmp_path / "g.safetensors"), "--remove-dc", str(DATA / "train" / "speech")]) == 0
    exported = load_model(tmp_path / "g.safetensors")
    assert not torch.equal(exported.decoder.model[-2].bias, resumed.generator.decoder.model[-2].bias)
    assert main(["export", str(ckpt), str(tmp_path / "h.safetensors"), "--remove-dc", str(tmp_path / "missing")]) == 1


def test_non_finite_steps_are_skipped_then_stop(tmp_path, capfd):
    trainer = Trainer(smoke(tmp_path, "max_bad_steps=3", "batch_size=2"), progress=False)
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    batch = torch.full((2, 1, 8000), float("nan"))
    for _ in range(2):
        assert trainer.train_step(batch)["bad_step"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.generator.state_dict().items())
    with pytest.raises(TrainingError, match="3 consecutive non-finite steps"):
        trainer.train_step(batch)
    assert "update skipped" in capfd.readouterr().err


@pytest.mark.slow
def test_two_process_torchrun_agrees(tmp_path):
    cfg = [
        f'--set=out_dir="{tmp_path}/ddp"',
        "--set=steps=3",
        "--set=batch_size=2",
        "--set=adversarial_start=1",
        "--set=valid_every=1000",
        f'--set=data.cache_dir="{ROOT}/.cache/audio"',
        f'--set=data.groups={{"speech": ["{DATA}/train/speech"], "general": ["{DATA}/train/general"]}}',
        "--set=data.valid_folders=[]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "rvqgan",
            "train",
            "--config",
            str(SMOKE),
            *cfg,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all 2 ranks hold identical weights at step 3" in result.stderr
    assert (tmp_path / "ddp" / "checkpoints" / "latest.pt").exists()
