#!/usr/bin/env bash
# Continual learning and the forgetting-aware reward, each step resumable: rerun this script to continue where it stopped.
# 1. `eval continual --passages 8`: passage-only, own, own + replay.
# 2. ReST-EM with --forgetting-penalty 1 on the same passages as restem_no_penalty.sh's run (which
#    scores the probe without penalising it). Round 0 takes that run's round-0 records: same passages, same
#    self-edits, same inner loops; only the reward, hence the winners and the policy, differ.
#    Round 1 samples from each run's round-0 policy on the same round-1 passages, so the probe drop
#    of each policy is paired by passage.
cd "$(dirname "$0")/../.."
C=$(ls -d benchmarks/runs/continual/eval-continual-* 2>/dev/null | head -1)
.venv/bin/selfadapt eval continual --passages 8 --no-amp --runs-dir benchmarks/runs/continual ${C:+--resume $C} \
  >> /tmp/continual.log 2>&1 || exit 1
SRC=benchmarks/runs/restem/train-knowledge-20261124-165837
P=benchmarks/runs/restem-penalty/train-knowledge-penalty1
if [ ! -d $P ]; then
  mkdir -p $P
  sed -e 's/^forgetting_penalty: 0.0$/forgetting_penalty: 1.0/' -e 's/^rounds: 3$/rounds: 2/' \
    -e 's#^runs_dir: .*#runs_dir: benchmarks/runs/restem-penalty#' $SRC/config.yaml > $P/config.yaml
  grep '"round": 0,' $SRC/records.jsonl > $P/records.jsonl
fi
.venv/bin/selfadapt train knowledge --no-form-equalized --reward-baseline passage -c 16 -k 4 --rounds 2 --probe \
  --forgetting-penalty 1 --no-amp --workers 2 --runs-dir benchmarks/runs/restem-penalty --resume $P \
  >> /tmp/restem-penalty.log 2>&1
# 3. The penalised round-0 policy on the same 40 eval200 passages as restem_no_penalty.sh's policies, paired with
#    the same passage-only runs (its self-edits beat the unpenalised policy's on round 1's train passages).
#    On a finished run, step 2 only restores the policy checkpoints, which git does not keep.
E=benchmarks/runs/eval200/eval-knowledge-20261124-155031
.venv/bin/selfadapt eval knowledge --no-form-equalized --dataset eval200 --passages 40 --external gpt-4.1 --workers 2 --no-amp \
  --runs-dir benchmarks/runs/eval200 --resume $E --policy penalty-round-0=$P/round-0 >> /tmp/eval200.log 2>&1
