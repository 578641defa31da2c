"""Attempt → verify → on failure reflect → retry with the reflection in context → verify.

The three conversations are built here and nowhere else, so evaluation and GRPO
training see exactly the same prompts: the GRPO prompt is ``reflect_messages`` and the
reward's retry is ``retry_messages``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..constrained import GrammarConstraint
from ..generation import SamplingConfig, generate
from ..models import render_chat
from ..prior import with_prior
from ..vllm_backend import VLLMSampler
from .tasks import Task

REFLECT = ("Your answer was wrong. Reflect on what went wrong and write a short explanation that will help "
           "you get it right next time. Write only the reflection, not a new answer.")
RETRY = "Now try again, using your reflection. Answer in the same format as asked before."


def retry_request(task: Task, query: dict[str, Any]) -> str:
    """The retry turn restates the task: a small model, asked only to "try again", answers
    the reflection (apologies, advice) instead of the task and drops the answer format."""
    return f"{RETRY}\n\n{task.messages(query)[-1]['content']}"


def reflect_messages(task: Task, query: dict[str, Any], attempt: str, prior: str | None = None
                     ) -> list[dict[str, str]]:
    """The failed attempt, then the request for a reflection (after the prior prompt ``prior``, if any)."""
    return [*task.messages(query), {"role": "assistant", "content": attempt},
            {"role": "user", "content": with_prior(REFLECT, prior)}]


def retry_messages(task: Task, query: dict[str, Any], attempt: str, reflection: str, prior: str | None = None
                   ) -> list[dict[str, str]]:
    return [*reflect_messages(task, query, attempt, prior), {"role": "assistant", "content": reflection},
            {"role": "user", "content": retry_request(task, query)}]


@dataclass
class ReflectConfig:
    """Sampling for each of the three turns; greedy by default so before/after runs compare like for like."""

    answer: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=192, temperature=0.0,
                                                                          batch_size=16))
    reflection: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=96, temperature=0.0,
                                                                              batch_size=16))
    prior: str | None = None  # a prior prompt before the reflection request (``selfadapt.prior``)
    retry: SamplingConfig | None = None  # the retry's sampling (None: as the first attempt's)


def answer_prefix(task: Task, query: dict[str, Any]) -> str:
    """What every answer to ``query`` starts with, written for the model (a task's ``prefill``
    knob); empty for tasks without one."""
    prefix = getattr(task, "prefix", None)
    return prefix(query) if prefix else ""


def answer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task, queries: list[dict[str, Any]],
           conversations: list[list[dict[str, str]]], cfg: SamplingConfig, *, seed: int | None = None,
           failed: list[str] | None = None) -> list[str]:
    """The model's answer turn of each conversation, after the task's answer prefix, and under
    the task's answer grammar if it has one (every attempt and retry goes through here). A
    retry passes the ``failed`` attempts, for the task's retry grammar. ``model`` is a transformers
    model or a ``VLLMSampler`` (GRPO's retries under ``--backend vllm``)."""
    prefixes = [answer_prefix(task, q) for q in queries]
    prompts = [render_chat(tokenizer, c) + p for c, p in zip(conversations, prefixes)]
    grammar, retry_grammar = getattr(task, "grammar", None), getattr(task, "retry_grammar", None)
    if failed is not None and retry_grammar:
        grammars = [retry_grammar(q, a) for q, a in zip(queries, failed)]
    else:
        grammars = [grammar(q) for q in queries] if grammar else []
    constraints = ([GrammarConstraint(tokenizer, g, p) if g else None for g, p in zip(grammars, prefixes)]
                   if any(grammars) else None)
    sample = model.generate if isinstance(model, VLLMSampler) else functools.partial(generate, model, tokenizer)
    outs = sample(prompts, cfg, seed=seed, constraints=constraints)
    return [p + out for p, out in zip(prefixes, outs)]


def attempt(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task, queries: list[dict[str, Any]],
            cfg: SamplingConfig, *, seed: int | None = None) -> list[str]:
    """One first attempt per query."""
    return answer(model, tokenizer, task, queries, [task.messages(q) for q in queries], cfg, seed=seed)


def reflect_and_retry(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
                      queries: list[dict[str, Any]], cfg: ReflectConfig, *, seed: int = 0
                      ) -> list[dict[str, Any]]:
    """A record per query: the first attempt, and for failures the reflection and the retry.

    ``second_correct`` is "solved within two attempts" (true when the first attempt was right),
    the paper's second-attempt accuracy.
    """
    answers = attempt(model, tokenizer, task, queries, cfg.answer, seed=seed)
    records = []
    for q, a in zip(queries, answers):
        v = task.verify(q, a)
        records.append({"id": q["id"], "attempt": a, "first_correct": v.correct, "first_reason": v.reason,
                        "second_correct": v.correct})
    failed = [i for i, r in enumerate(records) if not r["first_correct"]]
    reflect_prompts = [render_chat(tokenizer, reflect_messages(task, queries[i], answers[i], cfg.prior))
                       for i in failed]
    reflections = generate(model, tokenizer, reflect_prompts, cfg.reflection, seed=seed + 1)
    retries = answer(model, tokenizer, task, [queries[i] for i in failed],
                     [retry_messages(task, queries[i], answers[i], r, cfg.prior) for i, r in zip(failed, reflections)],
                     cfg.retry or cfg.answer, seed=seed + 2, failed=[answers[i] for i in failed])
    for i, reflection, retry in zip(failed, reflections, retries):
        v = task.verify(queries[i], retry)
        records[i].update(reflection=reflection, retry=retry, second_correct=v.correct, second_reason=v.reason)
    return records


def accuracy(records: list[dict[str, Any]]) -> dict[str, float]:
    n = len(records)
    if not n:
        return {"n": 0, "first": 0.0, "second": 0.0}
    return {"n": n, "first": sum(r["first_correct"] for r in records) / n,
            "second": sum(r["second_correct"] for r in records) / n}
