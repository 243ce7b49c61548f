"""The trainer: one code path from a single CPU to many GPUs (DDP under torchrun).

Each step follows the reference: generator forward; discriminator update on the detached
reconstruction (gradients clipped at 10); generator update with the updated discriminator
(clipped at 1000). Checkpoints hold both networks, both optimisers and schedulers, the step,
the RNG state and the config, and are written atomically, so `--resume` continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .backends.ort import export_onnx
from .checkpoint import (
    MAX_PROVENANCE_CHARS,
    PROVENANCE_KEYS,
    CheckpointError,
    build_from_state_dict,
    check_finite,
    load_discriminator,
    load_training_checkpoint,
    save_model,
    save_training_checkpoint,
    set_provenance,
)
from .config import (
    FINE_TUNING_MODEL_KEYS,
    ConfigError,
    DiscriminatorConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    from_dict,
    read_recipe,
    to_dict,
    with_source_architecture,
)
from .data import ExcerptDataset, StepSampler, holdout_split, quiet_worker, validation_excerpts
from .discriminator import Discriminator
from .distributed import close_distributed, init_distributed
from .hub import export_hf
from .layers import fuse_snake
from .loading import is_model_name, load_model
from .loss import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_spectrogram,
    multiscale_mel_loss,
    si_sdr,
)
from .model import Codec, CodecOutput
from .paths import DEFAULT_DISCRIMINATOR
from .precision import native_bf16
from .precision import resolve as resolve_precision
from .quantize import codebook_usage


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def check_data_folders(config: TrainConfig) -> None:
    for name, folders in config.data.groups.items():
        for folder in folders:
            if not Path(folder).is_dir():
                raise ConfigError(f"data.groups.{name}: folder {folder} does not exist")
    for folder in config.data.valid_folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"data.valid_folders: folder {folder} does not exist")


@dataclasses.dataclass
class Source:
    """A fine-tuning source (`TrainConfig.init`), loaded: its generator and the discriminator that comes with it."""

    name: str
    generator: Codec
    discriminator: dict[str, torch.Tensor] | None = None
    discriminator_config: DiscriminatorConfig | None = None
    discriminator_from: str | None = None


def discriminator_beside(source: str) -> Path | None:
    """Where the discriminator of model `source` would be: the built-in one for "default",
    `NAME.discriminator.safetensors` beside a `NAME.safetensors` file; None for other sources."""
    if source == "default":
        return DEFAULT_DISCRIMINATOR
    path = Path(source)
    if path.suffix == ".safetensors" and not path.name.endswith(".discriminator.safetensors"):
        return path.with_name(f"{path.stem}.discriminator.safetensors")
    return None


def load_source(init: str) -> Source:
    """Load a fine-tuning source: a training checkpoint (`.pt`: its generator, or average, and its
    discriminator) or any model `load_model` takes, with its discriminator when one is beside it."""
    if Path(init).suffix == ".pt" and Path(init).is_file():
        try:
            state = load_training_checkpoint(init)
        except CheckpointError as exc:
            if "not an rvqgan training checkpoint" not in str(exc):
                raise
        else:
            generator, _ = _checkpoint_generator(state, init)
            discriminator = state.get("discriminator")
            try:
                config = from_dict(DiscriminatorConfig, json.loads(state["config"])["discriminator"], "discriminator")
                if not isinstance(discriminator, dict) or not all(isinstance(v, torch.Tensor) for v in discriminator.values()):
                    raise ValueError("no discriminator weights")
            except (KeyError, TypeError, ValueError, RecursionError) as exc:
                raise TrainingError(f"{init}: the checkpoint holds no usable discriminator ({exc})") from None
            check_finite(discriminator, init)
            return Source(init, generator, discriminator, config, init)
    source = Source(init, load_model(init))
    beside = discriminator_beside(init)
    if beside is not None and beside.is_file():
        source.discriminator_config, source.discriminator = load_discriminator(beside)
        source.discriminator_from = str(beside)
    return source


def load_recipe(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    data_dirs: list[str] | tuple[str, ...] = (),
    init: str | None = None,
) -> tuple[TrainConfig, Source | None]:
    """`config.load_train_config` for fine-tuning too → (config, the loaded source or None).

    With `init` (or an `init` in the recipe), the model architecture comes from the source, and
    the discriminator's from the discriminator that starts the run (`init_discriminator`, else the
    source's) when its file records one (`config.with_source_architecture`).
    """
    data = read_recipe(path, overrides, data_dirs=data_dirs)
    if init is not None:
        data["init"] = init
    source = None
    if data.get("init") is not None:
        if not isinstance(data["init"], str) or not data["init"]:
            raise ConfigError(f"init must be a model source (a name or a path), got {data['init']!r:.80}")
        source = load_source(data["init"])
        data = with_source_architecture(data, source.generator.config, "model", data["init"])
    discriminator = data.get("init_discriminator")
    if isinstance(discriminator, str) and discriminator:
        config, _ = load_discriminator(discriminator)
        if config is not None:
            data = with_source_architecture(data, config, "discriminator", discriminator)
    elif discriminator is None and source is not None and source.discriminator_config is not None:
        data = with_source_architecture(data, source.discriminator_config, "discriminator", str(source.discriminator_from))
    return from_dict(TrainConfig, data), source


# Ten times the paper's discriminator: a bound on what a discriminator file's config may make the trainer build.
MAX_DISCRIMINATOR_PARAMETERS = 500_000_000


def check_discriminator_size(config: DiscriminatorConfig) -> None:
    """Raise `ConfigError` for a discriminator over `MAX_DISCRIMINATOR_PARAMETERS` (counted on the meta device: no memory)."""
    with torch.device("meta"):
        count = sum(p.numel() for p in Discriminator(config).parameters())
    if count > MAX_DISCRIMINATOR_PARAMETERS:
        raise ConfigError(f"discriminator: {count:,} parameters, over the limit of {MAX_DISCRIMINATOR_PARAMETERS:,}")


class Trainer:
    """Builds models, data and optimisers from a `TrainConfig`, and runs `fit()`.

    `source`: the loaded `TrainConfig.init` when the caller has it already (`load_recipe`).
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True, source: Source | None = None):
        check_data_folders(config)
        self.config = config
        ranks = init_distributed("nccl" if torch.cuda.is_available() else "gloo")
        self.rank, self.world = ranks.rank, ranks.world_size
        self.device = torch.device(f"cuda:{ranks.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.fuse_snake:
            fuse_snake(True)
        self.precision = resolve_precision(config.precision, "train", self.device)
        if config.precision == "auto" and self.rank == 0:
            print(f"precision: {self.precision} (auto; native bf16: {native_bf16(self.device)})", file=sys.stderr)
        self.out_dir = Path(config.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.progress = progress and self.rank == 0

        torch.manual_seed(config.seed)
        self.generator = Codec(config.model).to(self.device)
        for part in config.freeze:
            getattr(self.generator, part).requires_grad_(False)
        check_discriminator_size(config.discriminator)
        self.discriminator = Discriminator(config.discriminator).to(self.device)
        self.opt_g, self.sched_g = build_optimizer(self.generator, config.optim)
        self.opt_d, self.sched_d = build_optimizer(self.discriminator, config.optim)
        self.loss_weights = config.loss.weights()
        self.step = 0
        self.best = math.inf
        self.bad_steps = 0
        self.cpu_seconds = 0.0  # CPU time of the training process over this run's steps, resumes included
        # Steps in which the discriminator trains alone (a fresh discriminator), and the metadata
        # every model this run saves carries (what it was fine-tuned from). Checkpoints keep both.
        self.warmup_steps = 0
        self.provenance: dict[str, str] = {}
        if not resume:
            self._init_weights(source)
        self.ema: Codec | None = None
        if config.ema_decay is not None:
            self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        if resume:
            path = self.ckpt_dir / "latest.pt"
            if not path.exists():
                raise TrainingError(f"--resume: no checkpoint at {path}")
            self.load(path)
        # The tensors `update_ema` blends, listed once (loading a checkpoint copies into them in place).
        self._ema_tensors = _float_tensors(self.ema) if self.ema is not None else []
        self._generator_tensors = _float_tensors(self.generator) if self.ema is not None else []
        # What the step calls: the networks themselves, or their DDP wrappers that all-reduce gradients.
        self.g: nn.Module = self.generator
        self.d: nn.Module = self.discriminator
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g = nn.parallel.DistributedDataParallel(self.generator, device_ids=ids)
            self.d = nn.parallel.DistributedDataParallel(self.discriminator, device_ids=ids)

        n_samples = int(round(config.data.excerpt_seconds * config.model.sample_rate))
        n_samples = max(config.model.hop_length, n_samples // config.model.hop_length * config.model.hop_length)
        train_files, _ = holdout_split({k: list(v) for k, v in config.data.groups.items()}, config.data.holdout_fraction)
        self.dataset = ExcerptDataset(train_files, config.data, config.model.sample_rate, n_samples, seed=config.seed)
        self.valid = selection_items(config) if self.rank == 0 else []
        self.writer: Any = None  # a tensorboard SummaryWriter when tensorboard is installed
        self.log_file: TextIO | None = None

    def _init_weights(self, source: Source | None) -> None:
        """Start from `init` and `init_discriminator` when the recipe names them; decide the warm-up."""
        cfg = self.config
        origin = None  # where the discriminator's weights come from; None: it starts from nothing
        if cfg.init:
            source = source if source is not None and source.name == cfg.init else load_source(cfg.init)
            self._load_source_generator(source)
            if source.discriminator is not None and cfg.init_discriminator is None:
                origin = str(source.discriminator_from)
                self._load_discriminator(source.discriminator, origin)
        if cfg.init_discriminator:
            origin = cfg.init_discriminator
            self._load_discriminator(load_discriminator(origin)[1], origin)
        self.warmup_steps = cfg.discriminator_warmup if origin is None else 0
        if self.rank == 0 and cfg.init:
            warmup = f"; it trains alone for the first {self.warmup_steps} steps" if self.warmup_steps else ""
            print(f"fine-tuning {cfg.init}; discriminator: {f'from {origin}' if origin else 'new'}{warmup}", file=sys.stderr)

    def _load_source_generator(self, source: Source) -> None:
        """Copy the source's generator weights in; codebooks past the source's keep their fresh initialisation."""
        cfg = self.config
        settable = {k: getattr(cfg.model, k) for k in FINE_TUNING_MODEL_KEYS}
        if dataclasses.replace(source.generator.config, **settable) != cfg.model:
            raise ConfigError(f"init {cfg.init}: its model config differs from this recipe's model (use train.load_recipe)")
        given = source.generator.state_dict()
        self.generator.load_state_dict({k: given.get(k, v) for k, v in self.generator.state_dict().items()})
        self.provenance = {"finetuned_from": f"{cfg.init} (weights {source.generator.weights_id()})"}
        if "quantizer" in cfg.freeze and cfg.model.n_codebooks > source.generator.config.n_codebooks:
            raise ConfigError(
                f"freeze: the quantizer is frozen but model.n_codebooks {cfg.model.n_codebooks} adds codebooks to the "
                f"source's {source.generator.config.n_codebooks}: new codebooks must train"
            )
        # Code files name the codebook count with the architecture, so only the same count decodes them.
        same = source.generator.config.n_codebooks == cfg.model.n_codebooks
        if {"encoder", "quantizer"} <= set(cfg.freeze) and same:
            ids = {source.generator.weights_id(), *source.generator.decodes_codes_of}
            self.provenance["decodes_codes_of"] = ",".join(sorted(ids))

    def _load_discriminator(self, state: dict[str, torch.Tensor], where: str) -> None:
        try:
            self.discriminator.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"discriminator from {where}: {' '.join(str(exc).split())[:300]}") from None

    # -- checkpoints ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "config": json.dumps(to_dict(self.config)),
            "step": self.step,
            "best": self.best,
            "discriminator_warmup": self.warmup_steps,
            "cpu_seconds": self.cpu_seconds,
            "provenance": self.provenance,
            "generator": self.generator.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def save(self, name: str) -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / name
        save_training_checkpoint(self.state(), path)
        return path

    def load(self, path: Path) -> None:
        state = load_training_checkpoint(path)
        config = json.loads(state["config"])
        stored = from_dict(ModelConfig, config["model"], "model")
        if stored != self.config.model:
            hint = f" (it was started with --init {config['init']})" if config.get("init") else ""
            raise TrainingError(f"{path}: its model config differs from this run's; resume with the same model settings{hint}")
        for key in ("freeze", "discriminator"):  # what the optimisers' state is laid out by
            if key in config and to_dict(getattr(self.config, key)) != config[key]:
                raise TrainingError(f"{path}: it was trained with another {key} setting; resume with the same one")
        self.generator.load_state_dict(state["generator"])
        if self.ema is not None:
            self.ema.load_state_dict(state.get("ema") or state["generator"])
        try:
            self.discriminator.load_state_dict(state["discriminator"])
        except RuntimeError:
            raise TrainingError(f"{path}: its discriminator differs from this run's discriminator config") from None
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.step = int(state["step"])
        self.best = float(state["best"])
        self.warmup_steps = int(state.get("discriminator_warmup", 0))
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
        self.provenance = _provenance(state, path)
        torch.set_rng_state(state["rng_cpu"])
        if torch.cuda.is_available() and state["rng_cuda"]:
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    # -- one step ------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast where the run's precision resolves to bf16 (convolutions in bf16; the model keeps its quantiser and
        output tail in fp32), nothing for fp32."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update, then one generator update, on `[B, 1, T]`.

        Returns the step's scalars as detached 0-d tensors (read by the caller once per
        logging interval, so a step costs no host synchronisation beyond the finite check).
        """
        audio = audio.to(self.device, non_blocking=True)
        self.g.train()
        self.d.train()
        if self.step < self.warmup_steps:
            return self.warmup_step(audio)
        with self.autocast():
            out = self.g(audio)
        recon = out.audio.float()
        adversarial = self.step >= self.config.adversarial_start and (
            self.loss_weights["adversarial"] + self.loss_weights["feature_matching"] > 0
        )
        logs: dict[str, torch.Tensor] = {}
        if adversarial:
            logs.update(self.discriminator_step(audio, recon.detach()))
        losses = self.generator_losses(audio, recon, out, adversarial)
        logs.update(self.generator_step(losses))
        self.step += 1
        return logs

    def warmup_step(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """A discriminator update alone, against the generator's output without gradients: the
        generator's weights (and its average) stay as they are until `warmup_steps` have run."""
        with torch.no_grad(), self.autocast():
            recon = self.g(audio).audio.float()
        logs = self.discriminator_step(audio, recon)
        self.step += 1
        if self.step == self.warmup_steps and self.rank == 0:
            print(f"discriminator warm-up done at step {self.step}: generator updates start", file=sys.stderr)
        return logs

    def discriminator_step(self, audio: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the discriminator on real `audio` and detached `recon` `[B, 1, T]` (one batched forward)."""
        with self.autocast():
            feats = self.d(torch.cat([audio, recon]))
        n = audio.shape[0]
        real = [[f[:n] for f in sub] for sub in feats]
        fake = [[f[n:] for f in sub] for sub in feats]
        loss = discriminator_loss(real, fake, self.config.loss.gan)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.discriminator.parameters(), self.config.optim.grad_clip_d)
        if torch.isfinite(grad_norm):  # a non-finite loss gives a non-finite norm: skip the update
            self.opt_d.step()
            self.sched_d.step()
        return {"loss/d": loss.detach(), "grad_norm/d": grad_norm.detach()}

    def generator_losses(
        self, audio: torch.Tensor, recon: torch.Tensor, out: CodecOutput, adversarial: bool
    ) -> dict[str, torch.Tensor]:
        """The generator's unweighted losses, keyed as `LossConfig.weights()`.

        The discriminator runs unwrapped (no DDP) with its parameters frozen: only the
        gradient with respect to `recon` is needed, not the discriminator's own.
        """
        cfg = self.config
        losses = {
            "mel": multiscale_mel_loss(recon, audio, cfg.model.sample_rate, cfg.loss.mel_windows, cfg.loss.mel_bands),
            "commitment": out.commitment_loss.float(),
            "codebook": out.codebook_loss.float(),
        }
        if adversarial:
            self.discriminator.requires_grad_(False)
            try:
                with self.autocast():
                    with torch.no_grad():
                        real = self.discriminator(audio)
                    fake = self.discriminator(recon)
            finally:
                self.discriminator.requires_grad_(True)
            losses["adversarial"] = generator_adversarial_loss(fake, cfg.loss.gan)
            losses["feature_matching"] = feature_matching_loss(real, fake)
        return losses

    def generator_step(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weight and sum `losses`, update the generator; skip (and count) non-finite steps."""
        total = sum(self.loss_weights[name] * value for name, value in losses.items())
        assert isinstance(total, torch.Tensor)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.generator.parameters(), self.config.optim.grad_clip_g)
        logs = {f"loss/{name}": value.detach() for name, value in losses.items()}
        logs.update({"loss/g": total.detach(), "grad_norm/g": grad_norm.detach()})
        if torch.isfinite(grad_norm):  # a host sync (one per network update), to skip non-finite updates
            self.opt_g.step()
            self.sched_g.step()
            self.update_ema()
            self.bad_steps = 0
            return logs
        self.opt_g.zero_grad(set_to_none=True)
        self.bad_steps += 1
        print(f"warning: step {self.step}: non-finite loss or gradient; update skipped", file=sys.stderr)
        if self.bad_steps >= self.config.max_bad_steps:
            raise TrainingError(
                f"stopping at step {self.step}: {self.bad_steps} consecutive non-finite steps "
                f"(last good checkpoint: {self.ckpt_dir / 'latest.pt'}); try a lower lr or fp32"
            )
        logs["bad_step"] = torch.ones(())
        return logs

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← decay · ema + (1 − decay) · generator, over all floating-point parameters and buffers."""
        if self.ema is None or self.config.ema_decay is None:
            return
        torch._foreach_lerp_(self._ema_tensors, self._generator_tensors, 1.0 - self.config.ema_decay)

    @property
    def inference_model(self) -> Codec:
        """The weights that validation, kept checkpoints and export use: the average when kept."""
        return self.ema if self.ema is not None else self.generator

    # -- validation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mel distance, SI-SDR and codebook usage on the fixed validation items (rank 0)."""
        model = self.inference_model
        model.eval()
        mels, sdrs, codes = [], [], []
        for i, (_, audio) in enumerate(self.valid):
            x = audio[None].to(self.device)
            out = model(x)
            mel, sdr = selection_scores(x, out.audio, model.sample_rate)
            mels.append(mel)
            sdrs.append(sdr)
            codes.append(out.codes[0])
            if self.writer is not None and i < 3:
                self.writer.add_audio(f"valid/{i}/recon", out.audio[0, 0].cpu(), self.step, model.sample_rate)
                if self.step == 0 or not getattr(self, "_wrote_refs", False):
                    self.writer.add_audio(f"valid/{i}/reference", x[0, 0].cpu(), self.step, model.sample_rate)
                self.writer.add_image(f"valid/{i}/mel", _mel_image(x, out.audio, model.sample_rate), self.step)
        self._wrote_refs = True
        model.train()
        usage = codebook_usage(torch.cat(codes, -1)[None], model.codebook_size)
        logs = {
            "valid/mel": float(np.mean(mels)),
            "valid/si_sdr": float(np.mean(sdrs)),
            "valid/bitrate_efficiency": usage["efficiency"],
        }
        for i, (h, p) in enumerate(zip(usage["entropy"], usage["perplexity"])):
            logs[f"codebook/{i}/entropy"] = h
            logs[f"codebook/{i}/perplexity"] = p
        return logs

    # -- loop ----------------------------------------------------------------------------------------
    def _log(self, logs: dict[str, float]) -> None:
        if self.rank != 0:
            return
        if self.writer is not None:
            for k, v in logs.items():
                self.writer.add_scalar(k, v, self.step)
        if self.log_file is not None:
            self.log_file.write(json.dumps({"step": self.step, "time": time.time(), **logs}) + "\n")
            self.log_file.flush()

    def fit(self) -> None:
        cfg = self.config
        if self._out_of_cpu_budget(all_ranks_ask=True):
            self._say_budget_used()  # a resumed run that had used its budget: nothing to do
            return
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
            self.log_file = open(self.out_dir / "metrics.jsonl", "a")
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: train extra

                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step)
            except ImportError:
                print("note: tensorboard is not installed; logging to metrics.jsonl only", file=sys.stderr)
        loader = self._loader()
        bar = None
        if self.progress:
            interactive = sys.stderr.isatty()
            bar = tqdm(
                total=cfg.steps,
                initial=self.step,
                desc="train",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=0.5 if interactive else 60,
                maxinterval=3600,
            )
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        count = 0
        t0 = time.time()
        try:
            for batch in loader:
                if self.step >= cfg.steps:
                    break
                cpu0 = time.process_time()
                logs = self.train_step(batch)
                self.cpu_seconds += time.process_time() - cpu0
                last = self.step == cfg.steps or self._out_of_cpu_budget(all_ranks_ask=self.step % cfg.log_every == 0)
                for k, v in logs.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                    counts[k] = counts.get(k, 0) + 1
                count += 1
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.log_every == 0 or last:
                    names = sorted(sums)
                    values = torch.stack([sums[k].float().cpu() for k in names]).tolist()  # one read per interval
                    avg = {k: v / counts[k] for k, v in zip(names, values)}
                    avg["lr"] = self.opt_g.param_groups[0]["lr"]
                    avg["steps_per_second"] = count / (time.time() - t0)
                    avg["cpu_seconds"] = self.cpu_seconds
                    self._log(avg)
                    if bar is not None and "loss/mel" in avg:
                        bar.set_postfix(mel=f"{avg['loss/mel']:.3f}", refresh=False)
                    sums, counts, count, t0 = {}, {}, 0, time.time()
                if self.step % cfg.valid_every == 0 or last:
                    self._validate_and_keep_best()
                if self.step % cfg.save_every == 0 or last:
                    self._save_all()
                if last:
                    if self.step < cfg.steps:
                        self._say_budget_used()
                    break
            self._check_ranks_agree()
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
            if self.log_file is not None:
                self.log_file.close()

    def _loader(self) -> torch.utils.data.DataLoader:
        """Batches from the current step on, the same however the run was stopped and resumed."""
        cfg = self.config
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=StepSampler(self.step, cfg.batch_size, self.rank, self.world),
            num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.num_workers > 0,
            worker_init_fn=quiet_worker,  # the main process alone handles Ctrl-C and SIGTERM
            generator=torch.Generator(),  # keeps the global RNG untouched, for exact resumes
        )

    def _out_of_cpu_budget(self, all_ranks_ask: bool) -> bool:
        """Whether `max_cpu_minutes` is used up. Under DDP rank 0's count decides for every rank, at the steps
        where `all_ranks_ask` (the trainer asks at logging steps, so a budget may run past by up to `log_every`)."""
        if self.config.max_cpu_minutes is None:
            return False
        used = self.cpu_seconds >= 60.0 * self.config.max_cpu_minutes
        if self.world == 1:
            return used
        if not all_ranks_ask:
            return False
        flag = torch.tensor([float(used)], device=self.device)
        dist.broadcast(flag, 0)
        return bool(flag.item())

    def _say_budget_used(self) -> None:
        if self.rank == 0:
            print(f"CPU budget of {self.config.max_cpu_minutes:g} minutes used at step {self.step}: stopping", file=sys.stderr)

    def _check_ranks_agree(self) -> None:
        """Under DDP, verify every rank holds the same generator and discriminator weights."""
        if self.world == 1:
            return
        with torch.no_grad():
            local = torch.stack(
                [
                    torch.stack([p.double().sum() for p in self.generator.parameters()]).sum(),
                    torch.stack([p.double().abs().sum() for p in self.discriminator.parameters()]).sum(),
                ]
            ).to(self.device)
        gathered = [torch.zeros_like(local) for _ in range(self.world)]
        dist.all_gather(gathered, local)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainingError(f"ranks disagree on the weights after step {self.step}: {[g.tolist() for g in gathered]}")
        if self.rank == 0:
            print(
                f"all {self.world} ranks hold identical weights at step {self.step} (checksum {gathered[0][0].item():.6f})",
                file=sys.stderr,
            )

    def _validate_and_keep_best(self) -> None:
        if self.rank == 0 and self.valid:
            logs = self.validate()
            self._log(logs)
            if logs["valid/mel"] < self.best:
                self.best = logs["valid/mel"]
                self.save("best.pt")
                save_model(self.inference_model, self.out_dir / "best.safetensors", extra=self._metadata())
        if self.world > 1:
            best = torch.tensor([self.best], device=self.device)
            dist.broadcast(best, 0)
            self.best = float(best)

    def _metadata(self) -> dict[str, str]:
        return {"step": str(self.step), **self.provenance}

    def _save_all(self) -> None:
        if self.rank == 0:
            self.save("latest.pt")
            save_model(self.inference_model, self.out_dir / "latest.safetensors", extra=self._metadata())
        if self.world > 1:
            dist.barrier()


def selection_items(config: TrainConfig) -> list[tuple[str, torch.Tensor]]:
    """The run's fixed validation items, `[1, T]` each with its file: the selection split (the files
    `data.holdout_fraction` holds out of training) and `data.valid_folders`."""
    _, held_out = holdout_split({k: list(v) for k, v in config.data.groups.items()}, config.data.holdout_fraction)
    sources = [p for files in held_out.values() for p in files] + list(config.data.valid_folders)
    if not sources:
        return []
    data = config.data
    return validation_excerpts(sources, config.model.sample_rate, data.valid_seconds, data.valid_items, data.cache_dir)


def selection_scores(reference: torch.Tensor, decoded: torch.Tensor, sample_rate: int) -> tuple[float, float]:
    """(multi-scale mel distance, SI-SDR dB) of one validation item `[1, 1, T]`: what selection means."""
    return multiscale_mel_loss(decoded, reference, sample_rate).item(), si_sdr(reference, decoded).item()


def _float_tensors(module: nn.Module) -> list[torch.Tensor]:
    """`module`'s floating-point parameters and buffers (views sharing their storage), in state-dict order."""
    return [t for t in module.state_dict().values() if t.is_floating_point()]


def build_optimizer(
    network: nn.Module, config: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over `network`'s trainable parameters and its exponential learning-rate decay, from the `optim` section."""
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, config.lr, betas=config.betas, weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, config.lr_decay)


def _mel_image(x: torch.Tensor, y: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Reference (top) and reconstruction (bottom) log-mel spectrograms as a `[1, H, W]` image in [0, 1]."""
    rows = [mel_spectrogram(a, sample_rate, 2048, 128)[0].clamp(min=1e-5).log10().flip(0) for a in (x, y)]
    img = torch.cat(rows, 0)
    img = (img - img.min()) / (img.max() - img.min() + 1e-9)
    return img[None].cpu()


def training_generator(checkpoint: str | Path) -> tuple[Codec, dict[str, str]]:
    """The generator of a training checkpoint (its EMA when it kept one) → (model in train mode, provenance)."""
    return _checkpoint_generator(load_training_checkpoint(checkpoint), checkpoint)


def _checkpoint_generator(state: dict[str, Any], checkpoint: str | Path) -> tuple[Codec, dict[str, str]]:
    try:
        config = from_dict(ModelConfig, json.loads(state["config"])["model"], "model")
    except (KeyError, TypeError, ValueError, RecursionError) as exc:  # ConfigError and JSONDecodeError are ValueErrors
        raise TrainingError(f"{checkpoint}: the checkpoint holds no usable model config ({type(exc).__name__}: {exc})") from None
    ema = isinstance(state.get("ema"), dict) and bool(state["ema"])
    weights = state.get("ema" if ema else "generator")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise TrainingError(f"{checkpoint}: the checkpoint holds no generator weights")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise TrainingError(f"{checkpoint}: the checkpoint has no step count")
    model = build_from_state_dict(config, weights, checkpoint).train()
    set_provenance(model, _provenance(state, checkpoint), checkpoint)  # on the model: every export writes it
    return model, {"step": str(step), "weights": "ema" if ema else "generator"}


def _provenance(state: dict[str, Any], checkpoint: str | Path) -> dict[str, str]:
    """A training checkpoint's record of its source (`Trainer.provenance`), checked: known keys, short strings."""
    provenance = state.get("provenance", {})
    if not isinstance(provenance, dict) or any(
        k not in PROVENANCE_KEYS or not isinstance(v, str) or len(v) > MAX_PROVENANCE_CHARS for k, v in provenance.items()
    ):
        raise TrainingError(f"{checkpoint}: the checkpoint's provenance record is malformed")
    return dict(provenance)


def export_weights(
    checkpoint: str | Path,
    out: str | Path,
    dtype: torch.dtype | None = None,
    dc_folder: str | Path | None = None,
    dc_items: int = 24,
) -> Path:
    """Write the generator of a training checkpoint as an inference checkpoint (`.safetensors`).

    With `dc_folder`, the decoder's output offset is measured on `dc_items` 4 s excerpts of the
    audio there (use training audio) and removed (`Codec.remove_output_dc`); the offset removed
    is recorded in the file's metadata.
    """
    model, extra = training_generator(checkpoint)
    if dc_folder is not None:
        items = validation_excerpts([str(dc_folder)], model.sample_rate, 4.0, dc_items, None)
        if not items:
            raise TrainingError(f"{dc_folder}: no readable audio to measure the output offset on")
        extra["dc_offset_removed"] = f"{model.remove_output_dc([x[None] for _, x in items]):.6f}"
    return save_model(model, out, dtype=dtype, extra=extra)


EXPORT_FORMATS = ("safetensors", "hf", "onnx")


def export_model(
    source: str, out: str | Path, fmt: str = "safetensors", *, fp16: bool = False, dc_folder: str | Path | None = None
) -> Path:
    """Write `source` in format `fmt` (one of `EXPORT_FORMATS`) → the path written.

    "safetensors": the generator of a training checkpoint as our inference weights
    (`export_weights`, which takes `fp16` and `dc_folder`). "hf" (a transformers `DacModel`
    folder, `hub.export_hf`) and "onnx" (`backends.ort.export_onnx`): a training checkpoint's
    generator or any model `load_model` takes, into `out`, a new or empty folder. Raises
    `TrainingError` (one line) for what cannot be exported that way.
    """
    training = not (is_model_name(source) or Path(source).is_dir() or Path(source).suffix in (".safetensors", ".pth"))
    if fmt == "safetensors":
        if not training:
            raise TrainingError(f"{source}: --format safetensors exports training checkpoints; this is a model already")
        return export_weights(source, out, torch.float16 if fp16 else None, dc_folder=dc_folder)
    if dc_folder or fp16:
        raise TrainingError("--remove-dc and --fp16 go with --format safetensors")
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise TrainingError(f"{out}: exists and is not an empty folder")
    model = training_generator(source)[0] if training else load_model(source)
    if fmt == "onnx":
        return export_onnx(model, out)
    try:
        return export_hf(model, out)
    except ValueError as exc:
        raise TrainingError(f"cannot export as a transformers DacModel: {exc}") from None


def run(config: TrainConfig, resume: bool = False, source: Source | None = None) -> None:
    """Entry point used by the CLI (`source`: the loaded `config.init`, from `load_recipe`); cleans up the process group."""
    trainer = Trainer(config, resume=resume, source=source)
    try:
        trainer.fit()
    finally:
        close_distributed()


__all__ = [
    "EXPORT_FORMATS",
    "Source",
    "Trainer",
    "TrainingError",
    "export_model",
    "export_weights",
    "load_recipe",
    "load_source",
    "run",
    "selection_items",
    "selection_scores",
    "training_generator",
]
