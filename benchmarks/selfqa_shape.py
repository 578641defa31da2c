"""What the self-QA self-edits of each writer look like: how ReST-EM moved the policy.

    python benchmarks/selfqa_shape.py RUN_DIR                # every condition that wrote self-edits
    python benchmarks/selfqa_shape.py RUN_DIR --vs OTHER_RUN # and each one's score against the other run's

For each condition that wrote self-edits in a knowledge run (the untrained model, each
round's policy): Q/A pairs per self-edit, words per question and per answer, and the share
of empty questions, of questions that end in "?", of answers that are only a number and of
answers without a content word ("the", "but": ``grounded.has_content``). With ``--vs``, the
same conditions of an `eval knowledge` run on the same passages (e.g. under another decoding
rule): their shape too, and each condition's score (the run's measure, exact match by default) paired
by passage, RUN minus OTHER_RUN, an invalid self-edit scoring 0.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from selfadapt.evaluate import paired, per_item
from selfadapt.knowledge.grounded import has_content
from selfadapt.runs import Run

PAIR = re.compile(r"Q:(.*)\nA:(.*)")
NUMBER = re.compile(r"[\d,.\s]+")


def shape(selfedits: list[str]) -> dict[str, float]:
    pairs = [(q.strip(), a.strip()) for s in selfedits for q, a in PAIR.findall(s)]
    n = max(len(pairs), 1)
    return {
        "self-edits": len(selfedits),
        "pairs / self-edit": len(pairs) / max(len(selfedits), 1),
        "words / question": float(np.mean([len(q.split()) for q, _ in pairs])) if pairs else 0.0,
        "words / answer": float(np.mean([len(a.split()) for _, a in pairs])) if pairs else 0.0,
        "empty questions %": 100 * sum(not q for q, _ in pairs) / n,
        "questions ending in ? %": 100 * sum(q.endswith("?") for q, _ in pairs) / n,
        "numeric answers %": 100 * sum(bool(NUMBER.fullmatch(a)) for _, a in pairs) / n,
        "answers without a content word %": 100 * sum(not has_content(a) for _, a in pairs) / n,
        "characters / self-edit": float(np.mean([len(s) for s in selfedits])) if selfedits else 0.0,
    }


def written(path: Path) -> tuple[dict[str, list[str]], list[dict]]:
    """Each writer's self-edits, and the run's records."""
    run = Run(path, yaml.safe_load((path / "config.yaml").read_text()))
    records, edits = list(run.records()), defaultdict(list)
    for r in records:
        if r["condition"] == "write":
            edits[r["key"].rsplit("/write/", 1)[0]] += r["selfedits"]
    return edits, records


def print_table(rows: dict[str, dict[str, float]]) -> None:
    cols = list(next(iter(rows.values()), {}))
    print("| writer | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | "
              + " | ".join(f"{v:.0f}" if k == "self-edits" else f"{v:.1f}" for k, v in row.items()) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--vs", type=Path, help="an eval knowledge run with the same writers on the same passages")
    args = ap.parse_args()
    edits, records = written(args.run)
    if not args.vs:
        print_table({name: shape(e) for name, e in edits.items()})
    else:
        other, other_records = written(args.vs)
        common = [name for name in edits if name in other]
        if not common:
            sys.exit(f"{args.run} and {args.vs} share no writer: compare eval knowledge runs of the same conditions")
        a, b = (f"{p.parent.name}/{p.name}" for p in (args.run, args.vs))  # runs of one command share a name
        print_table({f"{name} ({label})": shape(e[name]) for name in common for label, e in ((a, edits), (b, other))})
        print(f"\n| condition | score, {a} − {b} (95% CI) | W/T/L | passages |")
        print("|---|---|---|---|")
        for name in common:  # an invalid self-edit scores 0, as for the reward: a rule may make more of them
            p = paired(per_item(records, name, failed_scores=True), per_item(other_records, name, failed_scores=True))
            print(f"| {name} | {p.cell()} | {p.wtl} | {p.n} |")
    print("\nreproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
