"""Inner-loop batch size, learning rate and epochs against accuracy and time, on *train* passages.

    python benchmarks/inner_loop_sweep.py --out benchmarks/runs/sweep/batch.jsonl \
        --setting bs=16,lr=1e-3 --setting bs=4,lr=1e-3 --setting bs=1,lr=1e-3 --setting bs=16,lr=3e-3
    python benchmarks/inner_loop_sweep.py --out benchmarks/runs/sweep/batch.jsonl \
        --setting bs=16,lr=1e-3 --setting bs=16,lr=1e-3,ep=3   # fewer epochs: fewer trained tokens

Why: ours trains in length-grouped batches of up to 16 sequences, so a passage gets far fewer
optimiser steps than in a SEAL-style loop of one sequence per step at the same learning rate
and epochs. Whether fewer, larger steps cost accuracy is a question for training data, never
for eval200 (RESULTS.md, "Batch size and learning rate"). Fewer epochs train fewer tokens, the
one way past the matmul bound on a CPU (RESULTS.md, "A SEAL-style inner loop against ours").
Each passage's own self-edit (the default
format and decoding, grounded self-QA, seed 0) is written once and every setting trains
on the same data with the same seed, so settings are compared paired by passage: mean
``mc_prob``, the paired difference from the first setting with its bootstrap interval and
wins/ties/losses, training seconds and optimiser steps. Records go to ``--out`` (JSONL)
as they finish; rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from selfadapt.evaluate import paired
from selfadapt.generation import SamplingConfig
from selfadapt.inner_loop import evaluate_base, evaluate_selfedit
from selfadapt.knowledge import KnowledgeDomain, load_passages
from selfadapt.knowledge.experiment import DEFAULT_FORMAT, KnowledgeEvalConfig
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import load_model
from selfadapt.policy import write_selfedits
from selfadapt.runs import read_jsonl


def parse_setting(text: str) -> dict[str, float]:
    """'bs=4,lr=1e-3,ep=3' → {'bs': 4, 'lr': 0.001, 'ep': 3}; only bs, lr and ep are swept."""
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in ("bs", "lr", "ep") or not value:
            raise SystemExit(f"bad --setting {text!r}: expected e.g. bs=4,lr=1e-3,ep=3")
        out[key] = float(value) if key == "lr" else int(value)
    return {"bs": LoRAConfig.batch_size, "lr": LoRAConfig.lr, "ep": LoRAConfig.epochs} | out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSONL of finished records (resumed from)")
    ap.add_argument("--setting", action="append", required=True,
                    help="bs=N,lr=X,ep=E (each optional); the first is the reference")
    ap.add_argument("--dataset", default="train")
    ap.add_argument("--offset", type=int, default=200, help="skip the train passages ReST-EM runs use")
    ap.add_argument("--passages", type=int, default=16)
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()
    settings = {s: parse_setting(s) for s in args.setting}

    done: dict[tuple[str, str], dict] = {}
    if args.out.exists():
        for _, r in read_jsonl(args.out):
            done[(r["item"], r["setting"])] = r
    args.out.parent.mkdir(parents=True, exist_ok=True)

    loaded = load_model(args.model)
    tok = loaded.tokenizer
    cfg = KnowledgeEvalConfig()
    domain = KnowledgeDomain(tok, DEFAULT_FORMAT, answer=SamplingConfig(cfg.answer_max_new_tokens, 0.0, 1.0, 16),
                             grounded=True)
    lora = ResidentLoRA(loaded.model, tok, LoRAConfig())
    passages = load_passages(args.dataset, limit=args.passages, offset=args.offset)
    print(f"{len(passages)} {args.dataset} passages from {args.offset}; settings: {', '.join(settings)}", flush=True)
    with args.out.open("a") as out:
        def record(r: dict) -> None:
            done[(r["item"], r["setting"])] = r
            out.write(json.dumps(r) + "\n")
            out.flush()

        for p in passages:
            iid = domain.item_id(p)
            if (iid, "write") not in done:
                lora.reset()
                [[edit]], seconds = write_selfedits(lora.model, tok, domain, [p], 1, cfg.sampling(DEFAULT_FORMAT),
                                                    seed=cfg.seed)
                record({"item": iid, "setting": "write", "selfedit": edit, "seconds": seconds})
            if (iid, "base") not in done:
                record({"item": iid, "setting": "base", "score": evaluate_base(lora, domain, p).score})
            for name, s in settings.items():
                if (iid, name) in done:
                    continue
                lora.cfg = replace(LoRAConfig(), batch_size=s["bs"], lr=s["lr"], epochs=s["ep"])
                res = evaluate_selfedit(lora, domain, p, done[(iid, "write")]["selfedit"], seed=cfg.seed)
                record({"item": iid, "setting": name, "status": res.status, "score": res.score,
                        "train_s": res.seconds.get("train"), **res.train})
                print(f"{iid} {name}: mc_prob {res.score:.3f}, {res.train.get('steps')} steps, "
                      f"train {res.seconds.get('train', 0):.1f} s", flush=True)

    items = [domain.item_id(p) for p in passages]
    scores = {name: {i: done[(i, name)]["score"] for i in items if (i, name) in done} for name in ["base", *settings]}
    ref = args.setting[0]
    print(f"\n| setting | passages | mc_prob | vs {ref} (95% CI) | W/T/L | steps / passage | train s / passage |")
    print("|---|---|---|---|---|---|---|")
    for name in ["base", *settings]:
        rows = [done[(i, name)] for i in items if (i, name) in done]
        if not rows:
            continue
        d = paired(scores[name], scores[ref])
        trained = [r for r in rows if r.get("status") == "ok"]  # an invalid self-edit trains nothing
        steps = f"{statistics.mean(r['steps'] for r in trained):.0f}" if trained else "–"
        train = f"{statistics.mean(r['train_s'] for r in trained):.1f}" if trained else "–"
        print(f"| {name} | {len(rows)} | {statistics.mean(r['score'] for r in rows):.3f} | "
              f"{d.cell() if name != ref else '–'} | {d.wtl if name != ref else '–'} | {steps} | {train} |")
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
