#!/usr/bin/env bash
# The one-document learn trials of RESULTS.md (issue 30): DOC=FILE bash benchmarks/learn_trial.sh NAME FLAGS...
cd "$(dirname "$0")/.."
name=$1; shift
rm -rf /tmp/lh-$name
/usr/bin/time -f "%e s" nice -n 5 .venv/bin/selfadapt learn ${DOC:-benchmarks/data/harlow_lighthouse.txt} --out /tmp/lh-$name "$@" > /tmp/lh-$name.log 2>&1
grep -E "still|erased|^[0-9.]+ s$" /tmp/lh-$name.log
.venv/bin/selfadapt ask --adapter /tmp/lh-$name "In which year was the lighthouse built?" "Who built the Harlow Point Lighthouse?" \
  "What was the lamp first lit with?" "When was the lamp converted to electricity?" "How tall is the tower?" \
  "Who runs the museum?" 2>/dev/null | grep "A:"
