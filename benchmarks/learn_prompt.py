"""Which prompt should `ask` put a question in, for a learned adapter? (RESULTS.md,
"Self-distillation: general answers replayed")

`learn` trains its Q→A examples on the zero-shot prompt (``qa_prompt``: system line, topic,
question) while `ask` answered in the few-shot prompt (``short_answer_prompt``: three worked
examples first), a train/test mismatch. Here one adapter per SQuAD train passage (as
`learn` makes it) answers the passage's questions and the general probe in both prompts,
paired by passage; the unadapted model answers the probe in both too. Settings as in
``learn_documents.py`` (check questions and the probe inside `learn` are off: this script asks
its own). Records go to ``--out`` as they finish; rerunning resumes.

    python benchmarks/learn_prompt.py --out benchmarks/runs/learn30/prompt.jsonl --passages 4 \
        --setting fast4:distill=0,reading=2,epochs=4,lr=2.5e-3 \
        --setting fast4d16:distill=16,reading=2,epochs=4,lr=2.5e-3
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from learn_documents import config, parse_setting, run_settings  # benchmarks/ is the script's directory

from selfadapt.evaluate import paired
from selfadapt.generation import SamplingConfig, generate
from selfadapt.grading import contains, grade
from selfadapt.knowledge import load_passages
from selfadapt.knowledge.domain import ANSWER_CAP
from selfadapt.knowledge.general import general_questions
from selfadapt.knowledge.measure import qa_prompt, short_answer_prompt
from selfadapt.lora import load_adapter
from selfadapt.models import load_model
from selfadapt.teaching import LearnConfig, learn

PROMPTS = {"few_shot": short_answer_prompt, "zero_shot": qa_prompt}
FAST4 = "fast4:distill=0,reading=2,epochs=4,lr=2.5e-3"


def answers(model, tokenizer, title: str, questions: list[str], prompt) -> list[str]:
    out = generate(model, tokenizer, [prompt(tokenizer, title, q) for q in questions],
                   SamplingConfig(ANSWER_CAP, 0.0, 1.0, 8))
    return [a.split("\n")[0].strip() for a in out]


def run(passage, setting: str, cfg: LearnConfig, model: str) -> dict:
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
        rec = {"passage": passage.index, "setting": setting, "seconds": seconds}
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
    ap.add_argument("--setting", action="append", help="NAME[:knob=value,...] as in learn_documents.py "
                    f"(default {FAST4}: the learn30 fast4 setting); the first is the reference")
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument("--offset", type=int, default=600, help="the learn30 benchmark's train passages")
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()
    settings = [parse_setting(s) for s in args.setting or [FAST4]]
    done = run_settings(args.out, settings, load_passages("train", limit=args.passages, offset=args.offset),
                        lambda p, name, knobs: run(p, name, replace(config(args.model, knobs), check="none",
                                                                    probe=False), args.model),
                        lambda r: f"EM few-shot {np.mean(r['few_shot']['em']):.2f} zero-shot "
                                  f"{np.mean(r['zero_shot']['em']):.2f} in {r['seconds']:.0f} s")
    ref = (settings[0][0], "few_shot")
    by = {(name, prompt): {i: r for (i, s), r in done.items() if s == name}
          for name, _ in settings for prompt in PROMPTS}
    common = set.intersection(*(set(v) for v in by.values()))
    print(f"\n{len(common)} passages with every setting; paired by passage against {ref[0]}, few-shot.\n")
    print("| setting | prompt | questions | EM % | F1 % | F1 vs reference (95% CI) | W/T/L | "
          "general right, adapter | unadapted |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, prompt), recs in by.items():
        recs = {i: recs[i] for i in common}
        f1 = {i: float(np.mean(r[prompt]["f1"])) for i, r in recs.items()}
        d = paired(f1, {i: float(np.mean(by[ref][i][ref[1]]["f1"])) for i in common})
        em = [e for r in recs.values() for e in r[prompt]["em"]]
        ga = [g for r in recs.values() for g in r[prompt]["general_adapter"]]
        gb = [g for r in recs.values() for g in r[prompt]["general_base"]]
        print(f"| {name} | {prompt} | {len(em)} | {100 * np.mean(em):.1f} | "
              f"{100 * np.mean([x for r in recs.values() for x in r[prompt]['f1']]):.1f} | {d.cell()} | {d.wtl} | "
              f"{sum(ga)}/{len(ga)} | {sum(gb)}/{len(gb)} |")


if __name__ == "__main__":
    main()
