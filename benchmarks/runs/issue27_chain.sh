#!/usr/bin/env bash
# Issue 27's long runs, each resumable: rerun this script to continue where it stopped.
# 1. The controls on 20 train passages (1000–1019): which measure can form not pass?
# 2. The inner-loop defaults on 40 train passages (200–239): lr 1e-3 / 3e-4 × epochs 10 / 3.
cd "$(dirname "$0")/../.."
knowledge() {  # DIR ARGS...: create the run under DIR, or resume the one there
  local dir=$1; shift
  local run; run=$(ls -d "$dir"/eval-knowledge-* 2>/dev/null | head -1)
  mkdir -p "$dir"
  .venv/bin/selfadapt eval knowledge "$@" --workers 2 ${run:+--resume $run} --runs-dir "$dir" >> "$dir/log.txt" 2>&1
}
knowledge benchmarks/runs/controls27 --dataset train --offset 1000 --passages 20 --control format \
  --control gold-qa --no-external || exit 1
for s in "1e-3 10" "1e-3 3" "3e-4 10" "3e-4 3"; do
  set -- $s
  knowledge benchmarks/runs/defaults27/lr$1-ep$2 --dataset train --offset 200 --passages 40 --no-external \
    --lr $1 --epochs $2 || exit 1
done
