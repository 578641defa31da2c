#!/usr/bin/env bash
# The knowledge measure's controls and the inner-loop defaults sweep, each resumable: rerun this script to continue where it stopped.
# 1. The controls on 20 train passages (1000–1019): which measure can form not pass?
# 2. The inner-loop defaults on 20 train passages (200–219): lr 0.001 / 0.0003 × epochs 10 / 3. The
#    base model and seed are the same in every setting, so its self-edits, base scores and recital
#    are too: every setting starts from the write/base/recital records of benchmarks/runs/writes27
#    (a 40-passage run, 200–239, whose self-edits took 32 min to write; copied, not recomputed) and
#    trains only. The lr 0.001 × 10 setting also takes the evaluations that run had finished.
knowledge() {  # DIR ARGS...: create the run under DIR, or resume the one there
  local dir=$1; shift
  local run; run=$(ls -d "$dir"/eval-knowledge-* 2>/dev/null | head -1)
  mkdir -p "$dir"
  .venv/bin/selfadapt eval knowledge --no-form-equalized "$@" --workers 2 ${run:+--resume $run} --runs-dir "$dir" >> "$dir/log.txt" 2>&1
}
seed_from() {  # SRC_RUN DIR LR EPOCHS [all]: a 20-passage run under DIR holding SRC's untrained records
  local src=$1 dir=$2 lr=$3 ep=$4 all=$5
  ls -d "$dir"/eval-knowledge-* >/dev/null 2>&1 && return
  local run="$dir/eval-knowledge-seeded"
  mkdir -p "$run"
  sed -e "s/^  lr: .*/  lr: $lr/" -e "s/^  epochs: .*/  epochs: $ep/" -e "s/^passages: .*/passages: 20/" \
    "$src/config.yaml" > "$run/config.yaml"
  if [ -n "$all" ]; then cp "$src/records.jsonl" "$run/records.jsonl"
  else grep -E '"key": "(base|recital)/|"key": "own-self-qa-grounded/write/' "$src/records.jsonl" > "$run/records.jsonl"; fi
}
knowledge benchmarks/runs/controls27 --dataset train --offset 1000 --passages 20 --control format \
  --control gold-qa --no-external || exit 1
SWEEP="--dataset train --offset 200 --passages 20 --no-external"
SRC=$(ls -d benchmarks/runs/writes27/eval-knowledge-* | head -1)
for s in "0.001 10 all" "0.001 3" "0.0003 10" "0.0003 3"; do  # decimals: the seeded config.yaml must read back as floats
  set -- $s
  seed_from "$SRC" benchmarks/runs/defaults27/lr$1-ep$2 $1 $2 $3
  knowledge benchmarks/runs/defaults27/lr$1-ep$2 $SWEEP --lr $1 --epochs $2 || exit 1
done
