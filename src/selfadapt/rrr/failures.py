"""The failure dataset: queries the current model gets wrong in every one of N sampled attempts.

GRPO then trains only on these, as in the paper: a reflection can only earn reward where
the model needed one. Each kept query carries its first failed attempt, which becomes
part of the reflection prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..evaluate import progress_bar
from ..generation import SamplingConfig
from ..runs import Run, read_jsonl
from .reflect import attempt
from .tasks import MixedTask, Task, get_task, is_builtin, task_spec

FILE = "failures.jsonl"


def build_failures(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
                   queries: list[dict[str, Any]], run: Run, *, attempts: int, sampling: SamplingConfig,
                   seed: int = 0, chunk: int = 8) -> Path:
    """Sample ``attempts`` answers per query (resumable per chunk), write ``failures.jsonl``."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    todo = [q for q in queries if not run.done(f"attempts/{q['id']}")]
    with progress_bar() as bar:
        job = bar.add_task(f"{task.name}: {attempts} attempts per query", total=len(queries),
                           completed=len(queries) - len(todo))
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            responses = attempt(model, tokenizer, task, [q for q in part for _ in range(attempts)], sampling,
                                seed=seed + start)
            for i, q in enumerate(part):
                mine = responses[i * attempts : (i + 1) * attempts]
                verdicts = [task.verify(q, r) for r in mine]
                first_fail = next((j for j, v in enumerate(verdicts) if not v.correct), None)
                run.append(f"attempts/{q['id']}", {
                    "id": q["id"], "query": q, "attempts": attempts, "solved": sum(v.correct for v in verdicts),
                    "failed_attempt": None if first_fail is None else mine[first_fail],
                    "reason": None if first_fail is None else verdicts[first_fail].reason})
            bar.advance(job, len(part))
    kept = [r for r in run.records() if r["key"].startswith("attempts/") and r["solved"] == 0]
    out = run.path / FILE
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps({"task": task_spec(task), "id": r["id"], "query": r["query"],
                                "attempt": r["failed_attempt"], "reason": r["reason"]}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out


def _read_failures(path: Path, trusted: tuple[str, ...]) -> tuple[Task, str, list[dict[str, Any]]]:
    """One failure dataset (a file or the run directory holding one); errors name file and line.
    Its task is loaded only if selfadapt defines it or it is one of the ``trusted`` specs the
    user named: a task spec can name a Python file, and importing it runs that file."""
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no failure dataset here (run `selfadapt rrr build-failures` first)")
    task: Task | None = None
    spec = ""
    records = []
    for n, rec in read_jsonl(path):
        if not isinstance(rec.get("attempt"), str) or not isinstance(rec.get("task"), str):
            raise ValueError(f"{path}: line {n}: expected an object with string 'task' and 'attempt'")
        if task is None:
            if not is_builtin(rec["task"]) and rec["task"] not in trusted:
                raise ValueError(f"{path}: line {n}: the task {rec['task']!r} is code from outside selfadapt, and a "
                                 "data file cannot choose code to run; if you trust it, name it yourself: "
                                 f"--task {rec['task']}")
            try:
                task, spec = get_task(rec["task"]), rec["task"]
            except ValueError as e:
                raise ValueError(f"{path}: line {n}: {e}") from None
        elif rec["task"] != spec:
            raise ValueError(f"{path}: line {n}: task {rec['task']!r} differs from {spec!r} on earlier lines")
        try:
            task.check(rec.get("query"))
        except ValueError as e:
            raise ValueError(f"{path}: line {n}: {e}") from None
        records.append(rec)
    if task is None:
        raise ValueError(f"{path}: the failure dataset is empty (the model solved every query?)")
    return task, spec, records


def load_failures(paths: str | Path | list[str | Path],
                  trusted: list[str] | tuple[str, ...] = ()) -> tuple[Task, list[dict[str, Any]]]:
    """Read one or more failure datasets. Datasets of different tasks make one ``MixedTask``
    run, each query tagged with its task's spec (its DISCO domain). A dataset of your own task
    loads only if its spec is among ``trusted`` (``rrr train --task``)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("no failure dataset given")
    tasks: dict[str, Task] = {}
    records: list[dict[str, Any]] = []
    for path in paths:
        task, spec, recs = _read_failures(Path(path), tuple(trusted))
        tasks.setdefault(spec, task)
        records += recs
    if len(tasks) == 1:
        return next(iter(tasks.values())), records
    return MixedTask(tasks), [{**r, "query": {**r["query"], "task": r["task"]}} for r in records]
