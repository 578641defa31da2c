#!/usr/bin/env bash
# `selfadapt eval knowledge` on a SQuAD-shaped file never seen before
# (benchmarks/data/karsland_squad.jsonl: 4 invented passages, 20 questions, written before any run on them),
# with the format control; the default settings and reward (exact match). Resumable: rerun to continue.
cd "$(dirname "$0")/../.."
dir=benchmarks/runs/karsland27
run=$(ls -d "$dir"/eval-knowledge-* 2>/dev/null | head -1)
mkdir -p "$dir"
.venv/bin/selfadapt eval knowledge --no-form-equalized --dataset benchmarks/data/karsland_squad.jsonl --passages 4 --control format \
  --no-external --workers 2 ${run:+--resume $run} --runs-dir "$dir" >> "$dir/log.txt" 2>&1
