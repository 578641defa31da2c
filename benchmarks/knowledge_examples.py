"""Winning and losing self-edits of a knowledge run: where a condition beat a reference most,
and where it lost most, with the self-edit and each question's answers side by side.

    python benchmarks/knowledge_examples.py RUN_DIR --condition own-self-qa-grounded --reference passage -n 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from selfadapt.evaluate import per_item
from selfadapt.runs import Run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--condition", default="own-self-qa-grounded")
    ap.add_argument("--reference", default="passage")
    ap.add_argument("-n", type=int, default=2, help="wins and losses to show")
    ap.add_argument("--chars", type=int, default=500, help="self-edit excerpt length")
    args = ap.parse_args()
    run = Run(args.run, yaml.safe_load((args.run / "config.yaml").read_text()))
    records = run.records()
    a, b = per_item(records, args.condition), per_item(records, args.reference)
    diffs = sorted((a[i] - b[i], i) for i in set(a) & set(b))
    by = {(r["condition"], r["item"]): r for r in records if r.get("j", 0) == 0 and "score" in r}
    for label, chosen in (("wins", diffs[::-1][: args.n]), ("losses", diffs[: args.n])):
        print(f"\n## {args.condition} vs {args.reference}: largest {label}\n")
        for d, item in chosen:
            mine, ref = by[(args.condition, item)], by[(args.reference, item)]
            print(f"### {item}: mc_prob {100 * mine['score']:.1f} vs {100 * ref['score']:.1f} ({100 * d:+.1f})\n")
            edit = (mine.get("selfedit") or "").strip().replace("\n", " / ")
            print(f"self-edit: {edit[: args.chars]}{' …' if len(edit) > args.chars else ''}\n")
            print(f"| question | gold | {args.reference} answer | {args.condition} answer | mc_prob ref → cond |")
            print("|---|---|---|---|---|")
            for qm, qr in zip(mine["records"], ref["records"]):
                print(f"| {qm['question']} | {qm['gold']} | {qr['response']} | {qm['response']} | "
                      f"{100 * qr['mc_prob']:.0f} → {100 * qm['mc_prob']:.0f} |")
            print()


if __name__ == "__main__":
    main()
