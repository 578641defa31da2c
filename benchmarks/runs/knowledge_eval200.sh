#!/usr/bin/env bash
# eval200's first 40 passages, reported once, with the reward and defaults chosen on
# train (exact match; LoRA r 32, lr 1e-3, 10 epochs): base, recital, passage, the format control, own
# grounded self-QA, GPT-4.1's implications. Resumable: rerun this script to continue where it stopped.
dir=benchmarks/runs/eval200_27
run=$(ls -d "$dir"/eval-knowledge-* 2>/dev/null | head -1)
mkdir -p "$dir"
.venv/bin/selfadapt eval knowledge --no-form-equalized --dataset eval200 --passages 40 --control format --external gpt-4.1 \
  --workers 2 ${run:+--resume $run} --runs-dir "$dir" >> "$dir/log.txt" 2>&1
