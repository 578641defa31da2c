"""TinyV on a finished knowledge run: how often does a judge overturn exact match's "no"?

Every short answer that SQuAD exact match rejects goes to the judge (``judge.fallback``),
per condition. Reported: judge calls, flips, the flip rate among the rule's negatives,
how many flips contain the gold answer (a flip that does not is most likely the judge's
false positive), and the recital control, whose answers are never right: its flips
measure the judge's false-positive rate directly. Prints examples of flips.

A local judge's yes/no margin can first be calibrated on train passages (``--calibrate
N``), never on the run's own data: right answers worded differently ("It is {gold}.") and
wrong ones (another question's answer from the same passage, worded the same; the
passage's opening words). The threshold maximises TPR − FPR there; the AUC says whether
the margin separates right from wrong at all.

    python benchmarks/tinyv_flips.py RUN_DIR --judge smollm2 [--calibrate 30] [--judge-url URL] -n 8
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from selfadapt.grading import contains, normalize_answer
from selfadapt.judge import LocalJudge, fallback, make_judge
from selfadapt.knowledge.data import load_passages
from selfadapt.runs import Run


def calibration_items(n: int) -> tuple[list[tuple[str, str, str]], list[bool]]:
    """Train-split (question, gold, response) triples known to be right or wrong."""
    items, labels = [], []
    for p in load_passages("train", limit=n):
        opening = " ".join(p.context.split()[:12])
        for i, q in enumerate(p.questions):
            items.append((q.question, q.answer, f"It is {q.answer}."))
            labels.append(True)
            others = [o.answer for j, o in enumerate(p.questions)
                      if j != i
                      and not set(normalize_answer(o.answer).split()) & set(normalize_answer(q.answer).split())]
            for wrong in others[:1] + ([opening] if not contains(opening, q.answer) else []):
                items.append((q.question, q.answer, f"It is {wrong}." if wrong is not opening else wrong))
                labels.append(False)
    return items, labels


def calibrate(judge: LocalJudge, n: int) -> None:
    items, labels = calibration_items(n)
    m = np.array(judge.margins(items))
    y = np.array(labels)
    pos, neg = m[y], m[~y]
    auc = float(np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg]))
    cuts = np.unique(m)
    gain = [np.mean(pos > c) - np.mean(neg > c) for c in cuts]
    judge.threshold = float(cuts[int(np.argmax(gain))])
    print(f"calibration on {n} train passages: {len(pos)} right / {len(neg)} wrong answers; margin AUC {auc:.3f}; "
          f"threshold {judge.threshold:+.3f}: TPR {np.mean(pos > judge.threshold):.1%}, "
          f"FPR {np.mean(neg > judge.threshold):.1%} (at 0: TPR {np.mean(pos > 0):.1%}, FPR {np.mean(neg > 0):.1%})\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--judge", default="smollm2", help="judge model spec (or the endpoint's model with --judge-url)")
    ap.add_argument("--judge-url", default=None)
    ap.add_argument("-n", type=int, default=8, help="flip examples to print")
    ap.add_argument("--out", type=Path, default=None, help="write every verdict here (JSONL)")
    ap.add_argument("--calibrate", type=int, default=0, help="train passages to set a local judge's threshold on")
    args = ap.parse_args()
    run = Run(args.run, yaml.safe_load((args.run / "config.yaml").read_text()))
    judge = make_judge(args.judge, args.judge_url)
    if args.calibrate:
        if not isinstance(judge, LocalJudge):
            raise SystemExit("--calibrate sets a local judge's threshold; an endpoint judge has none")
        calibrate(judge, args.calibrate)
    by_condition: dict[str, list[dict]] = defaultdict(list)
    for rec in run.records():
        if rec.get("j", 0) == 0 and rec.get("seed", 0) == 0 and rec.get("records"):
            by_condition[rec["condition"]] += [{**q, "item": rec["item"]} for q in rec["records"]]
    t0 = time.perf_counter()
    rows, flips = [], []
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    for condition, qs in by_condition.items():
        verdicts = fallback([q["exact_match"] == 1.0 for q in qs],
                            [(q["question"], q["gold"], q["response"]) for q in qs], judge)
        calls = sum(not v["rule"] for v in verdicts)
        flipped = [(q, v) for q, v in zip(qs, verdicts) if v["flip"]]
        rows.append((condition, len(qs), sum(v["rule"] for v in verdicts), calls, len(flipped),
                     int(sum(contains(q["response"], q["gold"]) for q, _ in flipped))))
        flips += [(condition, q) for q, _ in flipped]
        if out:
            for q, v in zip(qs, verdicts):
                out.write(json.dumps({"condition": condition, "item": q["item"], "question": q["question"],
                                      "gold": q["gold"], "response": q["response"], **v}, ensure_ascii=False) + "\n")
    seconds = time.perf_counter() - t0
    print(f"# TinyV fallback on {args.run.name} "
          f"(judge {args.judge}{' @ ' + args.judge_url if args.judge_url else ''})\n")
    print("| condition | answers | exact match | judge calls | flips | flip rate of negatives | "
          "flips containing gold |")
    print("|---|---|---|---|---|---|---|")
    for condition, n, em, calls, k, gold in rows:
        print(f"| {condition} | {n} | {em} ({100 * em / n:.1f}%) | {calls} | {k} | {100 * k / max(1, calls):.1f}% | "
              f"{gold} |")
    total_calls = sum(r[3] for r in rows)
    print(f"\n{total_calls} judge calls in {seconds:.0f} s ({1000 * seconds / max(1, total_calls):.0f} ms each)\n")
    print("| condition | question | gold | answer | gold contained |\n|---|---|---|---|---|")
    for condition, q in flips[: args.n]:
        print(f"| {condition} | {q['question']} | {q['gold']} | {q['response']} | "
              f"{'yes' if contains(q['response'], q['gold']) else 'no'} |")


if __name__ == "__main__":
    main()
