"""Rewards a checker decides."""

from __future__ import annotations

import time

from ..generation import generate
from ..models import render_chat
from ..rrr.reflect import retry_messages
from . import EpisodeReward


class RetryReward(EpisodeReward):
    """1.0 if the retry written after this reflection passes the task's verifier, else 0.0.

    Reflect, Retry, Reward (Bensal et al., 2025): the reflection is the completion being
    trained; the retry is generated here, greedily, by the current policy with the
    reflection in context, so its tokens never enter the trainer's batch.
    """

    __name__ = "retry"

    def score(self, queries, attempts, reflections):
        ctx = self.ctx
        t0 = time.perf_counter()
        chats = [render_chat(ctx.tokenizer, retry_messages(ctx.task, q, a, r, ctx.prior))
                 for q, a, r in zip(queries, attempts, reflections)]
        retries = generate(ctx.policy(), ctx.tokenizer, chats, ctx.retry)
        t1 = time.perf_counter()
        verdicts = [ctx.task.verify(q, r) for q, r in zip(queries, retries)]
        ctx.seconds["retry_generation"] += t1 - t0
        ctx.seconds["verify"] += time.perf_counter() - t1
        values = [1.0 if v.correct else 0.0 for v in verdicts]
        return values, [{"id": q["id"], "value": x, "reflection": refl, "retry": retry, "reason": v.reason}
                        for q, x, refl, retry, v in zip(queries, values, reflections, retries, verdicts)]
