"""Time training steps of a recipe, whole and broken down by part.

Usage:
    python benchmarks/train_speed.py [--config cpu] [--data ../shared/data/train] [--steps 6] [--set key=value ...] [--json out.json]
        [--no-reuse-memory]

The whole-step figure (steps/s, audio-seconds/s) times `Trainer.train_step` exactly as
`fit()` runs it, on batches made beforehand. The breakdown then times each part of the same
step on its own, calling the trainer's own methods (synchronising the device between parts):
data (excerpts for one batch), generator forward, discriminator step (forward on real and
fake, backward, clipping, AdamW), generator losses (mel, and the discriminator on real and
fake), generator backward + clipping + AdamW, logging; and, as isolated extras, the mel
loss forward + backward and the generator forward + backward alone. The discriminator and
adversarial losses are switched on from the first step, so every part is measured.

Reports `torch.backends.cpu.get_cpu_capability()` (or the GPU's name) with the numbers, and the
step's convolution + matmul FLOPs (forward and backward, counted by `FlopCounterMode`) against
the machine's peak (`speed.compute_peak`; fp32, or bf16 for a bf16 recipe) measured in the same run: the ceiling that any
faster step runs into.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import _sync, compute_peak, describe_machine, describe_peak  # noqa: E402

from rvqgan.config import DataConfig, load_train_config  # noqa: E402
from rvqgan.loss import multiscale_mel_loss  # noqa: E402
from rvqgan.train import Trainer  # noqa: E402


def _timed(device: torch.device, fn):
    _sync(device.type)
    t0 = time.perf_counter()
    out = fn()
    _sync(device.type)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu", help="a shipped recipe's name or a YAML file")
    ap.add_argument("--data", action="append", help="training audio, as `rvqgan train --data` (default ../shared/data/train)")
    ap.add_argument("--set", action="append", default=[], help="recipe override key=value (repeatable)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-breakdown", action="store_true", help="only the whole-step figure")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--no-reuse-memory", action="store_true", help="leave malloc as it is (`rvqgan train` reuses freed memory)")
    args = ap.parse_args(argv)
    if not args.no_reuse_memory:
        from rvqgan.allocator import reuse_freed_memory  # absent before this benchmark existed

        reuse_freed_memory()  # as `rvqgan train` runs (cli.run)

    overrides = [
        "data.valid_folders=[]",
        "data.num_workers=0",
        "adversarial_start=0",
        "out_dir='/tmp/rvqgan-train-speed'",
        *args.set,
    ]
    if "holdout_fraction" in DataConfig.__dataclass_fields__:  # absent in older versions, for before/after runs
        overrides.append("data.holdout_fraction=0.0")
    data = args.data or [str(ROOT.parent / "shared" / "data" / "train")]
    config = load_train_config(args.config, overrides, data_dirs=data)
    trainer = Trainer(config, progress=False)
    device = trainer.device
    batch = config.batch_size
    n = args.warmup + args.steps
    t0 = time.perf_counter()
    batches = [torch.stack([trainer.dataset[i * batch + j] for j in range(batch)]) for i in range(n)]
    data_s = (time.perf_counter() - t0) / n
    seconds_per_item = batches[0].shape[-1] / config.model.sample_rate

    for b in batches[: args.warmup]:
        trainer.train_step(b)
    _sync(device.type)
    t0 = time.perf_counter()
    for b in batches[args.warmup :]:
        logs = trainer.train_step(b)
    _sync(device.type)
    step_s = (time.perf_counter() - t0) / args.steps

    result: dict = {
        "config": args.config,
        "overrides": args.set,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": describe_machine(device.type),
        "precision": getattr(trainer, "precision", config.precision),  # as resolved (`auto`), where the trainer says
        "threads": torch.get_num_threads(),
        "reuse_freed_memory": not args.no_reuse_memory,
        "torch": torch.__version__,
        "batch_size": batch,
        "excerpt_seconds": seconds_per_item,
        "generator_parameters": sum(p.numel() for p in trainer.generator.parameters()),
        "discriminator_parameters": sum(p.numel() for p in trainer.discriminator.parameters()),
        "step_seconds": step_s,
        "steps_per_second": 1.0 / step_s,
        "audio_seconds_per_second": batch * seconds_per_item / step_s,
        "parts_ms": {},
    }

    if not args.no_breakdown:
        parts: dict[str, float] = {}

        def add(name: str, seconds: float) -> None:
            parts[name] = parts.get(name, 0.0) + 1000 * seconds / args.steps

        def generator_forward(audio: torch.Tensor):
            with trainer.autocast():  # in the step's precision, as train_step runs it
                return trainer.g(audio)

        def generator_forward_backward(audio: torch.Tensor) -> None:
            with trainer.autocast():  # in the step's precision, as train_step runs it
                out = trainer.generator(audio).audio
            out.float().square().mean().backward()

        for b in batches[args.warmup :]:
            parts["data (one batch of excerpts)"] = 1000 * data_s
            audio = b.to(device)
            out, dt = _timed(device, lambda a=audio: generator_forward(a))
            add("generator forward", dt)
            recon = out.audio.float()
            d_logs, dt = _timed(device, lambda a=audio, r=recon: trainer.discriminator_step(a, r.detach()))
            add("discriminator step (fwd real+fake, bwd, clip, AdamW)", dt)
            losses, dt = _timed(device, lambda a=audio, r=recon, o=out: trainer.generator_losses(a, r, o, True))
            add("generator losses (mel, D on real and fake)", dt)
            g_logs, dt = _timed(device, lambda ls=losses: trainer.generator_step(ls))
            add("generator backward + clip + AdamW", dt)
            merged = {**d_logs, **g_logs}
            _, dt = _timed(device, lambda m=merged: torch.stack([v.float().cpu() for v in m.values()]).tolist())
            add("logging (one read of all scalars)", dt)
            trainer.step += 1

        for b in batches[args.warmup :]:
            audio = b.to(device)
            recon = trainer.generator(audio).audio.detach().float().requires_grad_(True)
            _, dt = _timed(
                device,
                lambda a=audio, r=recon: multiscale_mel_loss(r, a, config.model.sample_rate).backward(),
            )
            add("extra: mel loss fwd+bwd alone", dt)
            _, dt = _timed(device, lambda a=audio: generator_forward_backward(a))
            add("extra: generator fwd+bwd alone", dt)
        result["parts_ms"] = parts

    # The step's convolution and matmul FLOPs, forward and backward, as torch dispatches them (FFTs
    # and elementwise work not counted), against the peak in the step's precision: the
    # ceiling a faster step meets. Counted last: a dispatch mode stops Dynamo from using the
    # compiled Snake afterwards, which would slow everything timed after it.
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batches[-1])
    step_gflop = counter.get_total_flops() / 1e9
    peak_dtype = torch.bfloat16 if result["precision"] == "bf16" else torch.float32
    measured = compute_peak(peak_dtype, device.type)
    peak = measured["peak"]
    result.update(
        step_gflop=step_gflop,
        gflop_per_second=step_gflop / step_s,
        peak_dtype=str(peak_dtype).removeprefix("torch."),
        matmul_peak_gflop_per_second=measured["matmul"],
        conv_peak_gflop_per_second=measured["conv"],
        peak_gflop_per_second=peak,
        percent_of_peak=100 * step_gflop / step_s / peak,
    )
    del logs

    print(
        f"{result['device']} ({result['cpu_capability']}, native bf16: {result['machine']['native_bf16']}, "
        f"{result['threads']} threads), {result['precision']}, batch {batch} x "
        f"{seconds_per_item:.3f} s: {result['step_seconds']:.3f} s/step, {result['steps_per_second']:.3f} steps/s, "
        f"{result['audio_seconds_per_second']:.2f} audio-s/s"
    )
    print(
        f"  conv + matmul work {step_gflop:.1f} GFLOP/step = {result['gflop_per_second']:.1f} GFLOP/s, "
        f"{result['percent_of_peak']:.0f}% of the {describe_peak(measured, peak_dtype)}"
    )
    for name, ms in result["parts_ms"].items():
        print(f"  {name:55s} {ms:8.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
