"""What the model knew before it learned a document: a general probe, its own answers to replay,
and the other examples an update mixes in to keep what it knew (earlier updates' data, reading
comprehension with a passage in context), shared by ``learn`` and ``eval continual``.

An update that teaches one fact and erases "Paris" is not a usable ``learn``, and a report
that grades only the document cannot show it. So ``learn`` asks simple general questions
before and after (the probe: a shipped list, graded against its answers; what counts is
the questions the unadapted model got right), and replays the unadapted model's *own*
answers to another list of general questions into every update (self-distillation: the
update is asked to keep answering them as before). The probe uses ``ask``'s prompt, under
the adapter's title, so it measures what a user of the adapter sees; the replayed answers are
the few-shot prompt's, trained in the zero-shot prompt the document's Q→A pairs train in
(``qa_prompt``): an update on those pairs alone answers every question in that prompt with a
span of the document ("1,104" to all of them), and the model's own answers next to them are
what ties an answer to its question.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..generation import SamplingConfig, generate
from ..grading import contains
from ..lora import Example
from ..models import render_chat
from .data import load_passages
from .domain import ANSWER_CAP
from .measure import SHORT_ANSWER_SYSTEM, qa_prompt, short_answer_prompt

GENERAL_POOL = range(400, 600)  # train passages for general reading-comprehension examples


@dataclass(frozen=True)
class GeneralQuestion:
    question: str
    answers: tuple[str, ...]  # any of them in the response counts


def general_questions() -> tuple[list[GeneralQuestion], list[str]]:
    """The shipped probe (questions with answers) and distillation prompts (no two the same)."""
    raw = json.loads(resources.files("selfadapt").joinpath("data/general/questions.json").read_text())
    return [GeneralQuestion(q["question"], tuple(q["answers"])) for q in raw["probe"]], list(raw["distill"])


def short_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, asked: list[tuple[str, str]],
                  max_new_tokens: int = ANSWER_CAP, adapted: bool = False) -> list[str]:
    """Greedy short answers to (title, question) pairs with ``ask``'s prompt, no document in context:
    the few-shot one for the model as it was, and with ``adapted`` (a ``learn`` adapter answers) the
    zero-shot ``qa_prompt`` its Q→A pairs and own answers trained in. Asked in the few-shot prompt, an
    adapter missed taught questions it answers in the one it was taught in (issue 46)."""
    prompt = qa_prompt if adapted else short_answer_prompt
    prompts = [prompt(tokenizer, title, q) for title, q in asked]
    answers = generate(model, tokenizer, prompts, SamplingConfig(max_new_tokens, 0.0, 1.0, 8))
    return [a.split("\n")[0].strip() for a in answers]


def probe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, title: str,
          questions: list[GeneralQuestion], adapted: bool = False) -> list[dict]:
    """One record per question: the response (``short_answers``, ``adapted`` for the adapter) and whether
    it holds one of the answers."""
    responses = short_answers(model, tokenizer, [(title, q.question) for q in questions], adapted=adapted)
    return [{"question": q.question, "answers": list(q.answers), "response": r,
             "correct": any(contains(r, a) for a in q.answers)} for q, r in zip(questions, responses)]


def distillation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, title: str,
                 prompts: list[str]) -> list[Example]:
    """The model's own answers to ``prompts`` (few-shot, as ``ask`` asks) as training pairs in the
    Q→A examples' zero-shot prompt; call it on the unadapted model, before anything is learned."""
    eos = tokenizer.eos_token or ""
    return [(qa_prompt(tokenizer, title, q), a + eos)
            for q, a in zip(prompts, short_answers(model, tokenizer, [(title, q) for q in prompts])) if a]


def replay_examples(history: list[list[Example]], n: int, rng: random.Random) -> list[Example]:
    """Up to ``n`` examples drawn from the training data of earlier updates (``history``
    holds exactly those: the caller passes updates 0..i-1)."""
    pool = [ex for data in history for ex in data]
    return rng.sample(pool, min(n, len(pool)))


def general_examples(tokenizer, n: int, rng: random.Random) -> list[Example]:
    """Reading comprehension with the passage in context (train split): keeps the model
    answering from context while it learns facts into its weights."""
    if n == 0:
        return []
    pool = load_passages("train", limit=len(GENERAL_POOL), offset=GENERAL_POOL.start)
    out: list[Example] = []
    for p in rng.sample(pool, n):
        q = rng.choice(p.questions)
        prompt = render_chat(tokenizer, [{"role": "system", "content": SHORT_ANSWER_SYSTEM},
                                         {"role": "user", "content": f"{p.text}\n\nQuestion: {q.question}"}])
        out.append((prompt, q.answer + (tokenizer.eos_token or "")))
    return out
