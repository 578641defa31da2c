#!/usr/bin/env bash
# Issue 12's GRPO runs, each resumable: rerun this script to continue where it stopped.
# 1. `retry` at the difficulty the probe chose (two-number Countdown, constrained retry: the
#    base model's retry succeeds 6 of 9 times greedily, so sampled reflections give groups
#    with mixed rewards).
# 2. `nover` at the paper's difficulty (three numbers: retries never succeed, so only a dense
#    reward can move), and `retry` + `nover` combined there.
# Runs at nice 19 so that issue 11's chain keeps the CPU; this uses its idle time.
# 3. `rrr eval` of the base model and every trained policy on the test split (greedy).
cd "$(dirname "$0")/../.."
D=benchmarks/runs/rrr
EASY=countdown:numbers=2,shots=3,prefill=1,constrain=2
HARD=countdown:numbers=3,shots=3,prefill=1,constrain=2
run() {  # run NAME ARGS...: the step's run directory is $D/NAME; a killed step resumes it
  local name=$1; shift
  [ -f $D/$name/done ] && return
  local made; made=$(ls -d $D/tmp-$name/*/ 2>/dev/null | head -1)
  [ -n "$made" ] && mv "$made" $D/$name && rmdir $D/tmp-$name
  if [ -d $D/$name ]; then set -- "$@" --resume $D/$name; else set -- "$@" --runs-dir $D/tmp-$name; fi
  nice -n 19 .venv/bin/selfadapt rrr "$@" >> /tmp/issue12.log 2>&1 || return 1
  made=$(ls -d $D/tmp-$name/*/ 2>/dev/null | head -1)
  [ -n "$made" ] && mv "$made" $D/$name && rmdir $D/tmp-$name
  touch $D/$name/done
}
mkdir -p $D
run failures-easy build-failures --task $EASY --queries 48 --attempts 2 &&
run train-easy-retry train $D/failures-easy --steps 10 -G 4 --reward retry=1 &&
run failures-hard build-failures --task $HARD --queries 32 --attempts 2 &&
run train-hard-nover train $D/failures-hard --steps 10 -G 4 --reward nover=1 &&
run train-hard-both train $D/failures-hard --steps 10 -G 4 --reward retry=1 --reward nover=0.5 &&
run eval-easy eval --task $EASY --queries 50 --general 30 --policy $D/train-easy-retry &&
run eval-hard eval --task $HARD --queries 50 --general 0 --policy $D/train-hard-nover --policy $D/train-hard-both
