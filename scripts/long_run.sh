#!/usr/bin/env bash
# The chosen recipe trained for long (training/RECIPES.md, "The long run"): rvqgan/configs/cpu.yaml with
# an exponential moving average of the generator (ema_decay 0.999, what validation and export use)
# and adversarial losses from the first step.
# Re-running resumes exactly from $OUT/checkpoints/latest.pt when it exists. Otherwise (a fresh
# clone) it starts a new segment from the committed state in training/long/ (generator and
# discriminator; the optimiser starts afresh).
# Usage: bash scripts/long_run.sh        (STEPS, OUT, PY may be set in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/long}
STEPS=${STEPS:-100000}
if [ -f "$OUT/checkpoints/latest.pt" ]; then
  start=(--resume)
else
  start=(--set "init='training/long/generator.safetensors'" --set "init_discriminator='training/long/discriminator.safetensors'")
fi
mkdir -p "$OUT"
echo "long run: ${start[*]} ($(date -u +%FT%TZ))" >> "$OUT.log"
exec $PY -m rvqgan train --config cpu --data ../shared/data/train "${start[@]}" --set ema_decay=0.999 --set adversarial_start=0 \
  --set valid_every=500 --set save_every=50 --set log_every=10 --set "out_dir='$OUT'" --set steps="$STEPS" >> "$OUT.log" 2>&1
