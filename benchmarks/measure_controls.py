"""Check each candidate knowledge measure against the controls before one becomes the reward.

A measure worth a reward puts the recital (no model: the passage's opening) and the format
control (another passage's gold Q→A pairs: answer form, no fact) at or below passage-only
training, and gold-QA (train on test) far above it. This reads a finished
``selfadapt eval knowledge`` run that has those conditions and prints, per metric, every
condition's mean and its paired difference from passage-only (95% bootstrap interval,
wins/ties/losses), then whether the metric passes.

    selfadapt eval knowledge --no-form-equalized --dataset train --offset 1000 --passages 20 --control format \
        --control gold-qa --no-external --runs-dir benchmarks/runs/controls27
    python benchmarks/measure_controls.py benchmarks/runs/controls27/eval-knowledge-*

Form-equalized (the default since issue 46; the reference is then passage+form, which is the format control):

    selfadapt eval knowledge --dataset train --offset 600 --passages 20 --form-equalized --control gold-qa \
        --control open-book --control open-book+form --no-external --workers 2 --runs-dir benchmarks/runs/controls46
    python benchmarks/measure_controls.py benchmarks/runs/controls46/eval-knowledge-*
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from selfadapt.evaluate import paired, per_item
from selfadapt.knowledge.controls import FORM
from selfadapt.runs import read_jsonl

METRICS = ("mc_prob", "cal_prob", "typed_prob", "typed_cal_prob", "typed_acc", "mc_acc", "exact_match", "f1",
           "contains", "cal_logprob", "answer_logprob")
NO_RECITAL = ("cal_logprob", "answer_logprob")  # likelihoods: the recital has none
ORDER = ("base", "recital", "passage", "format-control", "own-self-qa-grounded", "gold-qa")


def table(records: list[dict], metric: str) -> tuple[str, bool]:
    """Under form equalization the reference is passage+form, which *is* the format control (the same
    data), so that check holds by construction and is left out; gold-QA is gold-qa+form."""
    sfx = FORM if any(r["condition"] == "passage" + FORM for r in records) else ""
    order = [c if c in ("base", "recital", "format-control") else c + sfx for c in ORDER]
    conds = [c for c in order if any(r["condition"] == c for r in records)]
    conds += sorted({r["condition"] for r in records} - set(conds) - {"write"})
    passage, gold = "passage" + sfx, "gold-qa" + sfx
    ref = per_item(records, passage, metric)
    scale = 100 if metric not in NO_RECITAL else 1
    lines = [f"| condition | {metric} | Δ vs {passage} (95% CI) | W/T/L |", "|---|---|---|---|"]
    deltas = {}
    for c in conds:
        values = per_item(records, c, metric)
        if not values:
            continue
        d = paired(values, ref)
        deltas[c] = d
        digits = 1 if scale == 100 else 2
        versus = "– | –" if c == passage else f"{d.cell(scale, digits)} | {d.wtl}"
        lines.append(f"| {c} | {np.mean(list(values.values())) * scale:.{digits}f} | {versus} |")
    # "at or below passage-only": the paired interval does not lie above 0; "far above": the
    # interval lies above 0 and the mean gain is at least 10 points (0.5 nats for likelihoods)
    far = 10 if scale == 100 else 0.5
    checks = [(f"{c} not above {passage}", deltas[c].ci_low <= 0) for c in ("recital", "format-control")
              if c in deltas]
    if gold in deltas:
        checks.append((f"{gold} far above {passage}", deltas[gold].ci_low > 0 and deltas[gold].mean * scale >= far))
    complete = len(checks) == 3 - (metric in NO_RECITAL) - bool(sfx)
    passes = all(ok for _, ok in checks) and complete
    verdict = ("passes" if passes else "fails") if complete or not all(ok for _, ok in checks) else \
        "not checked: a control is missing from the run"  # eval200 is run without gold-QA
    lines.append("\n" + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks) + f" → **{verdict}**")
    return "\n".join(lines), passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="an eval-knowledge run directory with the controls")
    ap.add_argument("--metric", action="append", help=f"default: {', '.join(METRICS)}")
    args = ap.parse_args()
    records = [r for _, r in read_jsonl(args.run / "records.jsonl", partial_last=True)
               if r.get("status") != "item_error"]
    passage = next(c for c in ("passage" + FORM, "passage") if any(r["condition"] == c for r in records))
    items = {r["item"] for r in records if r["condition"] == passage}
    print(f"{args.run}: {len(items)} passages, "
          f"{sum(len(r.get('records') or []) for r in records if r['condition'] == passage)} questions\n")
    for metric in args.metric or METRICS:
        text, _ = table(records, metric)
        print(f"### {metric}\n\n{text}\n")


if __name__ == "__main__":
    main()
