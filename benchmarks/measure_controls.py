"""Check the knowledge measure against trivial controls before believing any number built on it.

On train passages: the base model, the recital control (no model: the passage's opening),
passage-only training, and the passage plus the gold question→answer pairs (train-on-test:
only to see that the measure can move at all). A measure that is worth a reward ranks
gold-QA far above everything and the recital no higher than the base model.

    python benchmarks/measure_controls.py --passages 8 --offset 100 --out benchmarks/runs/controls
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from selfadapt.evaluate import BASE, Condition, markdown_table, run_conditions, summarize
from selfadapt.knowledge.data import load_passages
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import RECITAL, SIDE_METRICS, record_recital
from selfadapt.knowledge.measure import REWARD_METRIC
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import EMBEDDED, load_model
from selfadapt.runs import Run

REFERENCES = ("passage", RECITAL, BASE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--model", default=EMBEDDED)
    ap.add_argument("--out", type=Path, default=Path("runs"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    passages = load_passages("train", limit=args.passages, offset=args.offset)
    loaded = load_model(args.model)
    lora = ResidentLoRA(loaded.model, loaded.tokenizer, LoRAConfig())
    domain = KnowledgeDomain(loaded.tokenizer)
    gold = {domain.item_id(p): ["\n".join(f"Q: {q.question}\nA: {q.answer}" for q in p.questions)] for p in passages}
    run = Run.create(args.out, "measure-controls", vars(args))
    record_recital(run, domain, passages)
    conditions = [Condition("passage"), Condition("gold-qa (train on test)", gold, domain=replace(domain, fmt="self-qa"))]
    records = run_conditions(run, lora, domain, passages, conditions, seed=0)
    names = [BASE, RECITAL] + [c.name for c in conditions]
    rows = summarize(records, names, metrics=tuple(SIDE_METRICS), references=REFERENCES)
    table = markdown_table(rows, REWARD_METRIC, SIDE_METRICS, REFERENCES)
    (run.path / "table.md").write_text(table + "\n")
    print(f"train passages {args.offset}–{args.offset + args.passages - 1}, "
          f"{sum(len(p.questions) for p in passages)} questions, wall {time.perf_counter() - t0:.0f} s\n{table}")


if __name__ == "__main__":
    main()
