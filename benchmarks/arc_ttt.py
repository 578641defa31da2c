"""Time of one ARC self-edit evaluation on the embedded model: TTT data, LoRA TTT, voting inference.

    python benchmarks/arc_ttt.py                          # task 6150a2bd, basic augmentations
    python benchmarks/arc_ttt.py --task 66e6c45b --subset evaluation --groups basic,size --epochs 2

Builds the self-edit JSON from the options, runs the shared inner loop once
(``evaluate_selfedit``: build data → LoRA TTT → predict under the voting transforms →
restore) and prints each stage, the number of TTT sequences and tokens, and whether the
task was solved.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from selfadapt.arc.data import load_tasks
from selfadapt.arc.domain import ArcDomain
from selfadapt.arc.experiment import arc_lora
from selfadapt.arc.selfedit import TTTConfig
from selfadapt.inner_loop import evaluate_selfedit
from selfadapt.lora import ResidentLoRA
from selfadapt.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--subset", default="training")
    ap.add_argument("--task", default="6150a2bd")
    ap.add_argument("--groups", default="basic")
    ap.add_argument("--scope", default="output", choices=["output", "all"])
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cap", type=int, default=24)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--votes", type=int, default=4)
    args = ap.parse_args()

    (task,) = load_tasks(args.subset, ids=[args.task])
    t0 = time.perf_counter()
    m = load_model(args.model)
    load_s = time.perf_counter() - t0
    lora = ResidentLoRA(m.model, m.tokenizer, arc_lora())
    domain = ArcDomain(m.tokenizer, cap=args.cap, budget=args.budget, votes=args.votes)
    groups = tuple(g for g in args.groups.split(",") if g)
    selfedit = TTTConfig(groups, args.scope, args.lr, args.epochs).to_json()
    t0 = time.perf_counter()
    res = evaluate_selfedit(lora, domain, task, selfedit, seed=0)
    total = time.perf_counter() - t0
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {m.model.dtype}; model {args.model} "
          f"(load {load_s:.1f} s)")
    print(f"task {task.id}: {len(task.train)} examples, largest grid {task.max_cells} cells; self-edit {selfedit}")
    print(f"status {res.status}; TTT sequences {res.train.get('sequences')}, steps {res.train.get('steps')}, "
          f"tokens {res.train.get('tokens')}, loss {res.train.get('first_loss')} → {res.train.get('final_loss')}")
    for stage, s in res.seconds.items():
        print(f"{stage:<8} {s:7.1f} s")
    print(f"{'total':<8} {total:7.1f} s   solved: {bool(res.score)}; attempts: "
          f"{[a.replace(chr(10), '/') for r in res.records for a in r['attempts']]}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
