"""What the adapted model knows about a passage, measured so that neither reciting it nor
knowing the *form* of an answer can pass.

After training on a passage, a small model answers most questions with the passage's
opening sentence, and "the gold answer appears in the response" then counts a hit for
every fact that sentence happens to hold. And training on any question→answer pairs, even
another passage's, teaches what kind of span a question wants, which random-span multiple
choice rewards. So each question is scored several ways, all without the passage in context:

- **short answer** (``exact_match``, the reward; ``f1``, ``contains``): a few-shot prompt
  (examples from the train split) asks for the answer phrase only, greedy, capped; graded
  by the SQuAD v1.1 rules. This is what a user sees. It is sparse at 135M, but it is the one
  measure that no control passed on either set of train passages: the format control (another
  passage's Q→A pairs) never rose above passage-only with an interval above 0, while it did on
  every dense measure on one of the two sets (RESULTS.md, "The measure against its controls").
- **type-matched, calibrated multiple choice** (``typed_cal_prob``, the reward before exact
  match): the gold against passage text of the same type (a number against the passage's
  numbers, a name against names, a phrase against whole phrases, never a fragment), each
  option's per-token log-likelihood after the question minus the same after a neutral
  question ("What is the answer?"), softmaxed. It passed the controls on one set of train
  passages but not on another, where the format control gained at every learning rate and
  epoch count (RESULTS.md, "Inner-loop defaults: learning rate and epochs"): reported, not
  rewarded.
- **multiple choice by likelihood** (``mc_prob``, ``mc_acc``; the first reward):
  the gold against the passage's other answers and random word windows of the passage, raw
  (``typed_prob`` with the typed options, ``cal_prob`` calibrated). The format control
  passes it.
- **answer likelihood** (``answer_logprob``, ``cal_logprob`` calibrated): the per-token
  log-probability of the gold answer. Any passage span gains from training on the passage.

The **recital** control answers every question with the passage's first tokens (as many
as the answer cap allows) and, in multiple choice, picks the option it recited most of.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..generation import SamplingConfig, generate
from ..grading import contains, grade, normalize_answer
from ..likelihood import completion_scores
from ..metric import METRIC
from ..metric import score as metric_score
from ..models import render_chat
from .data import Passage, Question

REWARD_METRIC = "exact_match"
METRICS = ("mc_prob", "mc_acc", "answer_logprob", "cal_prob", "cal_acc", "cal_logprob", "typed_prob", "typed_acc",
           "typed_cal_prob", "exact_match", "f1", "contains")
NEUTRAL_QUESTION = "What is the answer?"  # the calibration prompt: a question that asks for nothing
SHORT_ANSWER_SYSTEM = "Answer with the answer phrase only, a few words, no sentence."
N_OPTIONS = 8
N_SHOTS = 3


def question_turn(title: str, question: str, context: str | None = None) -> dict[str, str]:
    passage = f"\n{context}" if context else ""
    return {"role": "user", "content": f"Topic: {title}{passage}\nQuestion: {question}"}


@functools.cache
def few_shot_turns() -> tuple[dict[str, str], ...]:
    """Worked examples for the short-answer prompt: the first question of the last train
    passages whose answer has at most three words (the last ones, far from where runs sample)."""
    from .data import load_passages

    shots: list[dict[str, str]] = []
    for p in reversed(load_passages("train")):
        q = p.questions[0] if p.questions else None
        if q and len(q.answer.split()) <= 3:
            shots += [question_turn(p.title, q.question), {"role": "assistant", "content": q.answer}]
        if len(shots) == 2 * N_SHOTS:
            return tuple(shots)
    raise RuntimeError("the train split has too few short answers for the few-shot prompt")


def short_answer_prompt(tokenizer: PreTrainedTokenizerBase, title: str, question: str,
                        context: str | None = None) -> str:
    """The few-shot short-answer prompt; with ``context``, the passage before the question (open book)."""
    messages = [{"role": "system", "content": SHORT_ANSWER_SYSTEM}, *few_shot_turns(),
                question_turn(title, question, context)]
    return render_chat(tokenizer, messages)


def qa_prompt(tokenizer: PreTrainedTokenizerBase, title: str, question: str, context: str | None = None) -> str:
    """The no-context question, zero-shot: multiple choice scores each option after it, and
    self-QA trains on it. The title is given because many SQuAD questions need it. With
    ``context``, the passage is in the prompt (reading comprehension, for probes)."""
    return render_chat(tokenizer, [{"role": "system", "content": SHORT_ANSWER_SYSTEM},
                                   question_turn(title, question, context)])


def qa_examples(tokenizer: PreTrainedTokenizerBase, title: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Question→answer pairs as training examples: (the test's prompt, answer + end token), so
    the loss falls on the answer alone, as TRL's completion-only SFT does."""
    eos = tokenizer.eos_token or ""
    return [(qa_prompt(tokenizer, title, q), a + eos) for q, a in pairs]


def _overlaps(a: str, b: str) -> bool:
    """Two answers that could both be right: equal, or one inside the other on word boundaries."""
    na, nb = normalize_answer(a), normalize_answer(b)
    return not na or not nb or contains(na, nb) == 1.0 or contains(nb, na) == 1.0


def _distinct(out: list[str], candidates, n: int) -> list[str]:
    """``out`` extended by the candidates (in order) that overlap none before them, up to ``n``."""
    for c in candidates:
        if len(out) >= n:
            break
        if c and not any(_overlaps(c, o) for o in out):
            out.append(c)
    return out


def options(passage: Passage, qi: int, n: int = N_OPTIONS) -> list[str]:
    """Gold first, then the other questions' answers, then spans of the passage of the gold's
    length in words; no option overlaps another. Seeded by the passage and question."""
    gold, others = passage.questions[qi].answer, _other_golds(passage, qi)
    out = _distinct([gold], others([q.answer for j, q in enumerate(passage.questions) if j != qi]), n)
    words = passage.context.split()
    length = max(1, len(gold.split()))
    rng = random.Random(f"{passage.title}\n{passage.context[:64]}\n{qi}")
    starts = list(range(max(0, len(words) - length + 1)))
    rng.shuffle(starts)
    return _distinct(out, others(" ".join(words[s : s + length]).strip(".,;:!?\"'()[]") for s in starts), n)


def _other_golds(passage: Passage, qi: int):
    """A filter of distractors: none may overlap another gold answer of the question."""
    alternatives = passage.questions[qi].answers[1:]
    return lambda candidates: (c for c in candidates if not any(_overlaps(c, g) for g in alternatives))


FUNCTION_WORDS = frozenset(
    "a an the of in on at to for and or by with from as into than that which who is was were are be been its it "
    "this these those their his her our".split())
NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand "
    "million billion half dozen first second third fourth fifth sixth seventh eighth ninth tenth january february "
    "march april may june july august september october november december century decade".split())
_PUNCT = ".,;:!?\"'()[]"


def answer_type(text: str) -> str:
    """'number' (digits, number words, dates), 'name' (every content word capitalised) or 'phrase'."""
    words = [w.strip(_PUNCT) for w in text.split()]
    words = [w for w in words if w]
    if any(c.isdigit() for c in text) or any(w.lower() in NUMBER_WORDS for w in words):
        return "number"
    content = [w for w in words if w.lower() not in FUNCTION_WORDS]
    return "name" if content and all(w[0].isupper() for w in content) else "phrase"


def _spans(context: str, length: int) -> list[str]:
    """Word windows of ``length`` words within one clause (no punctuation inside), not starting
    or ending on a function word (no fragments like "of the"), and maximal runs of capitalised words."""
    words = context.split()
    out = []
    for s in range(len(words) - length + 1):
        window = words[s : s + length]
        if any(w[-1] in _PUNCT for w in window[:-1]):
            continue
        span = " ".join(window).strip(_PUNCT)
        inner = span.split()
        if inner and inner[0].lower() not in FUNCTION_WORDS and inner[-1].lower() not in FUNCTION_WORDS:
            out.append(span)
    run: list[str] = []
    for w in [*words, "."]:
        bare = w.strip(_PUNCT)
        if bare and (bare[0].isupper() or (run and bare.lower() in FUNCTION_WORDS and w[-1] not in _PUNCT)):
            run.append(bare)
        if not bare or not (bare[0].isupper() or bare.lower() in FUNCTION_WORDS) or w[-1] in _PUNCT:
            while run and run[-1].lower() in FUNCTION_WORDS:
                run.pop()
            if run:
                out.append(" ".join(run))
            run = []
    return out


def typed_options(passage: Passage, qi: int, n: int = N_OPTIONS) -> list[str]:
    """Gold first, then passage text of the gold's type (other answers first, then spans): a
    number against numbers, a name against names, a phrase against whole phrases, so knowing
    what *kind* of answer a question wants (what training on any Q→A pairs teaches) does not
    pick the gold. No option overlaps another; seeded by the passage and question."""
    gold, others = passage.questions[qi].answer, _other_golds(passage, qi)
    kind = answer_type(gold)
    out = _distinct([gold], others([q.answer for j, q in enumerate(passage.questions)
                                    if j != qi and answer_type(q.answer) == kind]), n)
    length = max(1, len(gold.split()))
    spans = [sp for sp in dict.fromkeys(_spans(passage.context, length)) if answer_type(sp) == kind
             and (kind == "name" or len(sp.split()) == length)]
    random.Random(f"typed\n{passage.title}\n{passage.context[:64]}\n{qi}").shuffle(spans)
    return _distinct(out, others(spans), n)


def recital(tokenizer: PreTrainedTokenizerBase, passage: Passage, max_tokens: int) -> str:
    """The passage's opening, cut to the answer cap: what a model that only recites would say."""
    ids = tokenizer(passage.context, add_special_tokens=False)["input_ids"][:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def _golds(q: Question) -> dict:
    """A record's every gold answer, only where there are several: ``gold`` stays the first, so
    records of older runs (one gold) read the same."""
    return {"golds": list(q.answers)} if len(q.answers) > 1 else {}


def softmax_at_zero(values: list[float]) -> float:
    x = np.asarray(values, dtype=float)
    e = np.exp(x - x.max())
    return float(e[0] / e.sum())


@dataclass
class KnowledgeMeasure:
    answer: SamplingConfig  # the short-answer generation (greedy, capped)
    batch_size: int = 32
    open_book: bool = False  # every question asked with the passage in the prompt (the open-book ceiling)
    metric: str | None = None  # your own per-question score (``selfadapt.metric``), beside the built-in ones

    def scored(self, records: list[dict], prompts: list[str], passage: Passage) -> list[dict]:
        """Each record with the custom metric's value (``METRIC``), if there is one: called with the
        short-answer prompts, the responses as completions, and every gold answer as ``answers``."""
        if self.metric is not None:
            qs = passage.questions
            values = metric_score(self.metric, prompts, [r["response"] for r in records],
                                  answers=[list(q.answers) for q in qs], question=[q.question for q in qs],
                                  title=[passage.title] * len(qs))
            for r, v in zip(records, values):
                r[METRIC] = v
        return records

    def multiple_choice(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, passage: Passage,
                        in_context: bool = False, make_options=options) -> list[tuple[list[str], list[float]]]:
        """Per question: its options (gold first) and their per-token log-likelihoods; without
        the passage in the prompt unless ``in_context``."""
        context = passage.context if in_context else None
        opts = [make_options(passage, i) for i in range(len(passage.questions))]
        pairs = [(qa_prompt(tokenizer, passage.title, q.question, context), o + tokenizer.eos_token)
                 for q, os_ in zip(passage.questions, opts) for o in os_]
        flat = iter(s.mean for s in completion_scores(model, tokenizer, pairs, self.batch_size))
        return [(os_, [next(flat) for _ in os_]) for os_ in opts]

    def neutral_scores(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, passage: Passage,
                       opts: list[list[str]]) -> dict[str, float]:
        """Each distinct option's per-token log-likelihood after the neutral question: what the
        model gives an option whatever is asked (its form, its being passage text)."""
        prompt = qa_prompt(tokenizer, passage.title, NEUTRAL_QUESTION, passage.context if self.open_book else None)
        distinct = sorted({o for os_ in opts for o in os_})
        scores = completion_scores(model, tokenizer, [(prompt, o + tokenizer.eos_token) for o in distinct],
                                   self.batch_size)
        return {o: s.mean for o, s in zip(distinct, scores)}

    def score(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, passage: Passage) -> list[dict]:
        """One record per question with every metric, the options and the model's choice; with
        ``open_book``, every prompt holds the passage."""
        qs, context = passage.questions, passage.context if self.open_book else None
        choices = self.multiple_choice(model, tokenizer, passage, in_context=self.open_book)
        typed = self.multiple_choice(model, tokenizer, passage, self.open_book, make_options=typed_options)
        neutral = self.neutral_scores(model, tokenizer, passage, [os_ for os_, _ in choices + typed])
        prompts = [short_answer_prompt(tokenizer, passage.title, q.question, context) for q in qs]
        responses = [r.split("\n")[0].strip() for r in generate(model, tokenizer, prompts, self.answer)]
        records = []
        for q, (os_, lp), (tos, tlp), response in zip(qs, choices, typed, responses):
            g = grade(response, q.answers)
            cal = [v - neutral[o] for o, v in zip(os_, lp)]
            tcal = [v - neutral[o] for o, v in zip(tos, tlp)]
            records.append({
                "question": q.question, "gold": q.answer, **_golds(q), "options": os_, "choice": int(np.argmax(lp)),
                "mc_prob": softmax_at_zero(lp), "mc_acc": float(int(np.argmax(lp)) == 0), "answer_logprob": lp[0],
                "cal_prob": softmax_at_zero(cal), "cal_acc": float(int(np.argmax(cal)) == 0), "cal_logprob": cal[0],
                "typed_options": tos, "typed_prob": softmax_at_zero(tlp), "typed_acc": float(int(np.argmax(tlp)) == 0),
                "typed_cal_prob": softmax_at_zero(tcal),
                "response": response, "exact_match": g.exact_match, "f1": g.f1, "contains": g.contains,
            })
        return self.scored(records, prompts, passage)

    def recital_records(self, tokenizer: PreTrainedTokenizerBase, passage: Passage) -> list[dict]:
        """The recital control, scored by the same rules; it has no likelihoods. In multiple
        choice it picks the option it recited most of (ties: uniformly, in expectation)."""
        text = recital(tokenizer, passage, self.answer.max_new_tokens)
        recited = set(normalize_answer(text).split())

        def pick(os_: list[str]) -> tuple[int, float]:
            overlap = [len(recited & set(t)) / max(1, len(t)) for t in (normalize_answer(o).split() for o in os_)]
            best = [j for j, v in enumerate(overlap) if v == max(overlap)]
            return best[0], 1.0 / len(best) if 0 in best else 0.0

        records = []
        for i, q in enumerate(passage.questions):
            os_, tos = options(passage, i), typed_options(passage, i)
            (choice, hit), (_, typed_hit) = pick(os_), pick(tos)
            g = grade(text, q.answers)
            records.append({
                "question": q.question, "gold": q.answer, **_golds(q), "options": os_, "choice": choice,
                "mc_prob": hit, "mc_acc": hit, "answer_logprob": None, "cal_prob": hit, "cal_acc": hit,
                "cal_logprob": None, "typed_options": tos, "typed_prob": typed_hit, "typed_acc": typed_hit,
                "typed_cal_prob": typed_hit,
                "response": text, "exact_match": g.exact_match, "f1": g.f1, "contains": g.contains,
            })
        prompts = [short_answer_prompt(tokenizer, passage.title, q.question) for q in passage.questions]
        return self.scored(records, prompts, passage)
