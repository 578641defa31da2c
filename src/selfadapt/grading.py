"""Grading a short answer against gold: SQuAD v1.1 metrics, containment, and an optional LLM judge.

Exact match and token F1 follow the official SQuAD v1.1 evaluation script rule for rule
(including F1 = 0 when either side normalises to nothing). ``contains`` (the gold answer
appears in the response on word boundaries) is kept as a side metric: on its own a
recital of the passage passes it, so it is never the reward (see knowledge/measure.py).
The LLM judge (as in the SEAL paper) is opt-in.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import string
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


def grade(response: str, gold: str) -> Grade:
    return Grade(exact_match(response, gold), token_f1(response, gold), contains(response, gold))


class JudgeError(RuntimeError):
    """The judge could not give a verdict; callers record it, never score it as wrong."""


JUDGE_PROMPT = (
    "You grade answers to reading-comprehension questions.\n"
    "Question: {question}\nGold answer: {gold}\nStudent answer: {response}\n\n"
    "Is the student's answer correct, meaning it states the same fact as the gold answer "
    "(wording may differ, extra detail is fine, a wrong or missing fact is not)? "
    "Reply with exactly one word: yes or no."
)


@dataclass
class JudgeConfig:
    """An OpenAI-compatible chat endpoint. The API key is read from ``api_key_env``."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 3
    timeout_s: float = 60.0
    cache_path: Path | None = None


class LLMJudge:
    """Grades with a chat model; verdicts are cached on disk by (model, prompt) hash."""

    def __init__(self, cfg: JudgeConfig):
        from openai import OpenAI  # imported here: only judge users need the client

        self.cfg = cfg
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=os.environ.get(cfg.api_key_env, "none"),
            max_retries=cfg.max_retries,
            timeout=cfg.timeout_s,
        )
        self._lock = threading.Lock()
        self._cache: dict[str, bool] = {}
        if cfg.cache_path and Path(cfg.cache_path).exists():
            for line in Path(cfg.cache_path).read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._cache[entry["key"]] = entry["verdict"]

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.cfg.model}\n{prompt}".encode()).hexdigest()

    def _ask(self, prompt: str) -> bool:
        key = self._key(prompt)
        if key in self._cache:
            return self._cache[key]
        try:
            reply = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=4,
            )
            text = (reply.choices[0].message.content or "").strip().lower()
        except Exception as e:  # the client has already retried; report, don't guess
            raise JudgeError(f"judge request failed: {e.__class__.__name__}: {e}") from e
        word = re.match(r"[a-z]+", text)
        if not word or word.group() not in ("yes", "no"):
            raise JudgeError(f"judge replied {text!r}, expected yes or no")
        verdict = word.group() == "yes"
        with self._lock:
            self._cache[key] = verdict
            if self.cfg.cache_path:
                with open(self.cfg.cache_path, "a") as f:
                    f.write(json.dumps({"key": key, "verdict": verdict}) + "\n")
        return verdict

    def judge(self, items: list[tuple[str, str, str]]) -> list[bool | JudgeError]:
        """Verdicts for (question, gold, response) triples; a failure comes back as the error."""

        def one(item: tuple[str, str, str]) -> bool | JudgeError:
            question, gold, response = item
            try:
                return self._ask(JUDGE_PROMPT.format(question=question, gold=gold, response=response))
            except JudgeError as e:
                return e

        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(one, items))
