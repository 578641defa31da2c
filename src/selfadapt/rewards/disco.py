"""DISCO: domain- and difficulty-aware scaling of GRPO rewards for mixed-domain training.

DISCO (Zhou et al., 2025, "DISCO Balances the Scales: Adaptive Domain- and
Difficulty-Aware Reinforcement Learning on Imbalanced Data"): in a batch mixing domains,
plain GRPO spends most of its updates on the frequent domain, and groups whose outcome
is already certain teach little. DISCO multiplies each group's rewards, before the
group-relative advantage, by

- a domain weight from the domain's share p_d of the training set: ``log(1 + 1/p_d)``
  (the paper's best variant, ``log``) or ``1/p_d`` (``inverse``);
- a difficulty weight ``1 / (SC + eps)`` from the group's self-consistency SC, the share
  of its G rollouts that reached the group's most common outcome (for a 0/1 reward,
  max(p, 1 − p)): an uncertain prompt weighs more than one the policy always (or never)
  solves.

The advantages are then *not* divided by the group's standard deviation (the trainer
sets ``scale_rewards="none"``), which would cancel any per-group scale.
"""

from __future__ import annotations

import math
from collections import Counter

DOMAIN_WEIGHTS = {"log": lambda p: math.log(1 + 1 / p), "inverse": lambda p: 1 / p}


def domain_weights(domains: list[str], variant: str = "log") -> dict[str, float]:
    """Each domain's weight from its share of ``domains`` (one entry per training query)."""
    if variant not in DOMAIN_WEIGHTS:
        raise ValueError(f"unknown DISCO domain weight {variant!r}; choose from {', '.join(DOMAIN_WEIGHTS)}")
    if not domains:
        raise ValueError("DISCO needs the training queries' domains")
    counts = Counter(domains)
    return {d: DOMAIN_WEIGHTS[variant](n / len(domains)) for d, n in counts.items()}


def self_consistency(outcomes: list[float]) -> float:
    """The share of a group's rollouts with its most common outcome (rounded to 6 places)."""
    counts = Counter(round(float(x), 6) for x in outcomes)
    return max(counts.values()) / len(outcomes)


def disco_scales(totals: list[float], domains: list[str], group_size: int, weights: dict[str, float],
                 eps: float = 0.1) -> list[float]:
    """Per rollout, w_dom(its domain) × w_diff(its group); groups are consecutive runs of
    ``group_size`` rollouts, as GRPO lays them out."""
    if len(totals) % group_size or len(domains) != len(totals):
        raise ValueError(f"{len(totals)} rewards and {len(domains)} domains do not form groups of {group_size}")
    out = []
    for start in range(0, len(totals), group_size):
        group = totals[start : start + group_size]
        w_diff = 1 / (self_consistency(group) + eps)
        for d in domains[start : start + group_size]:
            if d not in weights:
                raise ValueError(f"domain {d!r} has no DISCO weight (known: {', '.join(sorted(weights))})")
            out.append(weights[d] * w_diff)
    return out
