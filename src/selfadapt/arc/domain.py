"""Few-shot ARC as a SEAL domain: the self-edit configures test-time training (TTT).

- item: an ``ArcTask``; the self-edit is the JSON of ``selfedit.py``;
- training data: leave-one-out tasks from the training examples under the chosen
  augmentations, each a chat exchange (examples + query input → query output). With
  loss on output tokens only, the prompt is masked: the boundary is where the model's
  chat template starts the assistant turn, found by rendering, not by token ids;
- evaluation: predict the test output under several invertible transforms of the whole
  task, invert, vote; the two most voted grids are the two attempts. Reward 1 only if
  every test output is among them; with your own ``metric`` (``selfadapt.metric``), the
  mean of its values over the test outputs.
"""

from __future__ import annotations

import functools
import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..constrained import GrammarConstraint, schema_grammar
from ..domain import Evaluation, TrainingData
from ..generation import SamplingConfig, generate
from ..metric import METRIC, absolute, check_metric
from ..metric import score as metric_score
from ..models import chat_prompt, render_chat
from .augment import VOTING, apply, augmented_examples
from .data import ArcTask, Grid, grid_to_text, text_to_grid
from .selfedit import EPOCH_RANGE, LEARNING_RATES, SCHEMA, TTTConfig, parse_selfedit

# TTT without a self-edit (the "item alone" condition, ``ttt-plain``) and the default the
# self-edit prompt shows. Chosen by the oracle grid on the small-grid SEAL *training* tasks
# (RESULTS.md, "The TTT default, chosen on small-grid training tasks").
DEFAULT_TTT = TTTConfig(groups=("basic", "size"), loss_scope="output", lr=1e-3, epochs=3)

TASK_INTRO = ("Each example turns an input grid into an output grid by the same rule. Grids are rows of "
              "digits (colours 0-9), one row per line.")

# The self-edit prompt shows the default configuration (plain TTT) as a concrete JSON
# object: a 135M model copies a concrete object far more often than it fills in a
# schema, and copying it unchanged is the "no self-edit" baseline, not a hidden hint.
SELFEDIT_INSTRUCTION = """{examples}

You will be fine-tuned on these examples before solving a new input. Choose how. The default is:
{default}
Reply with one JSON object of exactly this form. You may switch augmentations on (basic: rotations and flips;
size: enlarged grids; chain: both combined; repeat: tiled grids), train on "train_using_all_tokens" or
"train_using_output_tokens", and set learning_rate (one of {lrs}) and num_train_epochs ({ep_lo} to {ep_hi})."""


_GRAMMAR = functools.cache(lambda: schema_grammar(SCHEMA))


def examples_text(pairs: tuple[tuple[Grid, Grid], ...]) -> str:
    return "\n\n".join(f"Example {i}\nInput:\n{grid_to_text(a)}\nOutput:\n{grid_to_text(b)}"
                       for i, (a, b) in enumerate(pairs, 1))


def task_messages(context: tuple[tuple[Grid, Grid], ...], query: Grid) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{TASK_INTRO}\n\n{examples_text(context)}\n\nTest input:\n"
                                        f"{grid_to_text(query)}\nWrite the test output grid only."}]


def split_exchange(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], answer: str
                   ) -> tuple[str, str]:
    """(prompt, completion) of a chat exchange, split where the template opens the assistant turn.

    The completion carries the template's end-of-turn marker, so a model trained on it
    learns to stop after the grid.
    """
    prompt = render_chat(tokenizer, messages)
    if tokenizer.chat_template:
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
    return prompt, answer + (tokenizer.eos_token or "")


@dataclass
class ArcDomain:
    tokenizer: PreTrainedTokenizerBase
    cap: int = 24  # generated TTT examples per self-edit, at most
    budget: int = 64  # epochs × examples, at most (examples are dropped to fit)
    max_tokens: int = 2048  # TTT examples longer than this are dropped
    leave_two_out: bool = False
    votes: int = 4  # transforms to vote over (identity first), at most 8
    constrain: bool = True  # grammar-constrained self-edits; off: free sampling, strict parsing
    metric: str | None = None  # your own score per test output in place of the checker (``selfadapt.metric``)
    name: str = "arc"

    def __post_init__(self) -> None:
        check_metric(self.metric)
        self.metric = absolute(self.metric)  # a spec, not a function: it travels to workers as it is

    def item_id(self, task: ArcTask) -> str:
        return task.id

    def selfedit_prompt(self, task: ArcTask) -> str:
        return chat_prompt(self.tokenizer, SELFEDIT_INSTRUCTION.format(
            examples=f"{TASK_INTRO}\n\n{examples_text(task.train)}", default=DEFAULT_TTT.to_json(),
            lrs=", ".join(map(str, LEARNING_RATES)), ep_lo=EPOCH_RANGE[0], ep_hi=EPOCH_RANGE[1]))

    def selfedit_constraint(self, task: ArcTask) -> GrammarConstraint | None:
        """Sampled under the self-edit's JSON Schema (every sample parses), unless ``constrain`` is off."""
        return GrammarConstraint(self.tokenizer, _GRAMMAR()) if self.constrain else None

    def training_data(self, task: ArcTask, selfedit: str | None) -> TrainingData:
        cfg = DEFAULT_TTT if selfedit is None else parse_selfedit(selfedit)
        rng = random.Random(zlib.crc32(task.id.encode()))
        examples = []
        for context, q_in, q_out in augmented_examples(task, list(cfg.groups), rng=rng, cap=self.cap,
                                                       leave_two_out=self.leave_two_out):
            prompt, completion = split_exchange(self.tokenizer, task_messages(context, q_in), grid_to_text(q_out))
            if len(self.tokenizer(prompt + completion)["input_ids"]) <= self.max_tokens:
                examples.append((prompt, completion) if cfg.loss_scope == "output" else prompt + completion)
        examples = examples[: max(1, self.budget // cfg.epochs)]
        return TrainingData(examples, lr=cfg.lr, epochs=cfg.epochs)

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: ArcTask) -> Evaluation:
        t0 = time.perf_counter()
        records = []
        for i, (test_in, expected) in enumerate(task.test):
            candidates, raw = self.predict(model, tokenizer, task, test_in)
            top = [g for g, _ in candidates[:2]]
            records.append({"test": i, "correct": any(g.shape == expected.shape and (g == expected).all() for g in top),
                            "attempts": [grid_to_text(g) for g in top], "votes": [n for _, n in candidates[:2]],
                            "parsed": sum(n for _, n in candidates), "expected": grid_to_text(expected),
                            "raw": [text[:200] for text in raw]})
        score = float(all(r["correct"] for r in records)) if self.metric is None else self._metric(task, records)
        return Evaluation(score, records, {"answer": time.perf_counter() - t0})

    def _metric(self, task: ArcTask, records: list[dict]) -> float:
        """The custom metric per test output (``METRIC``), called with the identity view's prompt, the
        most voted grid as the completion ("" if none parsed), ``expected``, ``attempts`` and ``task``;
        the task's score is their mean."""
        prompts = [render_chat(self.tokenizer, task_messages(task.train, test_in)) for test_in, _ in task.test]
        values = metric_score(self.metric, prompts, [(r["attempts"] or [""])[0] for r in records],
                              expected=[r["expected"] for r in records], attempts=[r["attempts"] for r in records],
                              task=[task.id] * len(records))
        for r, v in zip(records, values):
            r[METRIC] = v
        return float(np.mean(values))

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: ArcTask,
                test_in: Grid) -> tuple[list[tuple[Grid, int]], list[str]]:
        """Candidate outputs with their votes, most voted first (ties: identity's view first),
        and the raw text of each view (what the model wrote, for failure analysis)."""
        views = []
        for t in VOTING[: self.votes]:
            moved = apply(t, task.train + ((test_in, test_in),))
            if moved is not None:
                views.append((t, moved))
        prompts = [render_chat(tokenizer, task_messages(m[:-1], m[-1][0])) for _, m in views]
        longest = max(max(g.shape) for pair in task.train for g in pair)
        cfg = SamplingConfig(max_new_tokens=min(1024, 2 * longest * (longest + 1) + 8), temperature=0.0,
                             batch_size=len(prompts))
        votes: Counter[bytes] = Counter()
        grids: dict[bytes, Grid] = {}
        texts = generate(model, tokenizer, prompts, cfg)
        for (t, _), text in zip(views, texts):
            grid = text_to_grid(text)
            if grid is None:
                continue
            grid = np.ascontiguousarray(t.inverse(grid))
            key = f"{grid.shape}".encode() + grid.tobytes()
            votes[key] += 1
            grids.setdefault(key, grid)
        return [(grids[k], n) for k, n in votes.most_common()], texts
