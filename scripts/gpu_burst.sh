#!/usr/bin/env bash
# A short, prepared training burst on a lent GPU (see the device tool): trains configs/gpu.yaml
# on a carried 24 kHz subset of the training corpus (.cache/gpu/data, made from train/ only) for
# TRAIN_SECONDS, then writes the weights to $OUT in pieces small enough to come back, plus the
# 44.1 kHz speed benchmark on the GPU. Usage: bash scripts/gpu_burst.sh TRAIN_SECONDS [extra --set ...]
set -u
secs=${1:-150}; shift || true
python3 -m pip install -q --no-deps .cache/gpu/wheels/*.whl 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
export PYTHONPATH=$PWD
timeout "$secs" python3 -m rvqgan train --config configs/gpu.yaml --set out_dir='"/tmp/gpurun"' \
  --set 'data.groups={"speech":[".cache/gpu/data/speech"],"music":[".cache/gpu/data/music"],"general":[".cache/gpu/data/general"]}' "$@" \
  > "$OUT/train.log" 2>&1
echo "train exit $?"; tail -c 600 "$OUT/train.log"
python3 - <<'PY'
import os, json
from safetensors.torch import save_file
from rvqgan.train import load_training_checkpoint
out = os.environ["OUT"]
state = load_training_checkpoint("/tmp/gpurun/checkpoints/latest.pt")
g = state["generator"]; parts, cur, size = [], {}, 0
for k, v in g.items():
    if size + v.numel() * 4 > 15 * 2**20:
        parts.append(cur); cur, size = {}, 0
    cur[k] = v.float().contiguous(); size += v.numel() * 4
parts.append(cur)
for i, p in enumerate(parts):
    save_file(p, f"{out}/g{i}.safetensors", metadata={"config": state["config"], "step": str(state["step"])})
save_file({k: v.float().contiguous() for k, v in state["discriminator"].items()}, f"{out}/d.safetensors")
os.system(f"cp /tmp/gpurun/metrics.jsonl {out}/metrics.jsonl")
print("exported step", state["step"], "parts", len(parts))
PY
python3 benchmarks/speed.py --device cuda --batch 16 --presets 44khz_8kbps --threads 8 --repeats 3 --json "$OUT/speed_gpu.json" 2>&1 | tail -4
