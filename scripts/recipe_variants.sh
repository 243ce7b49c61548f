#!/usr/bin/env bash
# Recipe variants at equal compute from the same starting weights (issue "Built-in model quality", part 2).
# Each variant: configs/cpu.yaml + its overrides, started from the shipped default generator and
# discriminator, adversarial losses from the first step, for STEPS steps (STEPS scaled by the
# variant's measured step cost so that every variant gets the same CPU time; see training/RECIPES.md).
# Re-running continues an interrupted variant exactly (--resume) and skips finished ones.
# Usage: bash scripts/recipe_variants.sh [NAME ...]   (default: all, in order)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT_ROOT:-runs/variants}
BASE_STEPS=${BASE_STEPS:-1300}
INIT=(--set "init_generator='rvqgan/weights/default.safetensors'"
      --set "init_discriminator='training/default/discriminator.safetensors'"
      --set adversarial_start=0 --set valid_every=300 --set save_every=50 --set log_every=10)
declare -A VARIANTS=(
  [base]=""
  [ema]="--set ema_decay=0.999"
  [lr3x]="--set optim.lr=0.0003"
  [wide_d]="--set discriminator.period_channels=[32,64,128,256,256] --set discriminator.stft_channels=32 --set init_discriminator=None"
)
# Relative step cost (seconds per step / base), measured with benchmarks/train_speed.py.
declare -A COST=([base]=1.0 [ema]=1.0 [lr3x]=1.0 [wide_d]=${WIDE_D_COST:-1.78})
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(base ema lr3x wide_d)
for name in "${names[@]}"; do
  dir=$OUT/$name
  [ -f "$dir/done" ] && { echo "$name: done"; continue; }
  steps=$(python3 -c "print(round($BASE_STEPS / ${COST[$name]}))")
  resume=(); [ -f "$dir/checkpoints/latest.pt" ] && resume=(--resume)
  echo "$name: $steps steps ${resume[*]:-} ($(date -u +%H:%M))"
  # shellcheck disable=SC2086
  $PY -m rvqgan train --config configs/cpu.yaml "${INIT[@]}" ${VARIANTS[$name]} \
      --set "out_dir='$dir'" --set steps=$steps "${resume[@]}" >> "$dir.log" 2>&1
  touch "$dir/done"
done
