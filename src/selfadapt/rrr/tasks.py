"""Verifiable tasks behind one small interface, so the reflect/retry/GRPO code is task-free.

A query is a plain JSON object with an ``"id"`` (it is written to failure datasets and
run records as is); a task turns it into the first-attempt conversation and checks a
response with its verifier.

A task is named by a spec, its name and optional difficulty knobs:
``countdown:numbers=2,max_target=30`` or ``function-calling:set=multiple,functions=2``.
The paper trains on failures of tasks the model solves some of the time; the knobs move
a task into that range for a small model (``selfadapt rrr probe`` measures where).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Protocol

from ..constrained import lark_grammar, schema_grammar
from ..plugins import TASKS_GROUP, entry_point, installed, is_reference, load_object
from . import Verdict, countdown, function_calling, reasoning_gym

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

    def grammar(self, query: dict[str, Any]) -> str | None:
        """The llguidance grammar every answer to ``query`` is sampled under (the task's
        ``constrain`` knob), or None: free text, parsed by the verifier."""

    def retry_grammar(self, query: dict[str, Any], attempt: str) -> str | None:
        """The grammar of a retry after the failed ``attempt`` (by default the same as ``grammar``)."""


def _split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


@dataclass
class CountdownTask:
    """Seeded, solver-checked Countdown instances; the split is fixed by ``pool`` and ``seed``.

    Difficulty: ``numbers`` per instance (0: the paper's mix of 3 and 4), their ``max_number``,
    and the largest target ``max_target``. ``shots`` solved examples (fixed instances) go
    before the query as earlier turns of the conversation, since a small model copies an
    answer format from a demonstration more readily than from an instruction; a query
    equal to a demonstration is left out.
    """

    pool: int = 400
    test_fraction: float = 0.25
    seed: int = 0
    numbers: int = 0
    max_number: int = 25
    max_target: int = 100
    shots: int = 0
    prefill: int = 0  # 1: every answer starts with "<answer>", written for the model
    constrain: int = 0  # 1: answers are sampled under ``countdown.answer_grammar`` (each number once);
    # 2: and a retry under ``countdown.retry_grammar`` (not the failed attempt's value)
    name: str = "countdown"

    def __post_init__(self) -> None:
        if self.numbers not in (0, 2, 3, 4, 5) or self.max_number < 2 or self.max_target < 10:
            raise ValueError("countdown needs numbers in 2–5 (0: 3 or 4), max_number >= 2, max_target >= 10")
        if self.prefill not in (0, 1) or self.constrain not in (0, 1, 2):
            raise ValueError("countdown prefill must be 0 or 1, constrain 0, 1 or 2")
        if not 0 <= self.shots <= len(COUNTDOWN_SHOTS):
            raise ValueError(f"countdown shots must be 0–{len(COUNTDOWN_SHOTS)}")

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]:
        _split(split)
        sizes = (self.numbers,) if self.numbers else (3, 4)
        train, test = _countdown_split(self.pool, self.test_fraction, self.seed, sizes, self.max_number,
                                       self.max_target)
        shown = {(p.numbers, p.target) for p, _ in COUNTDOWN_SHOTS[: self.shots]}
        chosen = [p for p in (train if split == "train" else test) if (p.numbers, p.target) not in shown][:n]
        return [{"id": f"countdown-{'-'.join(map(str, p.numbers))}-{p.target}", "numbers": list(p.numbers),
                 "target": p.target} for p in chosen]

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]:
        shots = [turn for problem, answer in COUNTDOWN_SHOTS[: self.shots]
                 for turn in ({"role": "user", "content": problem.prompt()},
                              {"role": "assistant", "content": f"<answer>{answer}</answer>"})]
        return [*shots, {"role": "user", "content": self._problem(query).prompt()}]

    def verify(self, query: dict[str, Any], response: str) -> Verdict:
        return countdown.verify(self._problem(query), response)

    def prefix(self, query: dict[str, Any]) -> str:
        return "<answer>" if self.prefill else ""

    def grammar(self, query: dict[str, Any]) -> str | None:
        return lark_grammar(countdown.answer_grammar(self._problem(query).numbers)) if self.constrain else None

    def retry_grammar(self, query: dict[str, Any], attempt: str) -> str | None:
        if self.constrain != 2:
            return self.grammar(query)
        return lark_grammar(countdown.retry_grammar(self._problem(query).numbers, countdown.extract_answer(attempt)))

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


COUNTDOWN_SHOTS = (  # the ``shots`` demonstrations; an instance equal to one is left out of the splits
    (countdown.Countdown((4, 7), 28), "4 * 7"),
    (countdown.Countdown((9, 3, 5), 17), "9 + 3 + 5"),
    (countdown.Countdown((6, 4, 3, 2), 20), "6 * 3 + 4 - 2"),
)


@lru_cache(maxsize=8)
def _countdown_split(pool: int, test_fraction: float, seed: int, sizes: tuple[int, ...], max_number: int,
                     max_target: int):
    """Solver-checked generation takes seconds; every caller in a process shares one split."""
    problems = countdown.generate(pool, seed=seed, sizes=sizes, max_number=max_number, max_target=max_target)
    return countdown.train_test_split(problems, test_fraction, seed=seed)


CALL_SYSTEM = ("You can call these functions (JSON schema):\n{functions}\n\n"
               'Reply with one call and nothing else, as JSON: {{"name": ..., "arguments": {{...}}}}.')
CALL_SHOT = ('\n\nFor example, offered {{"name": "get_weather", "parameters": {{"type": "dict", "properties": '
             '{{"city": {{"type": "string"}}, "days": {{"type": "integer"}}}}, "required": ["city"]}}}}, the request '
             '"Weather in Paris for the next 3 days?" is answered: '
             '{{"name": "get_weather", "arguments": {{"city": "Paris", "days": 3}}}}')


@dataclass
class FunctionCallingTask:
    """BFCL function calling; a stable hash of the task id puts each task in train or test.

    Difficulty: the BFCL ``set`` (``simple_python``: one function offered; ``multiple``:
    several) and, for ``multiple``, how many ``functions`` are offered (0: all): the
    ground-truth function and the first others. ``shots=1`` adds a worked example of the
    reply format (a made-up function) to the instructions.
    """

    set: str = "simple_python"
    functions: int = 0
    shots: int = 0
    prefill: int = 0  # 1: every answer starts with '{"name": "', written for the model
    constrain: int = 0  # 1: answers are sampled under ``function_calling.call_schema`` of the offered functions
    test_fraction: float = 0.25
    name: str = "function-calling"

    def __post_init__(self) -> None:
        if self.functions < 0:
            raise ValueError("functions must be >= 0 (0: offer every function)")
        if self.shots not in (0, 1) or self.prefill not in (0, 1) or self.constrain not in (0, 1):
            raise ValueError("function-calling shots, prefill and constrain must be 0 or 1")

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]:
        _split(split)
        out = []
        for t in function_calling.load_tasks(self.set):
            bucket = int(hashlib.sha256(t.id.encode()).hexdigest(), 16) % 1000 / 1000
            if (bucket < self.test_fraction) == (split == "test"):
                out.append({"id": t.id, "messages": list(t.messages), "functions": self._offered(t),
                            "ground_truth": list(t.ground_truth)})
        return out[:n]

    def _offered(self, t: function_calling.CallTask) -> list[dict[str, Any]]:
        if not self.functions:
            return list(t.functions)
        gold = {name for truth in t.ground_truth for name in truth}
        right = [f for f in t.functions if f["name"] in gold]
        return right + [f for f in t.functions if f["name"] not in gold][: max(0, self.functions - len(right))]

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]:
        task = self._task(query)
        system = (CALL_SYSTEM + (CALL_SHOT if self.shots else "")).format(
            functions=json.dumps(task.functions, ensure_ascii=False))
        return [{"role": "system", "content": system}, *task.messages]

    def verify(self, query: dict[str, Any], response: str) -> Verdict:
        return function_calling.verify(self._task(query), response)

    def prefix(self, query: dict[str, Any]) -> str:
        return '{"name": "' if self.prefill else ""

    def grammar(self, query: dict[str, Any]) -> str | None:
        return schema_grammar(function_calling.call_schema(self._task(query).functions)) if self.constrain else None

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


@dataclass
class MixedTask:
    """Several tasks in one training run (DISCO's domains): each query names its task's spec
    in ``"task"`` and is routed to it."""

    tasks: dict[str, Task]
    name: str = "mixed"

    def __post_init__(self) -> None:
        if len(self.tasks) < 2:
            raise ValueError("a mixed task needs at least two tasks")

    def _of(self, query: Any) -> Task:
        spec = query.get("task") if isinstance(query, dict) else None
        if spec not in self.tasks:
            raise ValueError(f"a mixed-task query needs 'task', one of {', '.join(self.tasks)}; got {spec!r}")
        return self.tasks[spec]

    def queries(self, split: str, n: int | None = None) -> list[dict[str, Any]]:
        """``n`` queries of each task, tagged with its spec."""
        return [{**q, "task": spec} for spec, t in self.tasks.items() for q in t.queries(split, n)]

    def messages(self, query: dict[str, Any]) -> list[dict[str, str]]:
        return self._of(query).messages(query)

    def verify(self, query: dict[str, Any], response: str) -> Verdict:
        return self._of(query).verify(query, response)

    def reference(self, query: dict[str, Any]) -> str:
        return self._of(query).reference(query)

    def prefix(self, query: dict[str, Any]) -> str:
        prefix = getattr(self._of(query), "prefix", None)
        return prefix(query) if prefix else ""

    def grammar(self, query: dict[str, Any]) -> str | None:
        grammar = getattr(self._of(query), "grammar", None)
        return grammar(query) if grammar else None

    def retry_grammar(self, query: dict[str, Any], attempt: str) -> str | None:
        grammar = getattr(self._of(query), "retry_grammar", None)
        return grammar(query, attempt) if grammar else self.grammar(query)

    def check(self, query: Any) -> None:
        self._of(query).check(query)


TASKS = {"countdown": CountdownTask, "function-calling": FunctionCallingTask}
KNOBS = {"countdown": ("numbers", "max_number", "max_target", "shots", "prefill", "constrain"),
         "function-calling": ("set", "functions", "shots", "prefill", "constrain")}


REQUIRED = ("name", "queries", "messages", "verify", "reference", "check")


def is_builtin(spec: str) -> bool:
    """A task selfadapt itself defines (a built-in or reasoning-gym's). Only these may be named
    by a data file: a failure dataset from someone else must not choose which code runs, so
    your own task (``file.py:NAME``, ``pkg.module:NAME``, a plug-in) comes from the command line."""
    name = spec.partition(":")[0]
    return name in TASKS or name == reasoning_gym.PREFIX


def get_task(spec: str) -> Task:
    """A task from its spec: a built-in ``NAME`` or ``NAME:knob=value,knob=value`` (see the module
    docstring), ``reasoning-gym:NAME[:knob=value,...]``, your own ``pkg.module:NAME`` or
    ``path/to/file.py:NAME`` (a Task class or instance), or a plug-in installed under the
    entry-point group ``selfadapt.tasks``."""
    name, _, rest = spec.partition(":")
    if name == reasoning_gym.PREFIX:
        return reasoning_gym.ReasoningGymTask.from_spec(spec)
    if is_reference(spec):
        return _user_task(spec, load_object(spec))
    plugin = entry_point(TASKS_GROUP, name) if name not in TASKS else None
    if plugin is not None:
        return _user_task(spec, plugin)
    if name not in TASKS:
        plugins = installed(TASKS_GROUP)
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}, reasoning-gym:NAME"
                         + (f", {', '.join(plugins)}" if plugins else "")
                         + ", or your own pkg.module:NAME / file.py:NAME")
    types = {f.name: f.type for f in fields(TASKS[name])}
    kwargs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in KNOBS[name]:
            raise ValueError(f"task spec {spec!r}: {item!r} is not knob=value; {name} knobs: {', '.join(KNOBS[name])}")
        try:
            kwargs[key] = int(value) if types[key] in (int, "int") else value
        except ValueError:
            raise ValueError(f"task spec {spec!r}: {key} must be an integer, got {value!r}") from None
    return TASKS[name](**kwargs)


def _user_task(spec: str, obj: Any) -> Task:
    """A user's Task class (instantiated) or instance, checked for the protocol's members; it
    remembers its spec, so failure files name it and ``rrr train`` loads it again."""
    missing = [m for m in REQUIRED if not hasattr(obj, m)]
    if missing:
        raise ValueError(f"{spec}: not a task, it lacks {', '.join(missing)} (see docs/plugins.md, 'Your own task')")
    task = obj() if isinstance(obj, type) else obj
    if getattr(task, "spec", None) is None:
        task.spec = spec
    return task


def task_spec(task: Task) -> str:
    """The spec that ``get_task`` turns back into this task (knobs at their defaults left out)."""
    if getattr(task, "spec", None):  # reasoning-gym and user tasks
        return task.spec
    if task.name not in KNOBS:
        return task.name
    default = type(task)()
    knobs = [f"{k}={getattr(task, k)}" for k in KNOBS[task.name] if getattr(task, k) != getattr(default, k)]
    return task.name + (":" + ",".join(knobs) if knobs else "")
