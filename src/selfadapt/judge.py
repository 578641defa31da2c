"""LLM judges, and TinyV's rule-first fallback to one.

A judge says whether a response answers a question as the gold answer does, for
(question, gold, response) triples:
- ``LLMJudge``: an OpenAI-compatible chat endpoint (the SEAL paper's grader);
- ``LocalJudge``: any model spec, loaded here. Its verdict compares the log-likelihoods of
  the replies "yes" and "no" (margin above a threshold, 0 by default), so there is
  nothing to parse and no refusal to handle.

``fallback`` is TinyV (Xu et al., 2025, "TinyV: Reducing False Negatives in Verification
Improves RL for LLM Reasoning"): rule verifiers reject correct answers worded
differently, and a false negative withholds reward from a correct rollout. The rule
decides first; only its negatives go to the judge, whose "yes" flips the verdict. Each
result keeps both verdicts, so every flip can be inspected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .likelihood import completion_scores
from .models import LoadedModel, chat_prompt, load_model
from .runs import read_jsonl


class Judge(Protocol):
    def judge(self, items: list[tuple[str, str, str]]) -> list[bool | JudgeError]: ...


class JudgeError(RuntimeError):
    """The judge could not give a verdict; callers record it, never score it as wrong."""


JUDGE_PROMPT = (
    "You grade answers.\n"
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
            for _, entry in read_jsonl(Path(cfg.cache_path), partial_last=True):
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


YES, NO = ("yes", "Yes"), ("no", "No")


class LocalJudge:
    """A judge from a model spec (the embedded model, an HF id, a local path), run in this process.

    Its margin is log p("yes") − log p("no") as the reply; the verdict is margin >
    ``threshold``. A small model's margins are biased, so ``threshold`` can be set from
    answers known to be right and wrong (``benchmarks/tinyv_flips.py --calibrate``).
    """

    def __init__(self, model: str | LoadedModel, *, threshold: float = 0.0, dtype: str = "auto",
                 device: str = "auto", batch_size: int = 32):
        self.m = load_model(model, dtype=dtype, device=device) if isinstance(model, str) else model
        self.threshold, self.batch_size = threshold, batch_size

    def margins(self, items: list[tuple[str, str, str]]) -> list[float]:
        tok = self.m.tokenizer
        prompts = [chat_prompt(tok, JUDGE_PROMPT.format(question=q, gold=g, response=r)) for q, g, r in items]
        words = YES + NO
        scores = iter(completion_scores(self.m.model, tok, [(p, w) for p in prompts for w in words], self.batch_size))
        out = []
        for _ in prompts:
            lp = [next(scores).logprob for _ in words]
            out.append(float(np.logaddexp(*lp[: len(YES)]) - np.logaddexp(*lp[len(YES):])))
        return out

    def judge(self, items: list[tuple[str, str, str]]) -> list[bool | JudgeError]:
        return [m > self.threshold for m in self.margins(items)]


def make_judge(model: str | None, url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
               cache_path: Path | None = None, *, threshold: float = 0.0, dtype: str = "auto",
               device: str = "auto") -> Judge | None:
    """An endpoint judge when ``url`` is given (``model`` names the endpoint's model), else a
    local one loaded from the ``model`` spec; None without a model."""
    if url and not model:
        raise ValueError("an endpoint judge (judge URL) needs the judge's model name")
    if not model:
        return None
    if url:
        return LLMJudge(JudgeConfig(url, model, api_key_env, cache_path=cache_path))
    return LocalJudge(model, threshold=threshold, dtype=dtype, device=device)


def fallback(rule: list[bool], items: list[tuple[str, str, str]], judge: Judge) -> list[dict[str, Any]]:
    """TinyV: per item ``{"rule", "judge", "correct", "flip"}``; the judge is asked only where the
    rule said no (``judge`` is None elsewhere, and on a judge failure, whose error is kept)."""
    if len(rule) != len(items):
        raise ValueError(f"{len(rule)} rule verdicts for {len(items)} items")
    asked = [i for i, ok in enumerate(rule) if not ok]
    verdicts = judge.judge([items[i] for i in asked]) if asked else []
    out: list[dict[str, Any]] = [{"rule": bool(ok), "judge": None, "correct": bool(ok), "flip": False} for ok in rule]
    for i, v in zip(asked, verdicts):
        if isinstance(v, bool):
            out[i].update(judge=v, correct=v, flip=v)
        else:
            out[i]["judge_error"] = str(v)
    return out
