"""What a domain (knowledge, ARC, ...) provides to the shared SEAL loops.

The inner loop and the outer loops only ever call these methods, so a new domain
is one class, not a copy of the loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from transformers import PreTrainedModel, PreTrainedTokenizerBase


class InvalidSelfEdit(ValueError):
    """A self-edit that yields no training data; it earns reward 0 with this reason."""


class ItemError(ValueError):
    """An item that cannot be evaluated at all (e.g. a passage with no questions)."""


@dataclass
class Evaluation:
    """A score in [0, 1] and one record per graded question/test."""

    score: float
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an LLM judge's score


@dataclass
class TrainingData:
    """What one self-edit trains on: texts or (prompt, completion) pairs, and optional
    per-self-edit overrides of the LoRA learning rate and epochs (ARC self-edits choose them)."""

    examples: list[str | tuple[str, str]]
    lr: float | None = None
    epochs: int | None = None


class Domain(Protocol):
    name: str

    def item_id(self, item: Any) -> str:
        """A stable id used as the resume key."""

    def selfedit_prompt(self, item: Any) -> str:
        """The prompt (chat template applied) that asks the model for a self-edit."""

    def selfedit_constraint(self, item: Any) -> Callable[[list[int]], list[int]] | None:
        """Constrained decoding: the tokens generated so far → the token ids allowed next (None: free).
        Called once per sampled row, so a constraint may keep state."""

    def training_data(self, item: Any, selfedit: str | None) -> TrainingData:
        """Training data from a self-edit (``None``: the item alone). Raises InvalidSelfEdit."""

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, item: Any) -> Evaluation:
        """Score the (possibly adapted) model on the item, without the item in context."""
