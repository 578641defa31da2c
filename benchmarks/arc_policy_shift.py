"""How ReST-EM moved the ARC self-edit policy: configurations sampled before and after, no TTT.

    python benchmarks/arc_policy_shift.py benchmarks/runs/arc/train-training/round-0 \
        --out benchmarks/runs/arc/policy-shift

Why: an evaluation run samples 4 self-edits per task with the same seed for the untrained
and the trained policy, so their samples largely coincide and a handful of TTT outcomes
cannot show what the round changed. Here each policy writes ``-k`` grammar-constrained
self-edits per task (the small-grid training tasks the round learned on and the small-grid
evaluation tasks, a seed no run used) and scores the default configuration and the 12
oracle-grid configurations under itself: the share of samples per field (``configs.png``,
``configs.json``) and log p of each configuration show the shift without TTT noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from selfadapt.arc.data import load_tasks
from selfadapt.arc.domain import DEFAULT_TTT
from selfadapt.arc.experiment import SELFEDIT_TOKENS, ArcSettings, oracle_grid
from selfadapt.arc.selfedit import TTTConfig, config_distribution
from selfadapt.generation import SamplingConfig
from selfadapt.models import EMBEDDED, load_model
from selfadapt.plots import plot_distributions
from selfadapt.policy import selfedit_logprobs, write_selfedits
from selfadapt.restem import resolve_policy


def label(c: TTTConfig) -> str:
    return f"{'+'.join(c.groups) or 'none'} / {c.loss_scope} / lr {c.lr:g} / {c.epochs} ep"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policy", help="a trained policy: RUN/round-N or a model spec")
    ap.add_argument("--base", default=EMBEDDED, help="the untrained policy")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("-k", type=int, default=32, help="self-edits per task and policy")
    ap.add_argument("--train-cells", type=int, default=18, help="max cells of the training tasks (the round's)")
    ap.add_argument("--eval-cells", type=int, default=36, help="max cells of the evaluation tasks")
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()

    tasks = {subset: [t for t in load_tasks(subset) if t.max_cells <= cells]
             for subset, cells in (("training", args.train_cells), ("evaluation", args.eval_cells))}
    grid = [DEFAULT_TTT] + [c for c in oracle_grid() if c != DEFAULT_TTT]
    sampling = SamplingConfig(SELFEDIT_TOKENS, 1.0, 0.95, batch_size=8)
    args.out.mkdir(parents=True, exist_ok=True)
    dists, logp = {}, {}
    for name, spec in (("untrained", args.base), ("trained", resolve_policy(args.policy, args.base)[1])):
        loaded = load_model(spec)
        domain = ArcSettings().domain(loaded.tokenizer)
        for subset, items in tasks.items():
            edits, seconds = write_selfedits(loaded.model, loaded.tokenizer, domain, items, args.k, sampling,
                                             seed=args.seed)
            col = f"{name}, {subset}"
            flat = [e for per_task in edits for e in per_task]
            dists[col] = {f: dict(v) for f, v in config_distribution(flat).items()}
            scores = [selfedit_logprobs(loaded.model, loaded.tokenizer, domain, t, [c.to_json() for c in grid])
                      for t in items]
            logp[col] = [statistics.mean(s[i] for s in scores) for i in range(len(grid))]
            print(f"{col}: {len(flat)} self-edits in {seconds:.0f} s, {dists[col]['valid'].get('yes', 0)} valid",
                  flush=True)
        del loaded

    (args.out / "configs.json").write_text(json.dumps({"distributions": dists, "logp": logp,
                                                       "grid": [label(c) for c in grid]}, indent=1))
    plot_distributions(dists, args.out / "configs.png",
                       f"ARC self-edits before and after ReST-EM ({args.k} per task, seed {args.seed})")
    cols = list(logp)
    print("\nmean log p(configuration | task prompt), per task; "
          f"{', '.join(f'{s}: {len(t)} tasks' for s, t in tasks.items())}")
    print("| configuration | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for i, c in enumerate(grid):
        print(f"| {label(c)}{' (default)' if c == DEFAULT_TTT else ''} | "
              + " | ".join(f"{logp[col][i]:.1f}" for col in cols) + " |")
    print("\nshare of samples per field (%)")
    for field in next(iter(dists.values())):
        values = sorted({v for d in dists.values() for v in d.get(field, {})})
        cells = []
        for col, d in dists.items():
            n = sum(d.get(field, {}).values())
            cells.append(f"{col}: " + ", ".join(f"{v} {100 * d[field].get(v, 0) / n:.0f}" for v in values))
        print(f"- {field}: " + "; ".join(cells))
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
