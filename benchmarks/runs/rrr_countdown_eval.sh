#!/usr/bin/env bash
# The Countdown evaluations with the dense measure (the reference answer's log-likelihood after each
# reflection, on held-out failures), after rrr_countdown_grpo.sh; then the inner loop's batch-size sweep.
# Resumable.
# 1. two numbers, reflection and retry sampled at temperature 1 as in training (100 test queries);
# 2. three numbers, greedy, both NOVER policies, with the general-ability check.
[ -z "$CHAIN_SESSION" ] && CHAIN_SESSION=1 exec setsid bash "$0" "$@"
cd "$(dirname "$0")/../.."
while pgrep -f rrr_countdown_grpo.sh > /dev/null; do sleep 20; done
D=benchmarks/runs/rrr LOG=/tmp/rrr_countdown.log
. benchmarks/runs/chain.sh
EASY=countdown:numbers=2,shots=3,prefill=1,constrain=2
HARD=countdown:numbers=3,shots=3,prefill=1,constrain=2
run eval-easy-sampled rrr eval --task $EASY --queries 100 --general 0 --reflection-temperature 1 --retry-temperature 1 \
  --policy $D/train-easy-retry &&
run eval-hard-dense rrr eval --task $HARD --queries 50 --general 30 --policy $D/train-hard-nover --policy $D/train-hard-both
.venv/bin/python benchmarks/inner_loop_sweep.py --out benchmarks/runs/sweep/batch-lr.jsonl --passages 12 \
  --setting bs=16,lr=1e-3 --setting bs=4,lr=1e-3 --setting bs=1,lr=1e-3 --setting bs=16,lr=3e-3 \
  >> /tmp/batch_sweep.log 2>&1
