#!/usr/bin/env bash
# One-document learn trials of RESULTS.md ("learn and ask"): DOC=FILE bash benchmarks/learn_trial.sh NAME [LEARN FLAGS...]
# learns DOC (default: the Harlow document) into /tmp/lh-NAME, prints the general probe's summary and the
# time, then asks the document's questions (DOC with .questions: "question<TAB>answer" per line) and two
# general ones, each with the expected answer.
cd "$(dirname "$0")/.."
doc=${DOC:-benchmarks/data/harlow_lighthouse.txt}
name=$1; shift
rm -rf /tmp/lh-$name
/usr/bin/time -f "%e s" nice -n ${NICE:-5} .venv/bin/selfadapt learn "$doc" --out /tmp/lh-$name "$@" > /tmp/lh-$name.log 2>&1
grep -E "still right|adapter itself|erased|^[0-9.]+ s$" /tmp/lh-$name.log
mapfile -t rows < <(cat "${doc%.txt}.questions"; printf '%s\n' "What is the capital of France?	Paris" \
  "Who wrote the play Hamlet?	William Shakespeare")
questions=(); for r in "${rows[@]}"; do questions+=("${r%%	*}"); done
.venv/bin/selfadapt ask --adapter /tmp/lh-$name "${questions[@]}" 2>/dev/null | grep "A:" | \
  paste - <(for r in "${rows[@]}"; do echo "(expected: ${r##*	})"; done)
