"""Rewards a checker decides."""

from __future__ import annotations

import time
from typing import Any

from ..judge import fallback
from ..rrr.reflect import answer, retry_messages
from . import EpisodeReward, RewardContext


def verdict_value(row: dict[str, Any], value: float) -> float | None:
    """``value`` for a judged rollout; None where the judge call failed: no verdict is not a
    wrong one, and TRL leaves a None out of the group's baseline (advantage 0)."""
    return None if row.get("judge_error") else value


def retry_verdicts(ctx: RewardContext, queries: list[dict], attempts: list[str], reflections: list[str]
                   ) -> list[dict[str, Any]]:
    """Per rollout: the retry written after the reflection (by the current policy, or TRL's vLLM
    copy of it synced this step, sampled as ``ctx.retry`` says: greedy unless ``--retry-temperature``) and
    whether it is correct. Rewards of one step share it (the last batch is kept on the context),
    so ``retry`` and ``laser`` together generate each retry once.

    With a judge on the context (TinyV), a retry the verifier rejects is judged against the
    task's reference answer; both verdicts are kept.
    """
    key = tuple((q["id"], a, r) for q, a, r in zip(queries, attempts, reflections))
    if ctx.last_retries is not None and ctx.last_retries[0] == key:
        return ctx.last_retries[1]
    t0 = time.perf_counter()
    retries = answer(ctx.engine or ctx.policy(), ctx.tokenizer, ctx.task, queries,
                     [retry_messages(ctx.task, q, a, r, ctx.prior) for q, a, r in zip(queries, attempts, reflections)],
                     ctx.retry, failed=attempts)
    t1 = time.perf_counter()
    verdicts = [ctx.task.verify(q, r) for q, r in zip(queries, retries)]
    out = [{"retry": retry, "correct": v.correct, "reason": v.reason} for retry, v in zip(retries, verdicts)]
    ctx.seconds["retry_generation"] += t1 - t0
    ctx.seconds["verify"] += time.perf_counter() - t1
    if ctx.judge is not None:
        t2 = time.perf_counter()
        items = [(ctx.task.messages(q)[-1]["content"], ctx.task.reference(q), retry)
                 for q, retry in zip(queries, retries)]
        for row, v in zip(out, fallback([row["correct"] for row in out], items, ctx.judge)):
            row.update(correct=v["correct"], rule=v["rule"], judge=v["judge"], flip=v["flip"])
            if "judge_error" in v:
                row["judge_error"] = v["judge_error"]
        ctx.seconds["judge"] += time.perf_counter() - t2
    ctx.last_retries = (key, out)
    return out


class RetryReward(EpisodeReward):
    """1.0 if the retry written after this reflection passes the task's verifier, else 0.0.

    Reflect, Retry, Reward (Bensal et al., 2025): the reflection is the completion being
    trained; the retry is generated here, greedily, by the current policy with the
    reflection in context, so its tokens never enter the trainer's batch.
    """

    __name__ = "retry"

    def score(self, queries, attempts, reflections):
        rows = retry_verdicts(self.ctx, queries, attempts, reflections)
        values = [verdict_value(row, 1.0 if row["correct"] else 0.0) for row in rows]
        return values, [{"id": q["id"], "value": x, "reflection": refl, **row}
                        for q, x, refl, row in zip(queries, values, reflections, rows)]
