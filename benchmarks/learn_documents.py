"""`selfadapt learn` on SQuAD train passages used as documents, one at a time: the settings of
`learn` compared in RESULTS.md's "learn and ask" tables.

Each passage becomes a document named by its title; `learn` runs on it alone with each
setting, and the adapted model then answers the passage's SQuAD questions (EM/F1 of the
short answer, as `ask` answers, and the knowledge measure's multiple choice) and the
general probe (of the questions the unadapted model answered right, how many it still
does). Settings are compared paired by passage. Records go to ``--out`` (JSONL) as they
finish; rerunning the same command resumes. ``--ceiling RUN`` reads an ``eval knowledge`` run on
the same passages with the open-book controls (the passage in the prompt, without an update and after
the format control's) and prints each setting's exact match against theirs, paired by passage: the
goal is half of open-book+form.

    python benchmarks/learn_documents.py --out benchmarks/runs/learn30/records.jsonl --passages 20 \
        --setting old:distill=0,reading=0,cloze=0,route=0,epochs=10,lr=1e-3 --setting new \
        --ceiling benchmarks/runs/controls46/eval-knowledge-20261206-060230
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from selfadapt.answering import ask, routed
from selfadapt.documents import chunk_document
from selfadapt.evaluate import paired, share
from selfadapt.grading import grade
from selfadapt.knowledge import load_passages
from selfadapt.knowledge.cloze import cloze_pairs
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.lora import load_adapter
from selfadapt.models import load_model
from selfadapt.runs import read_jsonl
from selfadapt.teaching import LearnConfig, learn

KNOBS = {"distill": int, "reading": int, "replay": int, "epochs": int, "lr": float, "r": int, "batch": int,
         "k": int, "cloze": int, "reword": int, "short": int, "contrast": int, "route": int,
         "cd": float,  # cd: context_distill; short: short_questions
         # max_steps=0: no cap; route=0: `ask --no-route`, the adapter answers every question (learn before routing)
         "max_steps": int}


def parse_setting(text: str) -> tuple[str, dict]:
    """'old:distill=0,reading=0' → ('old', {'distill': 0, 'reading': 0})."""
    name, _, rest = text.partition(":")
    knobs = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in KNOBS:
            raise SystemExit(f"bad --setting {text!r}: knobs are {', '.join(KNOBS)}")
        knobs[key] = KNOBS[key](value)
    return name, knobs


def config(model: str, knobs: dict) -> LearnConfig:
    cfg = LearnConfig(model=model, probe_adapter=True)  # the "by the adapter alone" column
    lora = replace(cfg.lora, **{k: knobs[k] for k in ("epochs", "lr", "r") if k in knobs},
                   **({"batch_size": knobs["batch"]} if "batch" in knobs else {}),
                   **({"max_steps": knobs["max_steps"] or None} if "max_steps" in knobs else {}))
    top = {k: v for k, v in knobs.items() if k in ("distill", "reading", "replay")}  # route: evaluate's
    top |= {k: bool(knobs[k]) for k in ("cloze", "reword", "contrast") if k in knobs}
    top |= {"context_distill": knobs["cd"]} if "cd" in knobs else {}
    top |= {"short_questions": bool(knobs["short"])} if "short" in knobs else {}
    return replace(cfg, lora=lora, selfedits_per_chunk=knobs.get("k", cfg.selfedits_per_chunk), **top)


def run_settings(out: Path, settings: list[tuple[str, dict]], passages, run_one: Callable[[Any, str, dict], dict],
                 line: Callable[[dict], str]) -> dict:
    """Each passage under each setting, one at a time, skipping what ``out`` holds; each record is
    appended as it finishes (a killed run resumes). Returns every record by (passage, setting)."""
    done = {(r["passage"], r["setting"]): r for _, r in read_jsonl(out, partial_last=True)} if out.exists() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in passages:
        for name, knobs in settings:
            if (p.index, name) not in done:
                done[(p.index, name)] = rec = run_one(p, name, knobs)
                with open(out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                print(f"p{p.index} {name}: {line(rec)}", flush=True)
    return done


def evaluate(passage, setting: str, cfg: LearnConfig, model: str, route: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / (re.sub(r"[^\w]+", "_", passage.title) + ".txt")
        doc.write_text(passage.context)
        t0 = time.perf_counter()
        meta = learn([doc], Path(tmp) / "adapter", cfg, progress=lambda *a: None)
        seconds = time.perf_counter() - t0
        questions = [q.question for q in passage.questions]
        answers = ask(questions, Path(tmp) / "adapter", route=route)[str(Path(tmp) / "adapter")]
        routed_out = [not routed(q, [meta]) for q in questions] if route else [False] * len(questions)
        grades = [grade(a, q.answer) for a, q in zip(answers, passage.questions)]
        # the fit: the adapter asked its own training cloze questions (a user's question of the same shape)
        loaded = load_model(model)
        pairs = [p for c in chunk_document(passage.context, doc.stem.replace("_", " "), loaded.tokenizer,
                                           cfg.chunk_tokens)
                 for p in cloze_pairs(c.context, c.title)] if cfg.cloze else []
        recalled = ask([q for q, _ in pairs], Path(tmp) / "adapter", route=False)[str(Path(tmp) / "adapter")]
        cloze = [grade(a, gold) for a, (_, gold) in zip(recalled, pairs)]
        net = load_adapter(loaded.model, Path(tmp) / "adapter")
        mc = KnowledgeDomain(loaded.tokenizer).evaluate(net, loaded.tokenizer, passage)
    g, raw = (meta["general"], meta["general_adapter"]) if route else (meta["general_adapter"],) * 2
    return {"passage": passage.index, "setting": setting, "seconds": seconds, "step_seconds": meta["seconds"],
            "em": float(np.mean([x.exact_match for x in grades])), "f1": float(np.mean([x.f1 for x in grades])),
            "cloze_em": float(np.mean([x.exact_match for x in cloze])) if cloze else None, "cloze_pairs": len(pairs),
            "measure": {m: float(np.mean([r[m] for r in mc.records])) for m in ("mc_prob", "typed_cal_prob")},
            "answers": answers, "questions_without_adapter": sum(routed_out), "general_known": g["known_before"],
            "general_kept": g["kept"], "general_kept_by_adapter": raw["kept"],
            "general_lost": g["lost"], "check_f1": [meta["check_f1_before"], meta["check_f1_after"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--setting", action="append", required=True, help="NAME[:knob=value,...]; the first is the "
                    "reference")
    ap.add_argument("--passages", type=int, default=20)
    ap.add_argument("--offset", type=int, default=600, help="train passages no other benchmark uses")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--ceiling", type=Path, help="an `eval knowledge` run on the same passages with "
                    "--control open-book --control open-book+form")
    args = ap.parse_args()
    settings = [parse_setting(s) for s in args.setting]
    done = run_settings(args.out, settings, load_passages("train", limit=args.passages, offset=args.offset),
                        lambda p, name, knobs: evaluate(p, name, config(args.model, knobs), args.model,
                                                        bool(knobs.get("route", 1))),
                        lambda r: f"EM {r['em']:.2f} F1 {r['f1']:.2f} general kept {r['general_kept']}/"
                                  f"{r['general_known']} in {r['seconds']:.0f} s")
    ref = settings[0][0]
    print(f"\n| setting | passages | EM % | F1 % | F1 vs {ref} (95% CI) | W/T/L | typed_cal_prob % | vs {ref} (95% CI) "
          f"| own cloze recall EM % | vs {ref} (95% CI) | W/T/L | general kept (as ask answers) | by the adapter alone "
          "| s/doc |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, _ in settings:
        recs = {i: r for (i, s), r in done.items() if s == name}
        f1 = {i: r["f1"] for i, r in recs.items()}
        d = paired(f1, {i: r["f1"] for (i, s), r in done.items() if s == ref})
        measure = {i: r["measure"]["typed_cal_prob"] for i, r in recs.items()}
        dm = paired(measure, {i: r["measure"]["typed_cal_prob"] for (i, s), r in done.items() if s == ref})
        recall = {i: r["cloze_em"] for i, r in recs.items() if r.get("cloze_em") is not None}
        dr = paired(recall, {i: r["cloze_em"] for (i, s), r in done.items()
                             if s == ref and r.get("cloze_em") is not None})
        kept = sum(r["general_kept"] for r in recs.values()), sum(r["general_known"] for r in recs.values())
        by_adapter = sum(r["general_kept_by_adapter"] for r in recs.values())
        print(f"| {name} | {len(recs)} | {100 * np.mean([r['em'] for r in recs.values()]):.1f} | "
              f"{100 * np.mean(list(f1.values())):.1f} | {d.cell()} | {d.wtl} | "
              f"{100 * np.mean(list(measure.values())):.1f} | {dm.cell()} | "
              f"{100 * np.mean(list(recall.values())) if recall else float('nan'):.1f} | {dr.cell()} | {dr.wtl} | "
              f"{kept[0]}/{kept[1]} | "
              f"{by_adapter}/{kept[1]} | "
              f"{np.mean([r['seconds'] for r in recs.values()]):.0f} |")
    if args.ceiling:
        print_ceiling(args.ceiling, settings, done)


def print_ceiling(run: Path, settings: list[tuple[str, dict]], done: dict) -> None:
    """Each setting's closed-book EM beside every condition of an ``eval knowledge`` run on the same
    passages and questions (the open-book ceilings, passage+form, gold-QA+form, ...: per-passage exact
    match), paired by passage: the share is of open-book+form, the difference from it and from the
    first setting."""
    records = [r for _, r in read_jsonl(run / "records.jsonl", partial_last=True) if r.get("status") == "ok"]
    conditions = {}  # exact match whatever the run's --metric was
    for r in records:
        if r.get("records"):
            conditions.setdefault(r["condition"], {})[int(r["item"][1:])] = float(
                np.mean([q["exact_match"] for q in r["records"]]))
    top = conditions["open-book+form"]
    ref_name = settings[0][0]
    ref = {i: r["em"] for (i, s), r in done.items() if s == ref_name}
    print(f"\n| condition or setting | passages | EM % | % of open-book+form (95% CI) | EM − open-book+form (95% CI) "
          f"| W/T/L | EM − {ref_name} (95% CI) | W/T/L |\n|---|---|---|---|---|---|---|---|")
    rows = [(f"eval: {c}", em) for c, em in conditions.items()] + [
        (name, {i: r["em"] for (i, s), r in done.items() if s == name}) for name, _ in settings]
    for name, em in rows:
        both = sorted(set(em) & set(top))
        if not both:
            continue
        d, part, dr = paired(em, top), share(em, top), paired(em, ref)
        cell = "–" if part["ratio"] is None else (f"{100 * part['ratio']:.0f} ({100 * part['ci_low']:.0f}…"
                                                   f"{100 * part['ci_high']:.0f})")
        print(f"| {name} | {len(both)} | {100 * np.mean([em[i] for i in both]):.1f} | {cell} | {d.cell()} | "
              f"{d.wtl} | {dr.cell()} | {dr.wtl} |")


if __name__ == "__main__":
    main()
