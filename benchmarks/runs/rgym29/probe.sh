#!/usr/bin/env bash
# Where does the embedded model sometimes succeed on a reasoning-gym task, first try and
# after a reflection? Greedy attempt → reflection → retry on 30 train queries per task (resumable:
# rerun to continue).
cd "$(dirname "$0")/../../.."
run=$(ls -d benchmarks/runs/rgym29/rrr-probe-* 2>/dev/null | head -1)
.venv/bin/selfadapt rrr probe --queries 30 --answer-tokens 48 --reflection-tokens 64 --runs-dir benchmarks/runs/rgym29 ${run:+--resume $run} \
  --task "reasoning-gym:chain_sum:min_terms=2,max_terms=2,min_digits=1,max_digits=1,shots=3,prefill=1,constrain=1" \
  --task "reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2,min_digits=1,max_digits=1,allow_parentheses=false,allow_negation=false,shots=3,prefill=1,constrain=1" \
  --task "reasoning-gym:leg_counting:min_animals=1,max_animals=2,max_instances=3,shots=3,prefill=1,constrain=1" \
  --task "reasoning-gym:letter_counting:min_words=3,max_words=5,shots=3,prefill=1,constrain=1" \
  --task "reasoning-gym:spell_backward:min_word_len=3,max_word_len=4,shots=3,prefill=1,constrain=1" \
  --task "reasoning-gym:gcd:max_value=20,shots=3,prefill=1,constrain=1" \
  >> benchmarks/runs/rgym29/probe.log 2>&1
