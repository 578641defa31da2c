"""Controls that a measure of knowledge must be checked against, trained like any condition.

- ``format-control``: the passage plus the gold question→answer pairs of a *different*
  train passage. It teaches the answer shape (short spans after a question) and no fact
  of this passage. A measure on which it beats passage-only rewards form, and ReST-EM
  would learn form.
- ``gold-qa``: the passage plus its own gold question→answer pairs (train on test). Only a
  ceiling: it shows how far the measure can move; allowed on the train split only.

Both train the pairs exactly as self-QA does (completion-only, in the test's prompt).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .data import Passage, load_passages
from .domain import KnowledgeDomain
from .measure import qa_examples

FORMAT = "format-control"
GOLD_QA = "gold-qa"
CONTROLS = {"format": FORMAT, "gold-qa": GOLD_QA}
# Train passages the format control takes its pairs from: far from where runs sample
# (ReST-EM draws from the whole split, sweeps from the start, the probe uses 1700–1711).
FORMAT_DONORS = range(1720, 1800)


def format_donor(passage: Passage, donors: list[Passage]) -> Passage:
    """A train passage other than ``passage``, chosen by a hash of its text (stable across runs)."""
    others = [d for d in donors if d.context != passage.context and d.questions]
    return others[int(hashlib.sha256(passage.context.encode()).hexdigest(), 16) % len(others)]


@dataclass
class QAControl(KnowledgeDomain):
    """A knowledge domain whose item-alone training adds another passage's gold Q→A pairs
    (``donors``: passage index → the passage whose pairs it trains on, under that passage's title)."""

    donors: dict[int, Passage] = field(default_factory=dict)

    def training_examples(self, passage: Passage, selfedit: str | None):
        donor = self.donors[passage.index]
        return [passage.text] + qa_examples(self.tokenizer, donor.title,
                                            [(q.question, q.answer) for q in donor.questions])


def control_domain(control: str, domain: KnowledgeDomain, passages: list[Passage]) -> QAControl:
    """The domain of ``control`` ('format' or 'gold-qa') for these passages."""
    if control == "gold-qa":
        donors = {p.index: p for p in passages}
    else:
        pool = load_passages("train", limit=len(FORMAT_DONORS), offset=FORMAT_DONORS.start)
        donors = {p.index: format_donor(p, pool) for p in passages}
    fields = {k: getattr(domain, k) for k in KnowledgeDomain.__dataclass_fields__}
    return QAControl(**fields, donors=donors)
