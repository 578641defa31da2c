"""What an update erases: a fixed probe set, scored after every inner-loop update.

A self-edit that teaches its passage by overwriting what the model knew is a bad self-edit,
and ReST-EM cannot see it if the reward looks only at the passage. The probe asks the
questions of a few other passages without context (does the update disturb facts it was
not about?) and reading-comprehension questions with their passage in context (can the
model still read?), both by the knowledge measure's multiple choice (``mc_prob``).
``--forgetting-penalty λ`` then rewards gain on the passage − λ × the probe's drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..domain import Evaluation, TrainingData
from .data import Passage, load_passages
from .domain import KnowledgeDomain
from .measure import softmax_at_zero

# Train passages held out of the ReST-EM pool when the probe is on (far from where runs sample).
PROBE = range(1700, 1704)  # asked without context
READING = range(1704, 1712)  # asked with the passage in context, first question of each


def probe_passages() -> tuple[list[Passage], list[Passage]]:
    train = load_passages("train")
    return [train[i] for i in PROBE], [train[i] for i in READING]


@dataclass
class ProbedDomain:
    """A knowledge domain whose every evaluation also scores the probe (``extra["probe"]``);
    the item's own score is unchanged."""

    inner: KnowledgeDomain
    recall: list[Passage] = field(default_factory=list)
    reading: list[Passage] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    def item_id(self, item: Passage) -> str:
        return self.inner.item_id(item)

    def selfedit_prompt(self, item: Passage) -> str:
        return self.inner.selfedit_prompt(item)

    def selfedit_constraint(self, item: Passage) -> Any:
        return self.inner.selfedit_constraint(item)

    def training_data(self, item: Passage, selfedit: str | None) -> TrainingData:
        return self.inner.training_data(item, selfedit)

    def probe(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        measure = self.inner.measure
        recall = [softmax_at_zero(lp) for p in self.recall for _, lp in measure.multiple_choice(model, tokenizer, p)]
        reading = [softmax_at_zero(measure.multiple_choice(model, tokenizer, p, in_context=True)[0][1])
                   for p in self.reading]
        parts = [float(np.mean(x)) for x in (recall, reading) if x]
        return {"probe": float(np.mean(parts)) if parts else 0.0,
                "probe_recall": float(np.mean(recall)) if recall else None,
                "probe_reading": float(np.mean(reading)) if reading else None}

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, item: Passage) -> Evaluation:
        ev = self.inner.evaluate(model, tokenizer, item)
        ev.extra.update(self.probe(model, tokenizer))
        return ev
