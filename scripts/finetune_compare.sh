#!/usr/bin/env bash
# The measured fine-tune (README, "Fine-tuning"): the built-in model fine-tuned on one domain of the
# training audio against the same compute of continued general training from the same weights, and
# fine-tuning from a new discriminator with and without the discriminator warm-up. Four runs of
# rvqgan/configs/finetune.yaml, each stopped when it has used CPU_MINUTES of CPU time (equal compute,
# whatever else shares the machine; a run that updates only the discriminator at first gets more
# steps), one thread each, all at once (RUNS names a subset):
#   tuned         --init default (its discriminator), DOMAIN only
#   general       --init default (its discriminator), all domains with the training recipe's weights
#   fresh_warmup  the default generator with a new discriminator, DOMAIN only, warm-up as the recipe
#   fresh_cold    the same without the warm-up
# Each run's generator average is exported as the default was (fp16, DC offset removed) and scored
# with the starting model on every group of EVAL_DATA at 10 codebooks; compare with
#   python scripts/compare_runs.py "$OUT/eval/general:model 10q" "$OUT/eval/tuned:model 10q" --scope music
# Re-running continues unfinished runs exactly (--resume) and skips finished ones.
# Usage: bash scripts/finetune_compare.sh   (DOMAIN, CPU_MINUTES, STEPS, RUNS, OUT, TRAIN, EVAL_DATA, PY may be set)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/finetune_compare}
CPU_MINUTES=${CPU_MINUTES:-45}
STEPS=${STEPS:-100000}
RUNS=${RUNS:-tuned general fresh_warmup fresh_cold}
DOMAIN=${DOMAIN:-music}
TRAIN=${TRAIN:-../shared/data/train}
EVAL_DATA=${EVAL_DATA:-../shared/data/valid}
mkdir -p "$OUT/init" "$OUT/eval"
# A copy of the default weights without the discriminator beside them: a source that brings none.
cp -n rvqgan/weights/default.safetensors "$OUT/init/default.safetensors"
BUILT_IN_D=$($PY -c "from rvqgan.checkpoint import load_discriminator; from rvqgan.paths import DEFAULT_DISCRIMINATOR as D
c = load_discriminator(D)[0]; print(f'--set=discriminator.period_channels={list(c.period_channels)} --set=discriminator.stft_channels={c.stft_channels}'.replace(', ', ','))")
DOMAIN_DATA=(--data "$TRAIN/$DOMAIN")
declare -A ARGS=(
  [tuned]="--init default ${DOMAIN_DATA[*]}"
  [general]="--init default --data speech=$TRAIN/speech --data music=$TRAIN/music --data general=$TRAIN/general --set=data.weights={'speech':2.0,'music':1.0,'general':1.0}"
  [fresh_warmup]="--init $OUT/init/default.safetensors ${DOMAIN_DATA[*]} $BUILT_IN_D"
  [fresh_cold]="--init $OUT/init/default.safetensors ${DOMAIN_DATA[*]} $BUILT_IN_D --set=discriminator_warmup=0"
)
run() {
  local name=$1 dir=$OUT/$1
  [ -f "$dir/done" ] && return 0
  local resume=(); [ -f "$dir/checkpoints/latest.pt" ] && resume=(--resume)
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  /usr/bin/time -f "$name: %U s user, %S s system, %e s wall" -a -o "$OUT/cpu_time.txt" \
    $PY -m rvqgan train --config finetune ${ARGS[$name]} --set threads=1 --set steps="$STEPS" --set max_cpu_minutes="$CPU_MINUTES" \
      --set valid_every=1000000 --set save_every=50 --set "out_dir='$dir'" "${resume[@]}" >> "$dir.log" 2>&1
  touch "$dir/done"
}
for name in $RUNS; do run "$name" & done
wait
for name in $RUNS; do
  model=$OUT/$name/model.safetensors
  [ -f "$model" ] || $PY -m rvqgan export "$OUT/$name/checkpoints/latest.pt" "$model" --fp16 --remove-dc "$TRAIN"
done
evaluate() {  # evaluate NAME MODEL
  [ -f "$OUT/eval/$1/items.json" ] || $PY -m rvqgan eval --model "$2" --data "$EVAL_DATA" --n-codebooks 10 --seconds 10 \
    --workers 2 -o "$OUT/eval/$1" > "$OUT/eval/$1.log" 2>&1
}
evaluate default default
for name in $RUNS; do evaluate "$name" "$OUT/$name/model.safetensors"; done
echo "done: $OUT/eval"
