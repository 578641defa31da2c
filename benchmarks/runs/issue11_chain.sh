#!/usr/bin/env bash
# Issue 11's long runs, in order, each resumable: rerun this script to continue where it stopped.
# 1. eval200 paired table (40 passages); 2. ReST-EM, 3 rounds (C=16, k=4, reward vs passage-only,
# with the probe set scored so that a later --forgetting-penalty run has its "without" round).
cd "$(dirname "$0")/../.."
while pgrep -f "selfadapt eval knowledge --dataset eval200" > /dev/null; do sleep 30; done  # one already running
E=$(ls -d benchmarks/runs/eval200/eval-knowledge-* 2>/dev/null | head -1)
.venv/bin/selfadapt eval knowledge --dataset eval200 --passages 40 --external gpt-4.1 --workers 2 \
  --runs-dir benchmarks/runs/eval200 ${E:+--resume $E} > /tmp/eval200.log 2>&1
R=$(ls -d benchmarks/runs/restem/train-knowledge-* 2>/dev/null | head -1)
.venv/bin/selfadapt train knowledge --reward-baseline passage -c 16 -k 4 --rounds 3 --probe --workers 2 \
  --runs-dir benchmarks/runs/restem ${R:+--resume $R} > /tmp/restem.log 2>&1
