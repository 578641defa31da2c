#!/usr/bin/env bash
# ReST-EM without the forgetting penalty, each step resumable: rerun this script to continue where it
# stopped. ReST-EM for 3 rounds (C=16, k=4, reward vs passage-only, probe scored so that a later
# --forgetting-penalty run has its "without" round); each finished round's policy is then
# evaluated on the first 40 eval200 passages, paired with the same passage-only runs.
cd "$(dirname "$0")/../.."
R=benchmarks/runs/restem/train-knowledge-20261124-165837
E=benchmarks/runs/eval200/eval-knowledge-20261124-155031
train() {  # resume ReST-EM until round $1's policy exists (then stop it: the evaluation runs first)
  [ -f $R/round-$1/policy.json ] && return
  setsid .venv/bin/selfadapt train knowledge --no-form-equalized --reward-baseline passage -c 16 -k 4 --rounds 3 --probe --no-amp \
    --workers 2 --runs-dir benchmarks/runs/restem --resume $R >> /tmp/restem.log 2>&1 &
  local pid=$!
  while kill -0 $pid 2>/dev/null && [ ! -f $R/round-$1/policy.json ]; do sleep 20; done
  sleep 5; kill -- -$pid 2>/dev/null; wait $pid 2>/dev/null
}
evaluate() {  # the eval200 run with the policies of rounds 0..$1 added (records already there are kept)
  local p=(); for r in $(seq 0 $1); do p+=(--policy $R/round-$r); done
  .venv/bin/selfadapt eval knowledge --no-form-equalized --dataset eval200 --passages 40 --external gpt-4.1 --workers 2 --no-amp \
    --runs-dir benchmarks/runs/eval200 --resume $E "${p[@]}" >> /tmp/eval200.log 2>&1
}
# With arguments, run just that step (e.g. `train 1`); without, the whole chain.
if [ $# -gt 0 ]; then "$@"; else train 1 && evaluate 1 && train 2 && evaluate 2; fi
