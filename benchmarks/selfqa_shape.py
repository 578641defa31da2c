"""What the self-QA self-edits of each writer look like: how ReST-EM moved the policy.

    python benchmarks/selfqa_shape.py RUN_DIR      # every condition that wrote self-edits

For each condition that wrote self-edits in a knowledge run (the untrained model, each
round's policy): Q/A pairs per self-edit, words per question and per answer, and the share
of empty questions, of questions that end in "?" and of answers that are only a number.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

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
        "characters / self-edit": float(np.mean([len(s) for s in selfedits])) if selfedits else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    run = Run(args.run, yaml.safe_load((args.run / "config.yaml").read_text()))
    written: dict[str, list[str]] = defaultdict(list)
    for r in run.records():
        if r["condition"] == "write":
            written[r["key"].rsplit("/write/", 1)[0]] += r["selfedits"]
    rows = {name: shape(edits) for name, edits in written.items()}
    cols = list(next(iter(rows.values()), {}))
    print("| writer | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | "
              + " | ".join(f"{v:.0f}" if k == "self-edits" else f"{v:.1f}" for k, v in row.items()) + " |")
    print("\nreproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
