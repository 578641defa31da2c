"""Length shaping: LASER's step reward, and LASER-D's adaptive, difficulty-aware target.

LASER (Liu et al., 2025, "Learn to Reason Efficiently with Adaptive Length-based Reward
Shaping"): a correct completion no longer than a target length earns a step bonus. It is
composed with the correctness reward (``--reward retry=1 --reward laser=0.5``), so a
correct but long reflection still earns the correctness part and only loses the bonus.

LASER-D: one fixed target is too tight for hard queries and too loose for easy ones, and
the right length moves as the policy learns. Queries are put in a difficulty bucket by
their group's accuracy (easy ≥ 2/3, hard < 1/3, else medium); each bucket's target is the
shortest length on a grid at which its recent rollouts would still give ``coverage``
correct completions per group in expectation (G · P(correct ∧ length ≤ L) ≥ coverage).
Easy queries, solved briefly, get short targets; hard ones keep room. The same shaping
applies to self-edits in ReST-EM (``restem.self_edit_rewards``), a group being an item's k
self-edits and "correct" a positive gain.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from . import EpisodeReward, token_lengths
from .verifier import retry_verdicts, verdict_value


def laser(lengths: list[int], correct: list[bool], target: int | list[int]) -> list[float]:
    """1.0 for a correct completion of at most ``target`` tokens (one target, or one each), else 0.0."""
    targets = target if isinstance(target, list) else [target] * len(lengths)
    return [1.0 if ok and n <= t else 0.0 for n, ok, t in zip(lengths, correct, targets)]


BUCKETS = ("easy", "medium", "hard")


def bucket(accuracy: float) -> str:
    return "easy" if accuracy >= 2 / 3 else "hard" if accuracy < 1 / 3 else "medium"


@dataclass
class AdaptiveTarget:
    """LASER-D's per-bucket targets, updated from each batch of groups (length, correct)."""

    grid: tuple[int, ...] = (16, 32, 48, 64, 96, 128)
    coverage: float = 1.0  # expected correct completions per group within the target
    window: int = 256  # recent rollouts kept per bucket
    history: dict[str, list[tuple[int, bool]]] = field(default_factory=lambda: defaultdict(list))
    targets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.grid or list(self.grid) != sorted(self.grid) or self.grid[0] < 1:
            raise ValueError(f"the length grid must be increasing positive lengths, got {self.grid}")
        if self.coverage <= 0 or self.window < 1:
            raise ValueError("coverage must be > 0 and window >= 1")

    def target(self, name: str) -> int:
        """A bucket's target; the longest grid length until the bucket has been seen."""
        return self.targets.get(name, self.grid[-1])

    def update(self, groups: list[list[tuple[int, bool]]]) -> list[str]:
        """Add a batch of groups, move the targets of the buckets they fall in; returns each group's bucket."""
        names = []
        for g in groups:
            name = bucket(float(np.mean([ok for _, ok in g])))
            names.append(name)
            h = self.history[name]
            h.extend(g)
            del h[: -self.window]
            size = len(g)
            self.targets[name] = next(
                (L for L in self.grid if size * np.mean([ok and n <= L for n, ok in h]) >= self.coverage),
                self.grid[-1])
        return names


class LaserReward(EpisodeReward):
    """LASER on reflections: 1 if the retry after the reflection is correct and the reflection
    is at most ``RewardContext.laser_target`` tokens long."""

    __name__ = "laser"

    def score(self, queries, attempts, reflections):
        rows = retry_verdicts(self.ctx, queries, attempts, reflections)
        lengths = token_lengths(self.ctx.tokenizer, reflections)
        values = [verdict_value(r, x) for r, x in zip(rows, laser(lengths, [r["correct"] for r in rows],
                                                                   self.ctx.laser_target))]
        return values, [{"id": q["id"], "value": x, "length": n, "target": self.ctx.laser_target}
                        for q, x, n in zip(queries, values, lengths)]


class LaserDReward(EpisodeReward):
    """LASER-D on reflections: LASER with the target of the group's difficulty bucket, which
    moves with the groups seen so far (``AdaptiveTarget``; grid up to the reflection cap)."""

    __name__ = "laser-d"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.targets = AdaptiveTarget(ctx.length_grid)

    def score(self, queries, attempts, reflections):
        rows = retry_verdicts(self.ctx, queries, attempts, reflections)
        t0 = time.perf_counter()
        lengths = token_lengths(self.ctx.tokenizer, reflections)
        members: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(queries):
            members[q["id"]].append(i)
        groups = list(members.values())
        names = self.targets.update([[(lengths[i], rows[i]["correct"]) for i in g] for g in groups])
        bucket_of = {i: name for g, name in zip(groups, names) for i in g}
        target = [self.targets.target(bucket_of[i]) for i in range(len(queries))]
        values = [verdict_value(r, x) for r, x in zip(rows, laser(lengths, [r["correct"] for r in rows], target))]
        self.ctx.seconds["laser-d"] += time.perf_counter() - t0
        return values, [{"id": q["id"], "value": x, "length": n, "target": t, "bucket": bucket_of[i]}
                        for i, (q, x, n, t) in enumerate(zip(queries, values, lengths, target))]
