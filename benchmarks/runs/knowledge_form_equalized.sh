#!/usr/bin/env bash
# Issue 46, steps 3 and 4, resumable: rerun to continue (each command skips what its run directory holds).
# 3. eval200's first 40 passages, form-equalized: passage+form, own+form, GPT-4.1+form, each ReST-EM policy
#    of restem27 +form, open-book and open-book+form (run eval200_46). Rounds 0 and 1 of restem27 have no
#    committed checkpoint: resuming that finished run trains them again from their sft_data.json.
# 4. ReST-EM with the form-equalized reward, EM(self-edit+form) − EM(passage+form) for the same passage and
#    seed: C 32, k 4, 3 rounds, each round restarting from the base model (run restem46); then each round's
#    policy on the same 40 eval200 passages, paired in eval200_46 (named fe-round-N beside restem27's round-N).
# A run's records may be stored gzipped (records.jsonl.gz): --resume unpacks them at the first new record.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=benchmarks/runs/restem27/train-knowledge-20261202-083953
E=benchmarks/runs/eval200_46/eval-knowledge-20261206-053811
.venv/bin/selfadapt train knowledge --no-form-equalized -c 32 -k 4 --rounds 3 --reward-baseline passage --workers 2 --resume $R \
  >> benchmarks/runs/restem27/log.txt 2>&1
.venv/bin/selfadapt eval knowledge --passages 40 --form-equalized --control open-book --control open-book+form \
  --external gpt-4.1 --policy $R/round-0 --policy $R/round-1 --policy $R/round-2 --workers 2 --resume $E \
  --runs-dir benchmarks/runs/eval200_46 >> benchmarks/runs/eval200_46/log.txt 2>&1
dir=benchmarks/runs/restem46
mkdir -p $dir
for n in 1 2 3; do  # one round more each time, then that round's policy on eval200: each row lands as its round does
  run=$(ls -d $dir/train-knowledge-* 2>/dev/null | head -1 || true)
  if [ -n "$run" ] && [ -f $run/round-$n/policy.json ]; then continue; fi  # a later round is done: so is this eval
  .venv/bin/selfadapt train knowledge -c 32 -k 4 --rounds $n --form-equalized --workers 2 ${run:+--resume $run} \
    --runs-dir $dir >> $dir/log.txt 2>&1
  run=$(ls -d $dir/train-knowledge-* | head -1)
  fe=(); for r in $(seq 0 $((n - 1))); do fe+=(--policy fe-round-$r=$run/round-$r); done
  .venv/bin/selfadapt eval knowledge --passages 40 --form-equalized --control open-book --control open-book+form \
    --external gpt-4.1 --policy $R/round-0 --policy $R/round-1 --policy $R/round-2 "${fe[@]}" \
    --workers 2 --resume $E --runs-dir benchmarks/runs/eval200_46 >> benchmarks/runs/eval200_46/log.txt 2>&1
done
