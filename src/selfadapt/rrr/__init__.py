"""Reflect, Retry, Reward: verifiable tasks whose answers are checked by parsing, never by running."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
