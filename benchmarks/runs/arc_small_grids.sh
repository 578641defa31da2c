#!/usr/bin/env bash
# ARC on the small-grid SEAL tasks, resumable: rerun to continue where it stopped.
# 1. The oracle grid on the small-grid SEAL *training* tasks (largest grid <= 18 cells: six
#    tasks), to choose the plain-TTT baseline and the prompt's default configuration there,
#    never on evaluation tasks (icl and ttt-plain with the old defaults come with it).
# 2. One ReST-EM round on the same six training tasks: 8 grammar-constrained self-edits each,
#    binary reward, the policy fine-tuned on the winners.
# 3. The small-grid evaluation tasks (largest grid <= 36 cells: four tasks), reported once: icl,
#    ttt-plain (the new defaults), 4 untrained self-edits, the oracle grid, and the trained
#    policy (its icl and 4 of its self-edits per task).
[ -z "$CHAIN_SESSION" ] && CHAIN_SESSION=1 exec setsid bash "$0" "$@"
cd "$(dirname "$0")/../.."
while pgrep -f "rrr_countdown_eval.sh|inner_loop_sweep|continual_forgetting.sh|restem-penalty" > /dev/null; do sleep 30; done  # one experiment at a time
D=benchmarks/runs/arc LOG=/tmp/arc_small_grids.log
. benchmarks/runs/chain.sh
run oracle-training eval arc --subset training --max-cells 18 -k 0 --oracle || exit 1
run train-training train arc --max-cells 18 -c 6 -k 8 --rounds 1 --workers 2 || exit 1
run eval-evaluation eval arc --max-cells 36 -k 4 --oracle --policy $D/train-training/round-0 --workers 2
