"""Training: the step against the plain reference order, the smoke recipe learning, exact resume, export, DDP, failures.

Every test here trains on, or validates against, the synthetic corpus of the `corpus` fixture (the
smoke recipe's groups pointed at its folders), so it runs anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, synth

import rvqgan
from rvqgan import precision
from rvqgan.checkpoint import CheckpointError, load_training_checkpoint
from rvqgan.cli import main
from rvqgan.config import ConfigError, load_train_config
from rvqgan.loading import load_model
from rvqgan.loss import discriminator_loss, feature_matching_loss, generator_adversarial_loss, multiscale_mel_loss
from rvqgan.train import Trainer, TrainingError, load_recipe

SMOKE = ROOT / "rvqgan" / "configs" / "smoke.yaml"
REFERENCE_PTH = ROOT / "tests" / "data" / "dac-reference" / "reference_small.pth"
SMALL_DISCRIMINATOR = (
    "discriminator.periods=[2, 3]",
    "discriminator.fft_sizes=[512]",
    "discriminator.period_channels=[8, 16, 32]",
    "discriminator.stft_channels=8",
)


@pytest.fixture
def smoke(corpus):
    """`smoke(tmp_path, *overrides)`: the smoke recipe on the synthetic corpus, writing under `tmp_path`."""

    def make(tmp_path: Path, *overrides: str):
        train = corpus / "train"
        data = [
            f'data.groups={{"speech": ["{train}/speech"], "music": ["{train}/music"], "general": ["{train}/general"]}}',
            f'data.valid_folders=["{corpus}/valid/speech"]',
            f'data.cache_dir="{corpus}/.cache"',
            f'out_dir="{tmp_path}/run"',
        ]
        return load_train_config(SMOKE, [*data, *overrides])

    return make


@pytest.fixture
def finetune(corpus):
    """`finetune(tmp_path, init, *overrides)` → `load_recipe` of the fine-tuning recipe, cut down to a
    few cheap steps on the synthetic corpus, writing under `tmp_path`."""

    def make(tmp_path: Path, init: str | Path, *overrides: str):
        cheap = [
            "batch_size=2",
            "data.excerpt_seconds=0.25",
            "data.num_workers=0",
            f'data.cache_dir="{corpus}/.cache"',
            "fuse_snake=False",
            "valid_every=1000",
            "save_every=1000",
            f'out_dir="{tmp_path}/run"',
        ]
        return load_recipe("finetune", [*cheap, *overrides], data_dirs=[str(corpus / "train")], init=str(init))

    return make


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors_are_one_line(tmp_path, capsys, smoke):
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
    for init, message in [("nope.safetensors", "no such model file"), (str(SMOKE), "not a valid safetensors")]:
        assert main(["train", "--config", "finetune", "--init", init, "--data", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


@pytest.mark.slow
def test_smoke_recipe_lowers_held_out_mel(tmp_path, smoke):
    trainer = Trainer(smoke(tmp_path, "steps=150"), progress=False)
    before = trainer.validate()["valid/mel"]
    trainer.fit()
    after = trainer.validate()["valid/mel"]
    assert after < 0.85 * before, (before, after)
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").exists() and (tmp_path / "run" / "best.safetensors").exists()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any("codebook/0/perplexity" in line for line in lines) and any("grad_norm/g" in line for line in lines)


def test_a_cpu_budget_stops_the_run_and_counts_over_resumes(tmp_path, smoke, capsys):
    common = ["steps=50", "valid_every=1000", "save_every=1000", "batch_size=2", "data.excerpt_seconds=0.25"]
    tiny = "max_cpu_minutes=0.0001"  # 6 ms: less than one step
    first = Trainer(smoke(tmp_path, *common, tiny), progress=False)
    first.fit()
    assert first.step == 1 and first.cpu_seconds >= 0.006
    assert "CPU budget of 0.0001 minutes used at step 1: stopping" in capsys.readouterr().err
    saved = load_training_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert saved["step"] == 1 and saved["cpu_seconds"] == first.cpu_seconds
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["cpu_seconds"] for e in logged if "cpu_seconds" in e] == [first.cpu_seconds]  # the last step is logged
    again = Trainer(smoke(tmp_path, *common, tiny), resume=True, progress=False)
    weights = _state(again.generator)
    again.fit()  # the budget is already used: nothing trains, nothing is written
    assert again.step == 1 and _same(weights, _state(again.generator))
    assert "CPU budget of 0.0001 minutes used at step 1: stopping" in capsys.readouterr().err
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == len(logged)
    more = Trainer(smoke(tmp_path, *common, "max_cpu_minutes=1000", "steps=3"), resume=True, progress=False)
    more.fit()
    assert more.step == 3 and more.cpu_seconds > first.cpu_seconds
    with pytest.raises(ConfigError, match="max_cpu_minutes must be positive"):
        smoke(tmp_path, "max_cpu_minutes=0")


def test_resume_is_exact(tmp_path, smoke, corpus):
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
    assert main(["export", str(ckpt), str(tmp_path / "g.safetensors"), "--remove-dc", str(corpus / "train" / "speech")]) == 0
    exported = load_model(tmp_path / "g.safetensors")
    assert not torch.equal(exported.decoder.model[-2].bias, resumed.generator.decoder.model[-2].bias)
    assert main(["export", str(ckpt), str(tmp_path / "h.safetensors"), "--remove-dc", str(tmp_path / "missing")]) == 1
    # The shipping path (fp16 weights, DC removal, folded weight norm) decodes like the training generator.
    assert main(["export", str(ckpt), str(tmp_path / "f.safetensors"), "--fp16"]) == 0
    shipped = load_model(tmp_path / "f.safetensors").folded()
    trained = resumed.generator.eval()
    x = torch.stack([resumed.dataset[i] for i in range(2)])
    with torch.no_grad():
        codes = trained.encode(x)
        assert (shipped.encode(x) == codes).float().mean() > 0.98
        ref = trained.decode(codes)

        def snr(model: torch.nn.Module, centre: bool) -> float:
            y, r = model.decode(codes), ref
            if centre:  # removing the DC offset shifts the output by (nearly) a constant
                y, r = y - y.mean(-1, keepdim=True), r - r.mean(-1, keepdim=True)
            return float(10 * torch.log10(r.pow(2).sum() / (y - r).pow(2).sum()))

        assert snr(shipped, centre=False) > 50  # fp16 storage and folding: measured 58.7 dB
        # The barely trained tiny model has a large offset, so the pre-tanh shift is not quite a
        # constant after tanh: measured 32.8 dB here.
        assert snr(exported.folded(), centre=True) > 25


def _naive_step(trainer: Trainer, audio: torch.Tensor) -> dict[str, float]:
    """The training step written out as the reference runs it, one call per network use."""
    g, d, w = trainer.generator, trainer.discriminator, trainer.config.loss
    out = g(audio)
    recon = out.audio
    loss_d = discriminator_loss(d(audio), d(recon.detach()), w.gan)
    trainer.opt_d.zero_grad()
    loss_d.backward()
    torch.nn.utils.clip_grad_norm_(d.parameters(), trainer.config.optim.grad_clip_d)
    trainer.opt_d.step()
    trainer.d_grads = [p.grad.clone() for p in d.parameters()]  # the generator step below adds to them
    mel = multiscale_mel_loss(recon, audio, g.sample_rate, w.mel_windows, w.mel_bands)
    with torch.no_grad():
        real = d(audio)
    fake = d(recon)
    adv, fm = generator_adversarial_loss(fake, w.gan), feature_matching_loss(real, fake)
    total = w.mel * mel + w.commitment * out.commitment_loss + w.codebook * out.codebook_loss + w.adversarial * adv
    total = total + w.feature_matching * fm
    trainer.opt_g.zero_grad()
    total.backward()
    torch.nn.utils.clip_grad_norm_(g.parameters(), trainer.config.optim.grad_clip_g)
    trainer.opt_g.step()
    return {"loss/d": loss_d.item(), "loss/mel": mel.item(), "loss/adversarial": adv.item(), "loss/g": total.item()}


def test_train_step_equals_the_naive_step(tmp_path, smoke):
    """The optimised step (batched real+fake discriminator pass, frozen discriminator in the generator
    step, lazy logging) computes the same losses, gradients and updates as the plain reference order."""
    overrides = ("adversarial_start=0", "batch_size=2", "data.valid_folders=[]", "ema_decay=0.9")
    fast = Trainer(smoke(tmp_path / "fast", *overrides), progress=False)
    naive = Trainer(smoke(tmp_path / "naive", *overrides), progress=False)
    audio = torch.stack([fast.dataset[i] for i in range(2)])
    start = {k: v.clone() for k, v in fast.generator.state_dict().items()}
    after = []
    for _ in range(2):
        torch.manual_seed(1)
        logs = fast.train_step(audio)
        torch.manual_seed(1)
        expected = _naive_step(naive, audio)
        for key, value in expected.items():
            assert logs[key].item() == pytest.approx(value, rel=1e-4, abs=1e-6), key
        pairs = [
            (fast.generator, naive.generator, [p.grad for p in naive.generator.parameters()]),
            (fast.discriminator, naive.discriminator, naive.d_grads),
        ]
        for a, b, grads in pairs:
            moved, total = 0, 0
            for (name, pa), pb, grad in zip(a.named_parameters(), b.parameters(), grads):
                assert (pa.grad - grad).norm() <= 1e-3 * grad.norm() + 1e-12, name
                # AdamW's first steps normalise each gradient element, so elements whose gradient is
                # at rounding level may move by up to ±lr; all others must agree. Counted over the
                # whole network: in a small tensor one such element would be a large fraction.
                diff = (pa - pb).abs()
                assert diff.max() <= 2 * fast.config.optim.lr, name
                moved, total = moved + int((diff > 1e-6).sum()), total + diff.numel()
            assert moved / total < 1e-3, (moved, total)
        after.append({k: v.clone() for k, v in fast.generator.state_dict().items()})
    # The average: ema ← 0.9 · ema + 0.1 · weights after each update, starting from the initial weights.
    expected = {k: v.clone() for k, v in start.items()}
    for weights in after:
        expected = {k: 0.9 * expected[k] + 0.1 * weights[k] for k in expected}
    ema = fast.ema.state_dict()
    assert all(torch.allclose(ema[k], expected[k], atol=1e-6) for k in expected)
    assert not torch.equal(ema["decoder.model.0.weight_v"], fast.generator.state_dict()["decoder.model.0.weight_v"])


@pytest.mark.parametrize("setting,native", [("auto", False), ("auto", True), ("bf16", False), ("fp32", True)])
def test_the_training_precision_is_resolved_once_and_used(tmp_path, monkeypatch, capfd, smoke, setting, native):
    """`precision: auto` resolves once per run by `precision.AUTO_WHERE_NATIVE["train"]` where bf16 is
    native and to fp32 elsewhere, and says which; explicit settings are kept. bf16 trains under autocast."""
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1" if native else "0")
    trainer = Trainer(smoke(tmp_path, f"precision='{setting}'", "adversarial_start=0"), progress=False)
    expected = setting if setting != "auto" else precision.AUTO_WHERE_NATIVE["train"] if native else "fp32"
    assert trainer.precision == expected
    said = f"precision: {expected} (auto; native bf16: {native})" in capfd.readouterr().err
    assert said is (setting == "auto")
    with trainer.autocast():
        assert torch.is_autocast_enabled("cpu") is (expected == "bf16")
    before = _state(trainer.generator)
    logs = trainer.train_step(torch.stack([trainer.dataset[i] for i in range(2)]))
    assert all(bool(torch.isfinite(v)) for v in logs.values())
    assert not _same(before, _state(trainer.generator))


def test_non_finite_steps_are_skipped_then_stop(tmp_path, capfd, smoke):
    trainer = Trainer(smoke(tmp_path, "max_bad_steps=3", "batch_size=2", "adversarial_start=0"), progress=False)
    nets = {"generator": trainer.generator, "discriminator": trainer.discriminator}
    before = {net: {k: v.clone() for k, v in module.state_dict().items()} for net, module in nets.items()}
    batch = torch.full((2, 1, 8000), float("nan"))
    for _ in range(2):
        logs = trainer.train_step(batch)
        assert logs["bad_step"] == 1.0 and not torch.isfinite(logs["grad_norm/d"])
    for net, module in nets.items():  # neither network took the non-finite update
        assert all(torch.equal(before[net][k], v) for k, v in module.state_dict().items()), net
    with pytest.raises(TrainingError, match="3 consecutive non-finite steps"):
        trainer.train_step(batch)
    assert "update skipped" in capfd.readouterr().err


@pytest.mark.slow
def test_two_process_torchrun_agrees(tmp_path, corpus):
    cfg = [
        f'--set=out_dir="{tmp_path}/ddp"',
        "--set=steps=3",
        "--set=batch_size=2",
        "--set=adversarial_start=1",
        "--set=valid_every=1000",
        f'--set=data.cache_dir="{corpus}/.cache"',
        f'--set=data.groups={{"speech": ["{corpus}/train/speech"], "general": ["{corpus}/train/general"]}}',
        "--set=data.valid_folders=[]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
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


TINY_CONFIG = json.dumps({"model": rvqgan.preset("tiny").to_dict()})


@pytest.mark.parametrize(
    "state",
    [
        {"generator": {}},
        {"config": "{}", "generator": {}},
        {"config": "null"},
        {"config": '{"model": {}}'},
        {"config": TINY_CONFIG, "generator": "x"},
        {"config": TINY_CONFIG, "ema": torch.zeros(1), "generator": rvqgan.build_model("tiny").state_dict(), "step": None},
    ],
)
def test_export_of_a_checkpoint_without_a_usable_config_or_weights_is_one_line(tmp_path, capsys, state):
    from rvqgan.checkpoint import save_training_checkpoint

    save_training_checkpoint({"step": 1, **state}, tmp_path / "x.pt")
    assert main(["export", str(tmp_path / "x.pt"), str(tmp_path / "g.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rvqgan export: error:") and "\n" not in err and "x.pt" in err
    assert not (tmp_path / "g.safetensors").exists()


def test_the_discriminator_warm_up_leaves_the_generator_untouched_until_it_ends(tmp_path, capfd, finetune):
    config, source = finetune(tmp_path, REFERENCE_PTH, "discriminator_warmup=2", *SMALL_DISCRIMINATOR)
    trainer = Trainer(config, source=source, progress=False)
    assert trainer.warmup_steps == 2 and "discriminator: new; it trains alone for the first 2 steps" in capfd.readouterr().err
    start_g, start_ema, start_d = _state(trainer.generator), _state(trainer.ema), _state(trainer.discriminator)
    assert _same(start_g, source.generator.state_dict())
    batches = [torch.stack([trainer.dataset[2 * i + j] for j in range(2)]) for i in range(3)]
    for batch in batches[:2]:
        logs = trainer.train_step(batch)
        assert "loss/d" in logs and "loss/g" not in logs
    assert _same(_state(trainer.generator), start_g) and _same(_state(trainer.ema), start_ema)
    assert not _same(_state(trainer.discriminator), start_d)
    assert "discriminator warm-up done at step 2: generator updates start" in capfd.readouterr().err
    logs = trainer.train_step(batches[2])
    assert "loss/g" in logs and not _same(_state(trainer.generator), start_g)


@pytest.mark.parametrize("kind", ["pth", "hf-folder"])
def test_fine_tuning_a_released_architecture_exports_a_model_that_codes(tmp_path, capfd, corpus, kind):
    source = REFERENCE_PTH
    if kind == "hf-folder":
        from rvqgan.hub import export_hf

        source = export_hf(load_model(REFERENCE_PTH), tmp_path / "dac_folder")
    args = ["train", "--config", "finetune", "--init", str(source), "--data", str(corpus / "train")]
    sets = ["steps=3", "discriminator_warmup=1", "batch_size=2", "data.excerpt_seconds=0.25", "data.num_workers=0"]
    sets += [f'data.cache_dir="{corpus}/.cache"', "fuse_snake=False", "valid_every=1000", f'out_dir="{tmp_path}/run"']
    assert main([*args, *[f"--set={s}" for s in [*sets, *SMALL_DISCRIMINATOR]]]) == 0, capfd.readouterr().err
    assert "discriminator warm-up done at step 1" in capfd.readouterr().err
    out = tmp_path / "g.safetensors"
    assert main(["export", str(tmp_path / "run" / "checkpoints" / "latest.pt"), str(out)]) == 0
    exported, original = load_model(out), load_model(source)
    assert exported.config == original.config  # the source's architecture, reference decoder layout included
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert f.metadata()["finetuned_from"] == f"{source} (weights {original.weights_id()})"
    x = synth(16000)
    with torch.no_grad():
        codes = exported.encode(x)
        y = exported.decode(codes)
    assert codes.shape[1] == 4 and y.shape[-1] >= 16000 - 8 and torch.isfinite(y).all()
    assert not _same(exported.decoder.state_dict(), original.decoder.state_dict())


def test_a_frozen_encoder_and_quantizer_keep_the_source_codes_and_code_files(tmp_path, capfd, finetune, corpus):
    config, source = finetune(
        tmp_path, REFERENCE_PTH, "steps=2", "discriminator_warmup=0", "freeze=['encoder', 'quantizer']", *SMALL_DISCRIMINATOR
    )
    Trainer(config, source=source, progress=False).fit()
    out = tmp_path / "tuned.safetensors"  # fp16 storage would round the frozen parts: they keep their precision
    assert main(["export", str(tmp_path / "run" / "checkpoints" / "latest.pt"), str(out), "--fp16"]) == 0
    tuned, original = load_model(out), load_model(REFERENCE_PTH)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {dtypes[k] for k in dtypes if k.startswith("decoder.")} == {"F16"}
    assert {dtypes[k] for k in dtypes if not k.startswith("decoder.")} == {"F32"}
    for part in ("encoder", "quantizer"):
        assert _same(getattr(tuned, part).state_dict(), getattr(original, part).state_dict()), part
    assert not _same(tuned.decoder.state_dict(), original.decoder.state_dict())
    x = synth(16000, seed=3)
    with torch.no_grad():
        assert torch.equal(tuned.encode(x), original.encode(x))
    # Files the source coded decode with the fine-tuned model: it records the source's weights id.
    assert tuned.weights_id() != original.weights_id() and tuned.decodes_codes_of == {original.weights_id()}
    wav = sorted((corpus / "valid" / "speech").iterdir())[0]
    assert main(["encode", str(wav), "-o", str(tmp_path / "x.rvq"), "--model", str(REFERENCE_PTH), "-q"]) == 0
    assert main(["decode", str(tmp_path / "x.rvq"), "-o", str(tmp_path / "x.wav"), "--model", str(out), "-q"]) == 0
    # Every export format carries the origin: a DacModel folder (from the exported model) in its config.json,
    # ONNX graphs (from the training checkpoint) in their record and metadata.
    origin = {"finetuned_from": f"{REFERENCE_PTH} (weights {original.weights_id()})", "decodes_codes_of": original.weights_id()}
    assert tuned.provenance() == origin
    assert main(["export", str(out), str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["rvqgan"] == origin
    assert load_model(tmp_path / "hf").provenance() == origin
    with torch.no_grad():  # the folder's folded encoder and quantizer are the source's, bit for bit
        assert torch.equal(load_model(tmp_path / "hf").folded().encode(x), original.encode(x))
    assert main(["decode", str(tmp_path / "x.rvq"), "-o", str(tmp_path / "z.wav"), "--model", str(tmp_path / "hf"), "-q"]) == 0
    assert main(["export", str(tmp_path / "run" / "checkpoints" / "latest.pt"), str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    record = json.loads((tmp_path / "onnx" / "rvqgan.json").read_text())
    assert {k: record[k] for k in origin} == origin
    import onnxruntime

    props = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "decode.onnx")).get_modelmeta().custom_metadata_map
    assert props == {"rvqgan_weights_id": record["weights_id"], **{f"rvqgan_{k}": v for k, v in origin.items()}}
    # Fewer codebooks than the source: code files name the count, so the source's are not this model's;
    # more codebooks with the quantizer frozen could not train the new ones.
    config, source = finetune(tmp_path / "fewer", REFERENCE_PTH, "model.n_codebooks=2", "freeze=['encoder', 'quantizer']")
    assert Trainer(config, source=source, progress=False).provenance.keys() == {"finetuned_from"}
    config, source = finetune(tmp_path / "more", REFERENCE_PTH, "model.n_codebooks=6", "freeze=['quantizer']")
    with pytest.raises(ConfigError, match="new codebooks must train"):
        Trainer(config, source=source, progress=False)
    # A fine-tune that trained the encoder makes other codes: the source's files are refused.
    config, source = finetune(tmp_path / "free", REFERENCE_PTH, "steps=1", "discriminator_warmup=0", *SMALL_DISCRIMINATOR)
    Trainer(config, source=source, progress=False).fit()
    free = tmp_path / "free.safetensors"
    assert main(["export", str(tmp_path / "free" / "run" / "checkpoints" / "latest.pt"), str(free)]) == 0
    capfd.readouterr()
    assert main(["decode", str(tmp_path / "x.rvq"), "-o", str(tmp_path / "y.wav"), "--model", str(free), "-q"]) == 1
    assert "other trained weights" in capfd.readouterr().err


def test_the_built_in_model_and_training_checkpoints_bring_their_discriminators(tmp_path, finetune, smoke):
    from rvqgan.checkpoint import load_discriminator
    from rvqgan.paths import DEFAULT_DISCRIMINATOR

    config, source = finetune(tmp_path / "default", "default", "discriminator_warmup=100")
    stored_config, stored = load_discriminator(DEFAULT_DISCRIMINATOR)
    assert source.discriminator_from == str(DEFAULT_DISCRIMINATOR) and config.discriminator == stored_config
    trainer = Trainer(config, source=source, progress=False)
    assert trainer.warmup_steps == 0 and _same(trainer.discriminator.state_dict(), stored)
    assert _same(trainer.generator.state_dict(), load_model("default").state_dict())
    # A training checkpoint: its average (what it exports) and its discriminator.
    run = Trainer(smoke(tmp_path / "smoke", "steps=1", "batch_size=2", "ema_decay=0.9", "adversarial_start=0"), progress=False)
    run.fit()
    checkpoint = tmp_path / "smoke" / "run" / "checkpoints" / "latest.pt"
    config, source = finetune(tmp_path / "ckpt", checkpoint, "model.n_codebooks=2")
    trainer = Trainer(config, source=source, progress=False)
    assert trainer.warmup_steps == 0 and _same(trainer.discriminator.state_dict(), run.discriminator.state_dict())
    ema, tuned = run.ema.state_dict(), trainer.generator.state_dict()
    assert config.model.n_codebooks == 2 and all(torch.equal(tuned[k], ema[k]) for k in tuned)  # its first two codebooks
    # Not a model: `load_model` says what it is and what to do with it.
    with pytest.raises(CheckpointError, match="an rvqgan training checkpoint, not a model: `rvqgan export` it"):
        load_model(checkpoint)
    # The same checkpoint named in a recipe written for another architecture is refused in one line.
    with pytest.raises(ConfigError, match="model.sample_rate: the recipe says 44100 but"):
        load_recipe("finetune", ["data.groups={'a': ['.']}", "model.sample_rate=44100"], init=str(checkpoint))


def test_a_run_stopped_in_the_warm_up_resumes_exactly(tmp_path, finetune):
    common = ("discriminator_warmup=2", "save_every=1", *SMALL_DISCRIMINATOR)
    config, source = finetune(tmp_path / "a", REFERENCE_PTH, "steps=3", *common)
    straight = Trainer(config, source=source, progress=False)
    straight.fit()
    config, source = finetune(tmp_path / "b", REFERENCE_PTH, "steps=1", *common)
    Trainer(config, source=source, progress=False).fit()
    config, source = finetune(tmp_path / "b", REFERENCE_PTH, "steps=3", *common)
    resumed = Trainer(config, resume=True, progress=False)
    assert resumed.step == 1 and resumed.warmup_steps == 2 and resumed.provenance == straight.provenance
    resumed.fit()
    for a, b in [(straight.generator, resumed.generator), (straight.discriminator, resumed.discriminator)]:
        assert _same(a.state_dict(), b.state_dict())
    # Resuming with another freeze setting would mislay the optimiser's state: refused in one line.
    config, source = finetune(tmp_path / "b", REFERENCE_PTH, "steps=4", "freeze=['encoder']", *common)
    with pytest.raises(TrainingError, match="another freeze setting"):
        Trainer(config, resume=True, progress=False)


def test_a_discriminator_config_too_large_to_build_is_refused_before_building():
    from rvqgan.config import DiscriminatorConfig
    from rvqgan.train import check_discriminator_size

    check_discriminator_size(DiscriminatorConfig())  # the paper's
    huge = DiscriminatorConfig(period_channels=(4096,) * 16, stft_channels=4096)
    with pytest.raises(ConfigError, match="parameters, over the limit"):
        check_discriminator_size(huge)
