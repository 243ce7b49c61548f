#!/usr/bin/env bash
# Recipe variants at equal compute from the same starting weights (training/RECIPES.md,
# "Equal-compute variants"). Each variant: rvqgan/configs/cpu.yaml + its overrides, started from one
# generator and discriminator, adversarial losses from the first step, for STEPS steps (STEPS scaled
# by the variant's measured step cost so that every variant gets the same CPU time).
# The starting state is the one RECIPES.md's variants used: the 4100-update default generator and
# its discriminator as of commit 9d67ecc. That discriminator is no longer in the working tree, so
# both are read from the git history into $OUT_ROOT/init/, unless --init-generator and
# --init-discriminator name other files (e.g. outside a git clone).
# Re-running continues an interrupted variant exactly (--resume) and skips finished ones.
# Usage: bash scripts/recipe_variants.sh [--init-generator G.safetensors --init-discriminator D.safetensors] [NAME ...]
#        (default: base ema lr3x wide_d, in order; PY, OUT_ROOT, BASE_STEPS, WIDE_D_COST, VALID_EVERY and
#        THREADS may be set in the environment)
# `bf16`, `seed1`, `bf16_seed1`, `seed2` and `bf16_seed2` compare precisions at equal steps: each bf16
# run against the fp32 run of its data order, and the data orders give the run-to-run spread.
set -euo pipefail
GEN="" DISC=""
while [ $# -gt 0 ]; do
  case "$1" in
    --init-generator) GEN=$(realpath -e "$2"); shift 2 ;;
    --init-discriminator) DISC=$(realpath -e "$2"); shift 2 ;;
    *) break ;;
  esac
done
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT_ROOT:-runs/variants}
BASE_STEPS=${BASE_STEPS:-1300}
FROM=9d67ecc
mkdir -p "$OUT"
from_history() {  # from_history PATH_AT_FROM FILE: copy a file of commit $FROM, once
  [ -f "$2" ] && return 0
  mkdir -p "$(dirname "$2")"
  if ! git show "$FROM:$1" > "$2.tmp"; then
    rm -f "$2.tmp"
    echo "cannot read $FROM:$1 from the git history; pass --init-generator and --init-discriminator" >&2
    exit 1
  fi
  mv "$2.tmp" "$2"
}
if [ -z "$GEN" ]; then GEN=$OUT/init/generator.safetensors; from_history rvqgan/weights/default.safetensors "$GEN"; fi
if [ -z "$DISC" ]; then DISC=$OUT/init/discriminator.safetensors; from_history training/default/discriminator.safetensors "$DISC"; fi
INIT=(--set "init='$GEN'"
      --set "init_discriminator='$DISC'"
      --set adversarial_start=0 --set valid_every=${VALID_EVERY:-300} --set save_every=50 --set log_every=10)
[ -n "${THREADS:-}" ] && INIT+=(--set threads="$THREADS")
declare -A VARIANTS=(
  [base]=""
  [ema]="--set ema_decay=0.999"
  [lr3x]="--set optim.lr=0.0003"
  [bf16]="--set precision='bf16'"
  [seed1]="--set seed=1"
  [bf16_seed1]="--set precision='bf16' --set seed=1"
  [seed2]="--set seed=2"
  [bf16_seed2]="--set precision='bf16' --set seed=2"
  [wide_d]="--set discriminator.period_channels=[32,64,128,256,256] --set discriminator.stft_channels=32 --set init_discriminator=None"
)
# Relative step cost (seconds per step / base), measured with benchmarks/train_speed.py; the precision
# variants (bf16, seed1, bf16_seed1, seed2, bf16_seed2) are compared at equal steps (bf16 is in fact
# about 0.68× base on a CPU with AMX).
declare -A COST=([base]=1.0 [ema]=1.0 [lr3x]=1.0 [bf16]=1.0 [seed1]=1.0 [bf16_seed1]=1.0 [seed2]=1.0 [bf16_seed2]=1.0 [wide_d]=${WIDE_D_COST:-1.78})
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(base ema lr3x wide_d)
for name in "${names[@]}"; do
  dir=$OUT/$name
  [ -f "$dir/done" ] && { echo "$name: done"; continue; }
  steps=$(python3 -c "print(round($BASE_STEPS / ${COST[$name]}))")
  resume=(); [ -f "$dir/checkpoints/latest.pt" ] && resume=(--resume)
  echo "$name: $steps steps ${resume[*]:-} ($(date -u +%H:%M))"
  # shellcheck disable=SC2086
  $PY -m rvqgan train --config cpu --data ../shared/data/train "${INIT[@]}" ${VARIANTS[$name]} \
      --set "out_dir='$dir'" --set steps=$steps "${resume[@]}" >> "$dir.log" 2>&1
  touch "$dir/done"
done
