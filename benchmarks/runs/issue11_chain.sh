#!/usr/bin/env bash
# issue 11: eval200 paired table (40 passages), then ReST-EM 3 rounds; both resumable
cd /work/main
E=$(ls -d benchmarks/runs/eval200/eval-knowledge-* 2>/dev/null | head -1)
.venv/bin/selfadapt eval knowledge --dataset eval200 --passages 40 --external gpt-4.1 --workers 2 \
  --runs-dir benchmarks/runs/eval200 ${E:+--resume $E} > /tmp/eval200.log 2>&1
R=$(ls -d benchmarks/runs/restem/train-knowledge-* 2>/dev/null | head -1)
.venv/bin/selfadapt train knowledge --reward-baseline passage -c 16 -k 4 --rounds 3 --workers 2 \
  --runs-dir benchmarks/runs/restem ${R:+--resume $R} > /tmp/restem.log 2>&1
