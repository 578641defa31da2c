#!/usr/bin/env bash
# Issue 12's GRPO runs, each resumable: rerun this script to continue where it stopped.
# 1. `retry` at the difficulty the probe chose (two-number Countdown, constrained retry: the
#    base model's retry succeeds 6 of 9 times greedily). A greedy retry there hardly depends on
#    the reflection (two steps: every group all right or all wrong, zero advantage), so the
#    retry is sampled (--retry-temperature 1): the reward estimates P(correct | reflection).
# 2. `nover` at the paper's difficulty (three numbers: retries never succeed, so only a dense
#    reward can move), and `retry` + `nover` combined there.
# 3. `rrr eval` of the base model and every trained policy on the test split (greedy).
# Runs in a session of its own; CHAIN_NICE=19 lowers its autogroup's priority (plain `nice`
# does not reach across the kernel's per-session autogroups) when another chain shares the CPU.
[ -z "$CHAIN_SESSION" ] && CHAIN_SESSION=1 exec setsid bash "$0" "$@"
[ -n "$CHAIN_NICE" ] && echo "$CHAIN_NICE" > /proc/self/autogroup 2>/dev/null
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
  .venv/bin/selfadapt rrr "$@" >> /tmp/issue12.log 2>&1 || return 1
  made=$(ls -d $D/tmp-$name/*/ 2>/dev/null | head -1)
  [ -n "$made" ] && mv "$made" $D/$name && rmdir $D/tmp-$name
  touch $D/$name/done
}
mkdir -p $D
run failures-easy build-failures --task $EASY --queries 48 --attempts 2 &&
run train-easy-retry train $D/failures-easy --steps 10 -G 4 --reward retry=1 --retry-temperature 1 &&
run failures-hard build-failures --task $HARD --queries 32 --attempts 2 &&
run train-hard-nover train $D/failures-hard --steps 10 -G 4 --reward nover=1 &&
run train-hard-both train $D/failures-hard --steps 10 -G 4 --reward retry=1 --reward nover=0.5 --retry-temperature 1 &&
run eval-easy eval --task $EASY --queries 50 --general 30 --policy $D/train-easy-retry &&
run eval-hard eval --task $HARD --queries 50 --general 0 --policy $D/train-hard-nover --policy $D/train-hard-both
