"""Grounded self-edits: the model may only write what the passage gives it.

A 135M model asked for implications of a passage invents facts ("Chéng Jingi inspired
Ulaan…"), and training on them overwrites what the passage taught. It cannot know what
the passage does not say, so grounded decoding removes what it cannot know. Both
constraints only mask tokens: among the allowed ones the model's own distribution is
kept, so ReST-EM can still shift it.

- **Self-QA** (``SpanQA``): the model writes ``Q:`` lines freely (which questions to ask
  is the policy's choice) and every ``A:`` line must copy a span of the passage, token by
  token. The training pairs then have exactly the shape of the test.
- **Other formats** (``allowed_token_ids``): only tokens of the passage and title, a fixed
  set of function words and punctuation, and the end token. Digits are not in the fixed
  set: a number the passage does not contain is exactly what the model would invent.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import string
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import PreTrainedTokenizerBase

from ..generation import Allowed, fill_row, pack

Constraint = Callable[[list[int]], Allowed]  # tokens generated so far → what is allowed next

FUNCTION_WORDS = (
    "a an the this that these those it its they them their he him his she her we our you your i "
    "is are was were be been being has have had do does did can could will would may might must should "
    "of in on at to for from by with about into over under after before during between through since until "
    "and or but nor not no so than then also as if when where while because which who whom whose what why how "
    "there here all each both some many more most other such only very same one first"
).split()
PUNCTUATION = list(".,;:!?'\"()-") + ["\n", "\n\n", "'s"]
_NOT_ANSWERS = frozenset(FUNCTION_WORDS) - {"one", "first"}  # a count and an ordinal can be answers


def has_content(text: str) -> bool:
    """Whether ``text`` holds a word that can answer a question. Any span of the passage is a
    span, and ReST-EM's rounds learned to copy the cheapest ones ("A: the", "A: but"): they teach
    nothing and take the place of a pair that would."""
    words = (_EDGES.sub("", w.lower().replace("’", "'").removesuffix("'s")).removesuffix("'s") for w in text.split())
    return any(w not in _NOT_ANSWERS and any(c.isalnum() for c in w) for w in words)


_EDGES = re.compile(r"^[\W_]+|[\W_]+$")  # any punctuation around a word: quotes, dashes, ellipses


def _variants(word: str) -> set[str]:
    stripped = word.strip(string.punctuation)
    forms = {word, stripped, stripped.lower(), stripped.capitalize()}
    return {f for f in forms if f}


def allowed_token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    """Token ids that may appear in a self-edit grounded in ``texts``.

    Each word is added as it is, without surrounding punctuation, lower-cased and
    capitalised (sentence starts), both with and without a leading space, because BPE
    splits a word differently in each position. The whole texts are tokenized too, so
    every token of the passage as written is allowed.
    """
    words = {v for text in texts for w in text.split() for v in _variants(w)}
    words |= {v for w in FUNCTION_WORDS for v in _variants(w)}
    pieces = set(words) | {" " + w for w in words} | set(PUNCTUATION) | {" " + p for p in PUNCTUATION}
    pieces |= set(texts)
    ids: set[int] = set()
    for piece in pieces:
        ids.update(tokenizer(piece, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


class Static:
    """The same allowed set at every step, as a mask and its bitmask row built once (``ids``: for
    vLLM's ``allowed_token_ids``). Stateless, so one may serve many rows."""

    def __init__(self, ids: list[int]):
        self.ids = ids
        self.mask = torch.zeros(max(ids) + 1, dtype=torch.bool)
        self.mask[ids] = True
        self.bits = pack(self.mask)

    def __call__(self, generated: list[int]) -> Allowed:
        return self.mask

    def advance(self, token: int) -> None:
        """Nothing to keep: every step allows the same set."""

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        fill_row(bitmask, row, self.bits)


@dataclass(frozen=True)
class _Vocab:
    """What a question line may hold, the same for every passage: built once per tokenizer (a pass
    over the vocabulary), not once per self-edit."""

    breaks: frozenset[int]  # every token whose text contains a newline: any of them ends a line
    question: torch.Tensor  # any token but the end
    first: torch.Tensor  # ... and, first, none that shows nothing (no empty question)
    question_bits: torch.Tensor
    first_bits: torch.Tensor


@functools.cache
def _vocab(tokenizer: PreTrainedTokenizerBase) -> _Vocab:
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    question = torch.ones(len(tokenizer), dtype=torch.bool)
    if tokenizer.eos_token_id is not None:
        question[tokenizer.eos_token_id] = False
    first = question.clone()
    first[[i for i, t in enumerate(texts) if not t.strip()]] = False
    return _Vocab(frozenset(i for i, t in enumerate(texts) if "\n" in t), question, first, pack(question), pack(first))


class SpanQA:
    """``Q: <free question>`` / ``A: <span of the passage>`` pairs, then the end token.

    The state is kept token by token (``generation.Stepwise``: one object per row, and a step
    costs the new token, not the whole document again): an empty line must start with
    ``Q`` (or ``A`` right after a question), the marker is followed by ``:``; a question
    line is free until a token with a newline (at most ``question_tokens``; the end token
    is not allowed there, or a small model ends after its first question), but its first
    token shows something (no empty question); an answer line may only continue a span that
    occurs in the passage (tokenized as one text, so spans start at word tokens), ends only
    where a word ends and once it holds a content word (``has_content``: it starts only where
    one is reached in time), and ends once the word that crosses ``answer_tokens`` tokens is
    complete, so it stays a short answer like the test's.
    Each answer starts where no earlier answer started (while such places are left): a
    small model otherwise gives one answer to every question. After ``pairs`` answers only the end token is allowed.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, context: str, pairs: int = 8,
                 question_tokens: int = 40, answer_tokens: int = 10):
        def one(text: str) -> int:
            (tid,) = tokenizer(text, add_special_tokens=False)["input_ids"]
            return tid

        self.q, self.a, self.colon, self.newline = one("Q"), one("A"), one(":"), one("\n")
        self.eos, self.pairs = tokenizer.eos_token_id, pairs
        self.question_tokens, self.answer_tokens = question_tokens, answer_tokens
        self.vocab = _vocab(tokenizer)
        self.tokenizer, self.text = tokenizer, " ".join(context.split())
        self.span = tokenizer(" " + self.text, add_special_tokens=False)["input_ids"]
        self.word_starts = {t for t in self.span if tokenizer.decode([t]).startswith(" ")}
        starts = [i for i, t in enumerate(self.span) if t in self.word_starts]
        answerable = self._answerable(starts)
        # a passage without a content word: answers as before, only so that decoding cannot stall (its
        # self-edit is then rejected when read: no pair has a content word)
        self.needs_content = bool(answerable)
        self.starts = answerable or starts
        self.reset()

    def reset(self) -> None:
        """Back to an empty document."""
        self.line: list[int] = []  # the current line's tokens
        self.last: int | None = None  # the first token of the last non-empty line
        self.answers, self.used, self.ended = 0, set(), False  # answer lines, the span starts they matched
        self.candidates: list[int] = []  # in an answer line: the span starts it still matches

    def advance(self, token: int) -> None:
        if self.ended or token == self.eos:  # generation pads a finished row
            self.ended = True
            return
        if token in self.vocab.breaks:
            if self.line:
                if self.line[0] == self.a:
                    self.answers += 1
                    self.used |= self._matches(self.line[2:])
                self.last = self.line[0]
            self.line = []
            return
        self.line.append(token)
        if self.line[0] != self.a or len(self.line) < 2:
            return
        if len(self.line) == 2:  # the answer may start where no earlier one did, while such places are left
            self.candidates = [i for i in self.starts if i not in self.used] or self.starts
        else:
            k = len(self.line) - 3
            self.candidates = [i for i in self.candidates if i + k < len(self.span) and self.span[i + k] == token]

    def allowed(self) -> Allowed:
        """What may follow the tokens read so far."""
        line = self.line
        if self.ended:
            return [self.eos]
        if not line:
            if self.answers >= self.pairs:
                return [self.eos]
            return [self.a] if self.last == self.q else [self.q]
        if len(line) == 1:
            return [self.colon]
        if line[0] != self.a:  # a question: free, but it must end with a line break, not the end token
            if len(line) == 2:
                return self.vocab.first
            return self.vocab.question if len(line) < 2 + self.question_tokens else [self.newline]
        n = len(line) - 2
        if not n:
            return sorted({self.span[i] for i in self.candidates})
        ends = [i + n for i in self.candidates]
        nxt = {self.span[e] for e in ends if e < len(self.span)}
        can_end = (any(e == len(self.span) or self.span[e] in self.word_starts for e in ends)
                   and (not self.needs_content or has_content(self.tokenizer.decode(line[2:]))))
        if n >= self.answer_tokens:  # finish the word, then the line
            nxt = {t for t in nxt if t not in self.word_starts}
        return sorted(nxt | ({self.newline} if can_end else set()))

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        allowed, v = self.allowed(), self.vocab
        fill_row(bitmask, row, v.first_bits if allowed is v.first else v.question_bits if allowed is v.question
                 else pack(allowed))

    def __call__(self, generated: list[int]) -> Allowed:
        """What is allowed after ``generated``, read from the start on a copy (checks and tests)."""
        fresh = copy.copy(self)
        fresh.reset()
        for t in generated:
            fresh.advance(t)
        return fresh.allowed()

    def lark(self) -> str:
        """The same document shape as a Lark grammar, for engines that constrain by grammar (vLLM's
        structured outputs): free question lines of at most ``question_tokens`` tokens that show
        something at once (at most one space first: llguidance ends a rule at ``max_tokens`` whether
        or not its regex matched, so a visible character anywhere would let a run of blanks through),
        answer lines that are word spans of the passage holding a content word, of at most
        ``answer_tokens`` tokens (the word crossing it completed), at most ``pairs`` pairs. A grammar
        cannot say that each answer starts where no earlier one did, so that rule is the HF path's
        alone."""
        words, spans = self.text.split(), set()
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                span = " " + " ".join(words[i:j])
                if has_content(span) or not self.needs_content:
                    spans.add(span)
                if len(self.tokenizer(span, add_special_tokens=False)["input_ids"]) >= self.answer_tokens:
                    break
        alternatives = " | ".join(json.dumps(s, ensure_ascii=False) for s in sorted(spans))
        return (f"start: pair{{1,{self.pairs}}}\n"
                f'pair: "Q:" question "\\n" "A:" answer "\\n"\n'
                f"question[max_tokens={self.question_tokens}]: / ?\\S[^\\n]*/\n"
                f"answer: {alternatives}\n")

    def _answerable(self, starts: list[int]) -> list[int]:
        """The word starts from which a content word begins within ``answer_tokens`` tokens: an
        answer begun there can always end."""
        ends = starts[1:] + [len(self.span)]
        content = [has_content(self.tokenizer.decode(self.span[s:e])) for s, e in zip(starts, ends)]
        within = lambda j: itertools.takewhile(lambda m: starts[m] < starts[j] + self.answer_tokens,  # noqa: E731
                                               range(j, len(starts)))
        return [s for j, s in enumerate(starts) if any(content[m] for m in within(j))]

    def _matches(self, answer: list[int]) -> set[int]:
        n = len(answer)
        return {i for i in self.starts if self.span[i : i + n] == answer}
