"""Is a taught question answered in the prompt it was trained in, or in `ask`'s old few-shot prompt?
(RESULTS.md, "A taught question asked in the prompt it was trained in")

For each of a `learn` adapter's check questions (taught cloze pairs, ``checks.json``): the loss of the
taught answer and the greedy answer, in the zero-shot Q→A prompt the pairs train in (``qa_prompt``) and
in the few-shot prompt (``short_answer_prompt``), on the same adapter; then how many each gets right.

    selfadapt learn benchmarks/data/kessel_valley_line.txt --out /tmp/kessel
    python benchmarks/learn_taught_prompt.py /tmp/kessel
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from selfadapt.generation import SamplingConfig, generate
from selfadapt.knowledge.general import short_answers
from selfadapt.knowledge.measure import qa_prompt, short_answer_prompt
from selfadapt.lora import load_adapter
from selfadapt.models import EMBEDDED, encode_text, load_model


def answer_loss(net, tok, prompt: str, completion: str) -> float:
    """Mean cross-entropy of ``completion`` after ``prompt``."""
    p, c = encode_text(tok, prompt), tok(completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = net(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1:-1].float()
    return torch.nn.functional.cross_entropy(logits, torch.tensor(c)).item()


def main(out: Path) -> None:
    checks = json.loads((out / "checks.json").read_text())
    loaded = load_model(EMBEDDED)
    tok = loaded.tokenizer
    net = load_adapter(loaded.model, out).eval()
    zero = [qa_prompt(tok, c["title"], c["question"]) for c in checks]
    few = [short_answer_prompt(tok, c["title"], c["question"]) for c in checks]
    greedy_zero = [a.split("\n")[0].strip() for a in generate(net, tok, zero, SamplingConfig(24, 0.0, 1.0, 8))]
    greedy_few = short_answers(net, tok, [(c["title"], c["question"]) for c in checks])
    for c, z, f, gz, gf in zip(checks, zero, few, greedy_zero, greedy_few):
        gold = c["expected"] + tok.eos_token
        print(f"{c['question']!r} expected {c['expected']!r}: loss zero-shot {answer_loss(net, tok, z, gold):.3f}, "
              f"few-shot {answer_loss(net, tok, f, gold):.3f}; greedy zero-shot {gz!r}, few-shot {gf!r}")
    right = [sum(c["expected"].lower() in g.lower() for c, g in zip(checks, answers))
             for answers in (greedy_zero, greedy_few)]
    print(f"right zero-shot: {right[0]}, few-shot: {right[1]}, of {len(checks)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
