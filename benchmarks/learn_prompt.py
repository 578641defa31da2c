"""Which prompt should `ask` put a question in, for a learned adapter? (issue 30)

`learn` trains its Q→A examples on the zero-shot prompt (``qa_prompt``: system line, topic,
question) while `ask` answered in the few-shot prompt (``short_answer_prompt``: three worked
examples first), a train/test mismatch. Here one adapter per SQuAD train passage (as
`learn` makes it) answers the passage's questions and the general probe in both prompts,
paired by question; the unadapted model answers the probe in both too. Records go to
``--out`` as they finish; rerunning resumes.

    python benchmarks/learn_prompt.py --out benchmarks/runs/learn30/prompt.jsonl --passages 8
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from selfadapt.evaluate import paired
from selfadapt.generation import SamplingConfig, generate
from selfadapt.grading import contains, grade
from selfadapt.knowledge import load_passages
from selfadapt.knowledge.domain import ANSWER_CAP
from selfadapt.knowledge.general import general_questions
from selfadapt.knowledge.measure import qa_prompt, short_answer_prompt
from selfadapt.lora import load_adapter
from selfadapt.models import load_model
from selfadapt.runs import read_jsonl
from selfadapt.teach import LearnConfig, learn

PROMPTS = {"few_shot": short_answer_prompt, "zero_shot": qa_prompt}


def answers(model, tokenizer, title: str, questions: list[str], prompt) -> list[str]:
    out = generate(model, tokenizer, [prompt(tokenizer, title, q) for q in questions],
                   SamplingConfig(ANSWER_CAP, 0.0, 1.0, 8))
    return [a.split("\n")[0].strip() for a in out]


def run(passage, cfg: LearnConfig, model: str) -> dict:
    probe, _ = general_questions()
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / (re.sub(r"[^\w]+", "_", passage.title) + ".txt")
        doc.write_text(passage.context)
        t0 = time.perf_counter()
        learn([doc], Path(tmp) / "adapter", cfg, progress=lambda *a: None)
        seconds = time.perf_counter() - t0
        loaded = load_model(model)
        net = load_adapter(loaded.model, Path(tmp) / "adapter")
        tok, title = loaded.tokenizer, passage.title
        rec = {"passage": passage.index, "seconds": seconds}
        for name, prompt in PROMPTS.items():
            doc_answers = answers(net, tok, title, [q.question for q in passage.questions], prompt)
            grades = [grade(a, q.answer) for a, q in zip(doc_answers, passage.questions)]
            gen = answers(net, tok, title, [q.question for q in probe], prompt)
            with net.disable_adapter():
                base = answers(net, tok, title, [q.question for q in probe], prompt)
            right = lambda rs: [any(contains(r, a) for a in q.answers) for q, r in zip(probe, rs)]  # noqa: E731
            rec[name] = {"answers": doc_answers, "em": [g.exact_match for g in grades], "f1": [g.f1 for g in grades],
                         "general_adapter": right(gen), "general_base": right(base)}
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument("--offset", type=int, default=600, help="the learn30 benchmark's train passages")
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()
    cfg = LearnConfig(model=args.model, distill=0, reading=2, check=False, probe=False)
    cfg = replace(cfg, lora=replace(cfg.lora, epochs=4, lr=2.5e-3))  # the learn30 "fast4" setting
    done = {r["passage"]: r for _, r in read_jsonl(args.out, partial_last=True)} if args.out.exists() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for p in load_passages("train", limit=args.passages, offset=args.offset):
        if p.index not in done:
            done[p.index] = rec = run(p, cfg, args.model)
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            print(f"p{p.index}: EM few-shot {np.mean(rec['few_shot']['em']):.2f} zero-shot "
                  f"{np.mean(rec['zero_shot']['em']):.2f} in {rec['seconds']:.0f} s", flush=True)
    recs = list(done.values())
    print("\n| prompt | passages | questions | EM % | F1 % | F1 vs few-shot (95% CI) | W/T/L | "
          "general right, adapter | unadapted |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in PROMPTS:
        f1 = {r["passage"]: float(np.mean(r[name]["f1"])) for r in recs}
        d = paired(f1, {r["passage"]: float(np.mean(r["few_shot"]["f1"])) for r in recs})
        em = [e for r in recs for e in r[name]["em"]]
        ga = [g for r in recs for g in r[name]["general_adapter"]]
        gb = [g for r in recs for g in r[name]["general_base"]]
        print(f"| {name} | {len(recs)} | {len(em)} | {100 * np.mean(em):.1f} | "
              f"{100 * np.mean([x for r in recs for x in r[name]['f1']]):.1f} | {d.cell()} | {d.wtl} | "
              f"{sum(ga)}/{len(ga)} | {sum(gb)}/{len(gb)} |")


if __name__ == "__main__":
    main()
