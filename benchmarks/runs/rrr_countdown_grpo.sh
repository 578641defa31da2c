#!/usr/bin/env bash
# GRPO on Countdown (RESULTS.md, "GRPO on Countdown"), each run resumable: rerun this script to continue where it stopped.
# 1. `retry` at the difficulty the probe chose (two-number Countdown, constrained retry: the
#    base model's retry succeeds 6 of 9 times greedily). A greedy retry there hardly depends on
#    the reflection (two steps: every group all right or all wrong, zero advantage), so the
#    retry is sampled (--retry-temperature 1): the reward estimates P(correct | reflection).
# 2. `nover` at the paper's difficulty (three numbers: retries never succeed, so only a dense
#    reward can move), and `retry` + `nover` combined there.
# 3. `rrr eval` of the base model and every trained policy on the test split (greedy).
[ -z "$CHAIN_SESSION" ] && CHAIN_SESSION=1 exec setsid bash "$0" "$@"
cd "$(dirname "$0")/../.."
D=benchmarks/runs/rrr LOG=/tmp/rrr_countdown.log
. benchmarks/runs/chain.sh
EASY=countdown:numbers=2,shots=3,prefill=1,constrain=2
HARD=countdown:numbers=3,shots=3,prefill=1,constrain=2
run failures-easy rrr build-failures --task $EASY --queries 48 --attempts 2 &&
run train-easy-retry rrr train $D/failures-easy --steps 10 -G 4 --reward retry=1 --retry-temperature 1 &&
run failures-hard rrr build-failures --task $HARD --queries 32 --attempts 2 &&
run train-hard-nover rrr train $D/failures-hard --steps 10 -G 4 --reward nover=1 &&
run train-hard-both rrr train $D/failures-hard --steps 10 -G 4 --reward retry=1 --reward nover=0.5 --retry-temperature 1 &&
run eval-easy rrr eval --task $EASY --queries 50 --general 30 --policy $D/train-easy-retry &&
run eval-hard rrr eval --task $HARD --queries 50 --general 0 --policy $D/train-hard-nover --policy $D/train-hard-both
