"""Verifier-free rewards: the policy's own likelihood of a reference answer."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np

from ..likelihood import Score, completion_scores
from ..models import render_chat
from ..rrr.reflect import answer_prefix, retry_messages
from . import EpisodeReward, token_lengths


def reasoning_perplexity(logprob: float, answer_tokens: int, reasoning_tokens: int) -> float:
    """NOVER's P_r: exp(-Σ log p(answer) / (|answer| · N(|reasoning|))), N(t) = max(1, 1 + log t),
    so a long reasoning is not rewarded merely for being long."""
    norm = max(1.0, 1.0 + math.log(max(1, reasoning_tokens)))
    return math.exp(-logprob / (answer_tokens * norm))


def group_ranks(values: list[float], groups: list[str]) -> list[float]:
    """Within each group, 1.0 for the lowest value and 0.0 for the highest, ties sharing their mean
    rank; a group of one gets 0.5."""
    out = [0.0] * len(values)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    for idx in members.values():
        if len(idx) == 1:
            out[idx[0]] = 0.5
            continue
        v = np.array([values[i] for i in idx])
        for i, x in zip(idx, v):
            below, equal = float((v < x).sum()), float((v == x).sum())
            out[i] = 1.0 - (below + (equal - 1) / 2) / (len(idx) - 1)
    return out


def reference_scores(model, tokenizer, task, queries: list[dict], attempts: list[str], reflections: list[str],
                     prior: str | None = None) -> list[Score]:
    """The model's log-likelihood of each query's reference answer as the retry after the failed
    attempt and the reflection (after the answer prefix the task writes for the model): NOVER's
    signal in training, and ``rrr eval``'s dense measure of a reflection on held-out failures."""
    prefixes = [answer_prefix(task, q) for q in queries]
    pairs = [(render_chat(tokenizer, retry_messages(task, q, a, r, prior)) + p, task.reference(q)[len(p):])
             for q, a, r, p in zip(queries, attempts, reflections, prefixes)]
    return completion_scores(model, tokenizer, pairs)


class NoverReward(EpisodeReward):
    """How much likelier the reflection makes a correct answer, relative to the group.

    NOVER (Liu et al., 2025, "Incentive Training for Language Models via Verifier-Free
    Reinforcement Learning"): the policy itself scores the reference answer (Countdown:
    a solver's expression; function calling: the gold call) as the retry after the
    failed episode and this reflection; the reward is the reflection's rank by that
    reasoning perplexity within its group of G reflections for the same query. Dense and
    verifier-free: a reflection that brings the right answer closer is rewarded even when
    the greedy retry still fails.
    """

    __name__ = "nover"

    def score(self, queries, attempts, reflections):
        ctx = self.ctx
        t0 = time.perf_counter()
        scores = reference_scores(ctx.policy(), ctx.tokenizer, ctx.task, queries, attempts, reflections, ctx.prior)
        lengths = token_lengths(ctx.tokenizer, reflections)
        perplexity = [reasoning_perplexity(s.logprob, s.tokens, n) for s, n in zip(scores, lengths)]
        values = group_ranks(perplexity, [q["id"] for q in queries])
        ctx.seconds["nover"] += time.perf_counter() - t0
        return values, [{"id": q["id"], "value": x, "perplexity": p, "reflection": r}
                        for q, x, p, r in zip(queries, values, perplexity, reflections)]
