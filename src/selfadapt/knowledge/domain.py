"""Knowledge incorporation as a SEAL domain: learn a passage, answer its questions without it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..domain import Evaluation, InvalidSelfEdit, ItemError, TrainingData
from ..generation import SamplingConfig
from ..grading import contains, normalize_answer
from ..judge import Judge, fallback
from ..lora import Example
from ..metric import METRIC, absolute, check_metric
from ..models import chat_prompt
from ..prior import check_prior, with_prior
from .data import Passage
from .grounded import Constraint, SpanQA, Static, allowed_token_ids, has_content
from .measure import REWARD_METRIC, KnowledgeMeasure, qa_examples
from .selfedit import DEFAULT_DECODING, DEFAULT_FORMAT, FORMATS, selfedit_instruction, selfedit_items

ANSWER_CAP = 12  # tokens of a short answer; also the length of the recital control


@dataclass
class KnowledgeDomain:
    tokenizer: PreTrainedTokenizerBase
    fmt: str = DEFAULT_FORMAT
    include_passage: bool = True
    answer: SamplingConfig = field(default_factory=lambda: SamplingConfig(ANSWER_CAP, temperature=0.0, batch_size=16))
    judge: Judge | None = None  # TinyV fallback for short answers that exact match rejects
    grounded: bool = DEFAULT_DECODING == "grounded"
    prior: str | None = None  # a prior prompt before the self-edit instruction (``selfadapt.prior``)
    metric: str | None = None  # your own per-question score in place of exact match (``selfadapt.metric``)
    name: str = "knowledge"

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown self-edit format {self.fmt!r}; choose from {', '.join(FORMATS)}")
        check_prior(self.prior)
        check_metric(self.metric)
        self.metric = absolute(self.metric)  # a spec, not a function: it travels to workers as it is
        self.measure = KnowledgeMeasure(self.answer, metric=self.metric)

    @property
    def score_key(self) -> str:
        """The per-question value an item's score is the mean of: exact match, or the custom metric's."""
        return REWARD_METRIC if self.metric is None else METRIC

    def item_id(self, passage: Passage) -> str:
        return f"p{passage.index}"

    def selfedit_prompt(self, passage: Passage) -> str:
        return chat_prompt(self.tokenizer, with_prior(selfedit_instruction(self.fmt, passage.title, passage.context),
                                                      self.prior))

    def selfedit_constraint(self, passage: Passage) -> Constraint | None:
        """Grounded decoding (see ``grounded.py``): self-QA answers copy passage spans, other
        formats use only the passage's words. None when free."""
        if not self.grounded:
            return None
        if self.fmt == "self-qa":
            return SpanQA(self.tokenizer, passage.context)
        return Static(allowed_token_ids(self.tokenizer, [passage.title, passage.context]))

    def training_examples(self, passage: Passage, selfedit: str | None) -> list[Example]:
        """The passage text, then the self-edit's items. Q&A pairs are (prompt, completion) in the
        exact chat shape of the test, so the loss falls on the answer only: as one string, the
        system turn, template and question carried most of the trained tokens."""
        examples: list[Example] = [passage.text] if self.include_passage or selfedit is None else []
        if selfedit is None:
            return examples
        items = selfedit_items(self.fmt, selfedit)
        if self.fmt == "self-qa":
            if self.grounded:  # an answer the passage does not contain teaches an invented fact; "the" teaches nothing
                source = normalize_answer(f"{passage.title} {passage.context}")
                items = [(q, a) for q, a in items if contains(source, a) and has_content(a)]
                if not items:
                    raise InvalidSelfEdit("no answer of the self-QA is a span of the passage with a content word")
            return examples + qa_examples(self.tokenizer, passage.title, items)
        return examples + [f"{passage.title}\n{item}" for item in items]

    def training_data(self, passage: Passage, selfedit: str | None) -> TrainingData:
        return TrainingData(self.training_examples(passage, selfedit))

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, passage: Passage) -> Evaluation:
        self._check(passage)
        t0 = time.perf_counter()
        records = self.measure.score(model, tokenizer, passage)
        t1 = time.perf_counter()
        extra = self._judge(records) if self.judge else {}
        return Evaluation(_mean_reward(records, self.score_key), records,
                          {"answer": t1 - t0, "grade": time.perf_counter() - t1}, extra)

    def recital(self, passage: Passage) -> Evaluation:
        """The control that answers every question with the passage's opening (no model)."""
        self._check(passage)
        records = self.measure.recital_records(self.tokenizer, passage)
        return Evaluation(_mean_reward(records, self.score_key), records)

    @staticmethod
    def _check(passage: Passage) -> None:
        if not passage.questions:
            raise ItemError(f"passage {passage.index} ({passage.title!r}) has no questions")

    def _judge(self, records: list[dict]) -> dict:
        """TinyV (``judge.fallback``): exact match decides, the judge sees only its misses. Each
        record keeps both verdicts; the judge score counts the rule's hits and the flips."""
        items = [(r["question"], " or ".join(r.get("golds") or [r["gold"]]), r["response"]) for r in records]
        verdicts = fallback([r["exact_match"] == 1.0 for r in records], items, self.judge)
        for r, v in zip(records, verdicts):
            r["judge"], r["judge_flip"] = v["judge"], v["flip"]
            if "judge_error" in v:
                r["judge_error"] = v["judge_error"]
        ok = [v["correct"] for v in verdicts if "judge_error" not in v]
        return {"judge_score": sum(ok) / len(ok) if ok else None, "judge_calls": sum(not v["rule"] for v in verdicts),
                "judge_flips": sum(v["flip"] for v in verdicts), "judge_failures": len(records) - len(ok)}


@dataclass
class CPTDomain:
    """Continued pretraining: all passages' data in one update, then all their questions.

    An item is a tuple of passages and a self-edit is a list with one self-edit per
    passage. A passage whose self-edit is invalid contributes only its passage text (if
    the inner domain trains on passages); only when every self-edit is invalid is the
    whole update invalid.
    """

    inner: KnowledgeDomain
    name: str = "knowledge-cpt"

    def item_id(self, passages: tuple[Passage, ...]) -> str:
        return f"cpt{len(passages)}"

    def training_examples(self, passages: tuple[Passage, ...], selfedits: list[str] | None) -> list[Example]:
        if selfedits is None:
            return [t for p in passages for t in self.inner.training_examples(p, None)]
        texts: list[Example] = []
        invalid = []
        for p, edit in zip(passages, selfedits, strict=True):
            try:
                texts += self.inner.training_examples(p, edit)
            except InvalidSelfEdit as e:
                invalid.append(f"passage {p.index}: {e}")
                texts += [p.text] if self.inner.include_passage else []
        if len(invalid) == len(passages):
            raise InvalidSelfEdit(f"every self-edit is invalid ({invalid[0]}, ...)")
        return texts

    def training_data(self, passages: tuple[Passage, ...], selfedits: list[str] | None) -> TrainingData:
        return TrainingData(self.training_examples(passages, selfedits))

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 passages: tuple[Passage, ...]) -> Evaluation:
        records, seconds = [], {}
        for p in passages:
            ev = self.inner.evaluate(model, tokenizer, p)
            records += [{"passage": p.index, **r} for r in ev.records]
            for k, v in ev.seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
        return Evaluation(_mean_reward(records, self.inner.score_key), records, seconds)

    def recital(self, passages: tuple[Passage, ...]) -> Evaluation:
        records = [{"passage": p.index, **r} for p in passages for r in self.inner.recital(p).records]
        return Evaluation(_mean_reward(records, self.inner.score_key), records)


def _mean_reward(records: list[dict], key: str = REWARD_METRIC) -> float:
    return float(np.mean([r[key] for r in records]))
