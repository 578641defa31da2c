"""Controls that a measure of knowledge must be checked against, trained like any condition.

- ``format-control``: the passage plus the gold question→answer pairs of a *different*
  train passage. It teaches the answer shape (short spans after a question) and no fact
  of this passage. A measure on which it beats passage-only rewards form, and ReST-EM
  would learn form.
- ``gold-qa``: the passage plus its own gold question→answer pairs (train on test). Only a
  ceiling: it shows how far the measure can move; allowed on the train split only.
- ``open-book``: no update; every question asked with the passage in the prompt (the measure's
  own few-shot short-answer prompt, greedy, SQuAD rules): what the model can answer when it reads.
- ``open-book+form``: the same after the format control's update: the ceiling of closed-book
  learning, which every closed-book condition is also reported as a share of.

All train the pairs exactly as self-QA does (completion-only, in the test's prompt).

**Form equalized** (``with_form``, on by default in ``eval``/``train knowledge``): every update of every
condition adds the format control's pairs (the same donor passage's, in the same order, for
every condition and seed of a passage) after its own data, so the answer form is the same in
all of them and their differences are facts. The format control is then passage+form itself.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace

from .data import Passage, load_passages
from .domain import KnowledgeDomain
from .measure import qa_examples

FORMAT = "format-control"
GOLD_QA = "gold-qa"
OPEN_BOOK = "open-book"
OPEN_BOOK_FORM = "open-book+form"
CONTROLS = {"format": FORMAT, "gold-qa": GOLD_QA, OPEN_BOOK: OPEN_BOOK, OPEN_BOOK_FORM: OPEN_BOOK_FORM}
CEILING = OPEN_BOOK_FORM  # every closed-book condition is also reported as a share of it
FORM = "+form"  # the suffix of a condition whose update is form-equalized
# Train passages the format control takes its pairs from: far from where runs sample
# (ReST-EM draws from the whole split, sweeps from the start, the probe uses 1700–1711).
FORMAT_DONORS = range(1720, 1800)


def format_donor(passage: Passage, donors: list[Passage] | tuple[Passage, ...]) -> Passage:
    """A train passage other than ``passage``, chosen by a hash of its text (stable across runs)."""
    others = [d for d in donors if d.context != passage.context and d.questions]
    return others[int(hashlib.sha256(passage.context.encode()).hexdigest(), 16) % len(others)]


@functools.cache
def form_pool() -> tuple[Passage, ...]:
    """The train passages the format control (and form equalization) draws its donor from."""
    return tuple(load_passages("train", limit=len(FORMAT_DONORS), offset=FORMAT_DONORS.start))


@dataclass
class QAControl(KnowledgeDomain):
    """A knowledge domain whose every update adds gold Q→A pairs after the passage and its
    self-edit: those of ``donors[passage.index]`` (gold-QA: the passage itself), then, with a
    ``form`` pool, those of ``format_donor(passage, form)`` (the format control's: the answer
    form, no fact of the passage), each under its passage's title. ``open_book``: every question
    is asked with the passage in the prompt."""

    donors: dict[int, Passage] = field(default_factory=dict)
    form: tuple[Passage, ...] = ()
    open_book: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.open_book:
            self.measure = replace(self.measure, open_book=True)

    def pair_sources(self, passage: Passage) -> list[Passage]:
        return ([self.donors[passage.index]] if passage.index in self.donors else []) + (
            [format_donor(passage, self.form)] if self.form else [])

    def training_examples(self, passage: Passage, selfedit: str | None):
        return super().training_examples(passage, selfedit) + [
            pair for d in self.pair_sources(passage)
            for pair in qa_examples(self.tokenizer, d.title, [(q.question, q.answer) for q in d.questions])]


def _as_control(domain: KnowledgeDomain, **changes) -> QAControl:
    """``domain``'s settings (and, for a ``QAControl``, its pairs and book) with ``changes``."""
    fields = {k: getattr(domain, k) for k in QAControl.__dataclass_fields__ if hasattr(domain, k)}
    return QAControl(**{**fields, **changes})


def with_form(domain: KnowledgeDomain) -> QAControl:
    """``domain`` form-equalized: every update adds the format control's pairs after its own data."""
    return _as_control(domain, form=form_pool())


def control_domain(control: str, domain: KnowledgeDomain, passages: list[Passage]) -> QAControl:
    """The domain of ``control`` (a key of ``CONTROLS``) for these passages, built on ``domain``
    (form-equalized or not: the form pairs stay)."""
    form = getattr(domain, "form", ())
    if control == "gold-qa":
        return _as_control(domain, donors={p.index: p for p in passages})
    if control in ("format", OPEN_BOOK_FORM):
        if control == "format" and form:
            raise ValueError("under form equalization the format control is passage+form itself")
        return _as_control(domain, form=form_pool(), open_book=control == OPEN_BOOK_FORM)
    if control == OPEN_BOOK:
        return _as_control(domain, open_book=True)
    raise ValueError(f"unknown control {control!r}; choose from {', '.join(CONTROLS)}")
