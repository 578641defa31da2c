"""Time of one ReST-EM round on the embedded model, split into generation, inner loops and policy SFT.

    python benchmarks/restem_round.py                     # C=2 passages, k=2 self-edits, s=1 seed
    python benchmarks/restem_round.py -c 4 -k 3 --epochs 5

Runs a real one-round `train knowledge` in a temporary directory and prints what it
measured. Winners are whatever the round finds; when none beat the base score the SFT
stage is skipped (reported as 0 s), so ``--keep positive`` makes an SFT more likely.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

import torch

from selfadapt.knowledge.train import KnowledgeTrainConfig, run_knowledge_training
from selfadapt.lora import LoRAConfig
from selfadapt.restem import PASSAGE, PASSAGE_FORM, SELFEDIT, ReSTEMConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("-c", "--passages", type=int, default=2)
    ap.add_argument("-k", "--selfedits", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--keep", default="positive", choices=["best", "positive"])
    ap.add_argument("--format", default="implications")
    ap.add_argument("--form-equalized", action=argparse.BooleanOptionalAction, default=True,
                    help="train knowledge's default; the timings in RESULTS.md before issue 46 are without it")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = ReSTEMConfig(model=args.model, rounds=1, items_per_round=args.passages, k=args.selfedits,
                           seeds=args.seeds, keep=args.keep, lora=LoRAConfig(epochs=args.epochs), runs_dir=tmp)
        t0 = time.perf_counter()
        run = run_knowledge_training(cfg, KnowledgeTrainConfig(fmt=args.format, form=args.form_equalized))
        wall = time.perf_counter() - t0
        m = json.loads((run.path / "round-0" / "metrics.json").read_text())
        loops = sum(r["condition"] in (SELFEDIT, PASSAGE, PASSAGE_FORM) for r in run.records())  # every trained one
    sec = m["seconds"]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; model {args.model}")
    print(f"C={args.passages} passages × k={args.selfedits} self-edits × s={args.seeds} seeds = "
          f"{m['evaluations']} self-edit inner loops, {loops} with the passage-alone ones ({args.epochs} epochs "
          f"each); winners {m['winners']}, "
          f"SFT steps {m['sft'].get('steps', 0)}")
    print(f"{'stage':<12} {'seconds':>8} {'share':>6}")
    for k in ("generate", "inner_loops", "sft"):
        print(f"{k:<12} {sec[k]:8.1f} {sec[k] / sum(sec.values()):6.0%}")
    print(f"{'round':<12} {sum(sec.values()):8.1f}   (wall with model loads {wall:.1f} s)")
    print(f"per inner loop {sec['inner_loops'] / max(1, loops):.1f} s; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
