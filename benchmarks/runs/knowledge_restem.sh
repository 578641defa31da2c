#!/usr/bin/env bash
# ReST-EM with the reward (exact match) and defaults, C 32 train passages per round,
# k 4, 3 rounds, each round fine-tuning the base model (restart), reward against passage-only; then each
# round's policy on the same 40 eval200 passages (the eval200_27 run, resumed with the policies, so they are
# paired with its passage-only, format control and untrained own self-QA). Resumable: rerun to continue.
cd "$(dirname "$0")/../.."
while pgrep -f knowledge_eval200.sh > /dev/null; do sleep 60; done  # one CPU-heavy run at a time
dir=benchmarks/runs/restem27
run=$(ls -d "$dir"/train-knowledge-* 2>/dev/null | head -1)
mkdir -p "$dir"
.venv/bin/selfadapt train knowledge --no-form-equalized -c 32 -k 4 --rounds 3 --reward-baseline passage --workers 2 \
  ${run:+--resume $run} --runs-dir "$dir" >> "$dir/log.txt" 2>&1 || exit 1
run=$(ls -d "$dir"/train-knowledge-* | head -1)
eval=$(ls -d benchmarks/runs/eval200_27/eval-knowledge-* | head -1)
.venv/bin/selfadapt eval knowledge --no-form-equalized --dataset eval200 --passages 40 --control format --external gpt-4.1 \
  --workers 2 --resume "$eval" --runs-dir benchmarks/runs/eval200_27 \
  --policy "$run/round-0" --policy "$run/round-1" --policy "$run/round-2" >> benchmarks/runs/eval200_27/log.txt 2>&1
