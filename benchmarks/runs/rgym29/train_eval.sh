#!/usr/bin/env bash
# RRR on the reasoning-gym task the probe put in the band (letter_counting: first attempt
# 13/30, a retry solved 1 of 17 failures). Failures → GRPO → eval base vs trained, paired. Each
# step resumes where it stopped: rerun the script.
cd "$(dirname "$0")/../../.."
TASK="reasoning-gym:letter_counting:min_words=3,max_words=5,shots=3,prefill=1,constrain=1"
D=benchmarks/runs/rgym29
S=.venv/bin/selfadapt
last() { ls -d $D/$1* 2>/dev/null | head -1; }
f=$(last rrr-failures-reasoning-gym)
if [ -z "$f" ] || [ ! -f "$f/failures.jsonl" ]; then
  $S rrr build-failures --task "$TASK" --queries 48 --attempts 4 --max-new-tokens 48 --runs-dir $D ${f:+--resume $f} >> $D/train.log 2>&1 || exit 1
  f=$(last rrr-failures-reasoning-gym)
fi
t=$(last rrr-train-reasoning-gym)
if [ -z "$t" ] || [ ! -d "$t/policy" ]; then
  $S rrr train "$f" --steps 16 -G 4 --queries-per-step 2 --reflection-tokens 64 --retry-tokens 48 --retry-temperature 1 \
    --save-steps 4 --runs-dir $D ${t:+--resume $t} >> $D/train.log 2>&1 || exit 1
  t=$(last rrr-train-reasoning-gym)
fi
e=$(last rrr-eval-reasoning-gym)
$S rrr eval --task "$TASK" --policy "$t" --queries 60 --general 10 --answer-tokens 48 --reflection-tokens 64 \
  --runs-dir $D ${e:+--resume $e} >> $D/train.log 2>&1
