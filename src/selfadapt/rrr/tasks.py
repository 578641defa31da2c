"""Verifiable tasks behind one small interface, so the reflect/retry/GRPO code is task-free.

A query is a plain JSON object with an ``"id"`` (it is written to failure datasets and
run records as is); a task turns it into the first-attempt conversation and checks a
response with its verifier.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from . import Verdict, countdown, function_calling

SPLITS = ("train", "test")


class Task(Protocol):
    name: str

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]: ...

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]: ...

    def verify(self, query: dict[str, Any], response: str) -> Verdict: ...

    def reference(self, query: dict[str, Any]) -> str:
        """A correct answer in the format the task asks for (what NOVER scores the likelihood of)."""

    def check(self, query: Any) -> None:
        """ValueError if ``query`` is not one of this task's queries (used when reading files)."""


def _split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


@dataclass
class CountdownTask:
    """Seeded, solver-checked Countdown instances; the split is fixed by ``pool`` and ``seed``."""

    pool: int = 400
    test_fraction: float = 0.25
    seed: int = 0
    name: str = "countdown"

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]:
        _split(split)
        train, test = _countdown_split(self.pool, self.test_fraction, self.seed)
        chosen = (train if split == "train" else test)[:n]
        return [{"id": f"countdown-{'-'.join(map(str, p.numbers))}-{p.target}", "numbers": list(p.numbers),
                 "target": p.target} for p in chosen]

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": self._problem(query).prompt()}]

    def verify(self, query: dict[str, Any], response: str) -> Verdict:
        return countdown.verify(self._problem(query), response)

    def reference(self, query: dict[str, Any]) -> str:
        p = self._problem(query)
        return f"<answer>{countdown.solve(p.numbers, p.target)}</answer>"

    def check(self, query: Any) -> None:
        self._problem(query)

    @staticmethod
    def _problem(query: Any) -> countdown.Countdown:
        ok = (isinstance(query, dict) and isinstance(query.get("numbers"), list)
              and all(type(x) is int for x in query["numbers"]) and type(query.get("target")) is int)
        if not ok:
            raise ValueError("a countdown query needs 'numbers' (a list of integers) and 'target' (an integer)")
        return countdown.Countdown(tuple(query["numbers"]), query["target"])


@lru_cache(maxsize=4)
def _countdown_split(pool: int, test_fraction: float, seed: int):
    """Solver-checked generation takes seconds; every caller in a process shares one split."""
    return countdown.train_test_split(countdown.generate(pool, seed=seed), test_fraction, seed=seed)


CALL_SYSTEM = ("You can call these functions (JSON schema):\n{functions}\n\n"
               'Reply with one call and nothing else, as JSON: {{"name": ..., "arguments": {{...}}}}.')


@dataclass
class FunctionCallingTask:
    """BFCL function calling; a stable hash of the task id puts each task in train or test."""

    bfcl_set: str = "simple_python"
    test_fraction: float = 0.25
    name: str = "function-calling"

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]:
        _split(split)
        out = []
        for t in function_calling.load_tasks(self.bfcl_set):
            bucket = int(hashlib.sha256(t.id.encode()).hexdigest(), 16) % 1000 / 1000
            if (bucket < self.test_fraction) == (split == "test"):
                out.append({"id": t.id, "messages": list(t.messages), "functions": list(t.functions),
                            "ground_truth": list(t.ground_truth)})
        return out[:n]

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]:
        task = self._task(query)
        system = CALL_SYSTEM.format(functions=json.dumps(task.functions, ensure_ascii=False))
        return [{"role": "system", "content": system}, *task.messages]

    def verify(self, query: dict[str, Any], response: str) -> Verdict:
        return function_calling.verify(self._task(query), response)

    def reference(self, query: dict[str, Any]) -> str:
        call = function_calling.gold_call(self._task(query))
        return json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)

    def check(self, query: Any) -> None:
        self._task(query)

    @staticmethod
    def _task(query: Any) -> function_calling.CallTask:
        keys = ("id", "messages", "functions", "ground_truth")
        if not isinstance(query, dict) or any(not isinstance(query.get(k), str if k == "id" else list) for k in keys):
            raise ValueError("a function-calling query needs 'id' (a string) and 'messages', 'functions', "
                             "'ground_truth' (lists)")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                   for m in query["messages"]):
            raise ValueError("function-calling 'messages' must be objects with string 'role' and 'content'")
        return function_calling.CallTask(query["id"], tuple(query["messages"]), tuple(query["functions"]),
                                         tuple(query["ground_truth"]))


TASKS = {"countdown": CountdownTask, "function-calling": FunctionCallingTask}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]()
