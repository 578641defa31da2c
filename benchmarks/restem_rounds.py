"""Per round of a knowledge ReST-EM run: reward and probe drop, paired by passage.

    python benchmarks/restem_rounds.py RUN                 # every finished or started round
    python benchmarks/restem_rounds.py RUN --vs OTHER_RUN  # two runs on the same passages
    python benchmarks/restem_rounds.py RUN --eval EVAL_RUN # each round's policy on held-out passages
    python benchmarks/restem_rounds.py RUN --examples 2    # each round's 2 best and 2 worst self-edits

For each round: the reward of the self-edits against the run's reward baseline (mean, and
per passage: the mean of its k self-edits with a paired bootstrap interval and
win/tie/loss counts, and how many passages have a positive best-of-k), the probe set's
drop after each update (self-edits and passage-only), and the share of invalid self-edits.
Round r samples from round r−1's policy, so round r's rows describe that policy. With
``--vs``, the probe drop and the un-penalised reward of each round's self-edits are paired
by passage between the two runs (e.g. with and without ``--forgetting-penalty``). With
``--eval``, an `eval knowledge` run that tested the policies (``--policy RUN/round-N``) gives
each policy's reward on its passages, paired by passage with passage-only, the recital, the
format control (where the run has it), the untrained policy's self-edits, the policy without
an update, and the previous round's policy. With ``--examples N``, each round's N highest- and
N lowest-reward self-edits (among ties the first in record order for best, the last for worst,
with how many share the value), with the questions they got right or wrong where passage-only
did not.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from selfadapt.evaluate import as_results, paired, per_item
from selfadapt.knowledge.controls import FORM
from selfadapt.knowledge.measure import REWARD_METRIC
from selfadapt.restem import PASSAGE, PASSAGE_FORM, SELFEDIT, base_probes, probe_drop, self_edit_rewards
from selfadapt.runs import read_jsonl


def load(run: Path) -> dict[int, list[dict]]:
    by_round: dict[int, list[dict]] = defaultdict(list)
    for _, r in read_jsonl(run / "records.jsonl", partial_last=True):  # a running job may be writing
        by_round[r["round"]].append(r)
    return dict(sorted(by_round.items()))


def per_passage(records: list[dict], baseline: str) -> dict[str, dict]:
    """passage → its self-edits' mean reward (no penalty), best reward, mean probe drop, and
    passage-only's probe drop, over what the round has finished."""
    rewards = self_edit_rewards(records, baseline)
    results = as_results(records)
    base_probe = base_probes(results)
    drops: dict[str, list[float]] = defaultdict(list)
    alone: dict[str, float] = {}
    for r in results:
        d = probe_drop(r, base_probe) if r.condition in (SELFEDIT, PASSAGE, PASSAGE_FORM) else None
        if d is not None and r.condition == SELFEDIT:
            drops[r.item].append(d)
        elif d is not None:
            alone[r.item] = d
    return {item: {"mean": float(np.mean(list(by_j.values()))), "best": max(by_j.values()), "k": len(by_j),
                   "drop": float(np.mean(drops[item])) if drops[item] else None, "drop_alone": alone.get(item)}
            for item, by_j in rewards.items()}


def held_out(eval_run: Path) -> None:
    """Each round's policy on the eval run's passages (the paper's Figure 4, with our baselines)."""
    records = [r for _, r in read_jsonl(eval_run / "records.jsonl", partial_last=True)]
    conditions = sorted({r["condition"] for r in records})
    # A form-equalized run names a trained policy round-N+form and the same policy without an update round-N-base.
    rounds = sorted((n for n in conditions if n.startswith("round-") and not n.endswith("-base")),
                    key=lambda n: int(n.removesuffix(FORM).split("-")[1]))
    # Policies named NAME-round-N (`--policy NAME-round-N=OTHER_RUN/round-N`) are paired with this
    # run's round-N: the same round of another run, e.g. with --forgetting-penalty.
    others = sorted(n for n in conditions if "-round-" in n and not n.endswith("-base")
                    and f"{n.removesuffix(FORM)}-base" in conditions)
    untrained = next((n for n in conditions if n.startswith("own-")), None)
    passage = PASSAGE_FORM if PASSAGE_FORM in conditions else PASSAGE
    print(f"\nPolicies on {eval_run} (`{REWARD_METRIC}` %, differences in points, paired by passage):\n")
    control = "format-control" if "format-control" in conditions else None  # under form: passage+form itself
    print(f"| policy | {REWARD_METRIC} | vs {passage} | vs recital | vs format control | vs untrained ({untrained}) "
          "| vs itself without an update | vs the previous round's (NAME-round-N: vs round-N) "
          "| NAME-round-N vs NAME-round-(N−1) |")
    print("|---|---|---|---|---|---|---|---|---|")
    previous = {n: p for n, p in zip(rounds, [untrained, *rounds])} | {n: n[n.index("round-"):] for n in others}

    def own_previous(name: str) -> str | None:  # fe-round-1+form → fe-round-0+form, where it was evaluated
        prefix, _, rest = name.rpartition("round-")
        number, suffix = rest.split("+", 1) if "+" in rest else (rest, "")
        earlier = f"{prefix}round-{int(number) - 1}{'+' + suffix if suffix else ''}"
        return earlier if name in others and int(number) > 0 and earlier in conditions else None

    for name in rounds + others:
        score = per_item(records, name)
        cells = [fmt(paired(score, per_item(records, ref))) if ref else "–"
                 for ref in (passage, "recital", control, untrained, f"{name.removesuffix(FORM)}-base",
                             previous[name], own_previous(name))]
        print(f"| {name} | {100 * np.mean(list(score.values())):.1f} | " + " | ".join(cells) + " |")


def examples(r: int, records: list[dict], baseline: str, n: int) -> None:
    """A round's highest- and lowest-reward self-edits, and the questions where they differ from passage-only
    (passage+form in a form-equalized run)."""
    rewards = self_edit_rewards(records, baseline)
    edits = {(x["item"], x["j"]): x for x in records if x["condition"] == SELFEDIT and x["seed"] == 0}
    alone = {x["item"]: x for x in records if x["condition"] in (PASSAGE, PASSAGE_FORM) and x["seed"] == 0}
    ranked = sorted(((g, item, j) for item, by_j in rewards.items() for j, g in by_j.items()
                     if (item, j) in edits and item in alone), key=lambda t: -t[0])  # stable sort: ties in record order
    for label, picked in (("best", ranked[:n]), ("worst", ranked[::-1][:n])):
        for g, item, j in picked:
            e, ties = edits[item, j], sum(x[0] == g for x in ranked)
            print(f"\nround {r}, {label}: {item} self-edit {j}, reward {100 * g:+.1f} ({ties} of {len(ranked)} "
                  f"self-edits have it), {len(e['selfedit'].split())} words, status {e['status']}")
            print("  " + e["selfedit"][:400].replace("\n", " / ") + (" …" if len(e["selfedit"]) > 400 else ""))
            mine = {q["question"]: q for q in e.get("records") or []}
            for q in alone[item].get("records") or []:
                m = mine.get(q["question"])
                if m and m[REWARD_METRIC] != q[REWARD_METRIC]:
                    print(f"  {'+' if m[REWARD_METRIC] > q[REWARD_METRIC] else '-'} {q['question']} "
                          f"gold {q['gold']!r}: "
                          f"self-edit {m['response']!r}, passage-only {q['response']!r}")


def pct(values: list[float]) -> str:
    return f"{100 * np.mean(values):+.1f}" if values else "–"


def fmt(p) -> str:
    return f"{100 * p.mean:+.1f} ({100 * p.ci_low:+.1f}…{100 * p.ci_high:+.1f}) {p.wins}/{p.ties}/{p.losses}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--vs", type=Path, help="another run on the same passages, paired by passage")
    ap.add_argument("--eval", type=Path, help="an eval knowledge run with the rounds' policies")
    ap.add_argument("--examples", type=int, default=0, help="print each round's N best and N worst self-edits")
    args = ap.parse_args()
    import yaml

    baseline = yaml.safe_load((args.run / "config.yaml").read_text())["reward_baseline"]
    rounds = load(args.run)
    print(f"{args.run} (reward vs {baseline}; points of the knowledge measure's {REWARD_METRIC})\n")
    print("| round | passages (complete) | self-edits | mean reward | per passage: mean of k, paired (95% CI) W/T/L | "
          "best-of-k > 0 | probe drop: self-edits | probe drop: passage-only | invalid |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r, recs in rounds.items():
        pp = per_passage(recs, baseline)
        edits = [x for x in recs if x["condition"] == SELFEDIT]
        complete = sum(v["k"] == max((v["k"] for v in pp.values()), default=0) for v in pp.values())
        means = {i: v["mean"] for i, v in pp.items()}
        rewards = [g for by_j in self_edit_rewards(recs, baseline).values() for g in by_j.values()]
        drops = [v["drop"] for v in pp.values() if v["drop"] is not None]
        alone = [v["drop_alone"] for v in pp.values() if v["drop_alone"] is not None]
        invalid = sum(x.get("status") == "invalid_selfedit" for x in edits)
        print(f"| {r} | {len(pp)} ({complete}) | {len(edits)} | {100 * np.mean(rewards):+.1f} | "
              f"{fmt(paired(means, dict.fromkeys(means, 0.0)))} | {sum(v['best'] > 0 for v in pp.values())} | "
              f"{pct(drops)} | {pct(alone)} | {invalid} |")
    if args.vs:
        other = load(args.vs)
        print(f"\nPaired with {args.vs}, passage by passage (this run − that run):\n")
        print("| round | passages | probe drop of self-edits | reward vs passage-only (no penalty) |")
        print("|---|---|---|---|")
        for r in sorted(set(rounds) & set(other)):
            a, b = per_passage(rounds[r], baseline), per_passage(other[r], baseline)
            da = {i: v["drop"] for i, v in a.items() if v["drop"] is not None}
            db = {i: v["drop"] for i, v in b.items() if v["drop"] is not None}
            print(f"| {r} | {len(set(da) & set(db))} | {fmt(paired(da, db))} | "
                  f"{fmt(paired({i: v['mean'] for i, v in a.items()}, {i: v['mean'] for i, v in b.items()}))} |")
    if args.examples:
        for r, recs in rounds.items():
            examples(r, recs, baseline, args.examples)
    if args.eval:
        held_out(args.eval)
    print("\nreproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
