"""Grading a short answer against gold: SQuAD v1.1 metrics and containment.

Exact match and token F1 follow the official SQuAD v1.1 evaluation script rule for rule
(including F1 = 0 when either side normalises to nothing). ``contains`` (the gold answer
appears in the response on word boundaries) is kept as a side metric: on its own a
recital of the passage passes it, so it is never the reward (see knowledge/measure.py).
LLM judges are in ``judge.py``.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(response: str, gold: str) -> float:
    return float(normalize_answer(response) == normalize_answer(gold))


def token_f1(response: str, gold: str) -> float:
    pred, ref = normalize_answer(response).split(), normalize_answer(gold).split()
    same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if same == 0:  # also when either side is empty, as in the official script
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains(response: str, gold: str) -> float:
    """Gold contained in the response, on word boundaries ("4" is not in "1945")."""
    ref = normalize_answer(gold)
    if not ref:
        return 0.0
    return float(f" {ref} " in f" {normalize_answer(response)} ")


@dataclass
class Grade:
    exact_match: float
    f1: float
    contains: float


def metric_max_over_ground_truths(metric: Callable[[str, str], float], response: str,
                                  golds: str | Sequence[str]) -> float:
    """The official script's rule for a question with several gold answers: the best over them."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("no gold answer to grade against")
    return max(metric(response, gold) for gold in golds)


def grade(response: str, gold: str | Sequence[str]) -> Grade:
    """Each metric against one gold answer, or the best over several (as SQuAD's script does)."""
    return Grade(*(metric_max_over_ground_truths(m, response, gold) for m in (exact_match, token_f1, contains)))
