#!/usr/bin/env bash
# A time-limited training burst on a GPU machine. Before: `python scripts/gpu_prepare.py` (training
# excerpts and wheels under .cache/gpu, to copy to the GPU machine with the repository). There:
#   OUT=DIR bash scripts/gpu_burst.sh TRAIN_SECONDS [--set key=value ...]
# finds the largest batch that fits (powers of two, bf16), trains rvqgan/configs/gpu.yaml for TRAIN_SECONDS
# with a checkpoint every 100 steps, and writes to $OUT: the generator (and its average, if kept)
# in pieces of at most 15 MiB, the discriminator, the metrics and the train_speed benchmark.
set -u
secs=${1:-300}; shift || true
python3 -m pip install -q --no-deps .cache/gpu/wheels/*.whl 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
export PYTHONPATH=$PWD
batch=$(python3 - <<'PY'
import torch
from rvqgan.config import load_train_config
from rvqgan.train import Trainer
best = 0
for b in (64, 128, 256, 512, 1024):
    try:
        overrides = [f"batch_size={b}", "data.num_workers=0", "out_dir='/tmp/probe'"]
        t = Trainer(load_train_config("gpu", overrides), progress=False)
        x = torch.stack([t.dataset[i] for i in range(b)])
        for _ in range(2):
            t.train_step(x)
        torch.cuda.synchronize()
        best = b
        del t, x
        torch.cuda.empty_cache()
    except torch.OutOfMemoryError:
        break
print(best)
PY
)
echo "largest batch that fits: $batch"
python3 benchmarks/train_speed.py --config gpu --set batch_size="$batch" --steps 5 --json "$OUT/train_speed_gpu.json" 2>&1 | tail -10
timeout "$secs" python3 -m rvqgan train --config gpu --set batch_size="$batch" "$@" > "$OUT/train.log" 2>&1
echo "train exit $?"; tail -c 600 "$OUT/train.log"
python3 - <<'PY'
import os
from safetensors.torch import save_file
from rvqgan.checkpoint import load_training_checkpoint
out = os.environ["OUT"]
state = load_training_checkpoint("/tmp/gpurun/checkpoints/latest.pt")
for name in ("generator", "ema"):
    g = state.get(name) or {}
    parts, cur, size = [], {}, 0
    for k, v in g.items():
        if size + v.numel() * 4 > 15 * 2**20:
            parts.append(cur); cur, size = {}, 0
        cur[k] = v.float().contiguous(); size += v.numel() * 4
    if cur:
        parts.append(cur)
    for i, p in enumerate(parts):
        save_file(p, f"{out}/{name}{i}.safetensors", metadata={"config": state["config"], "step": str(state["step"])})
save_file({k: v.float().contiguous() for k, v in state["discriminator"].items()}, f"{out}/discriminator.safetensors")
os.system(f"cp /tmp/gpurun/metrics.jsonl {out}/metrics.jsonl")
print("exported step", state["step"])
PY
