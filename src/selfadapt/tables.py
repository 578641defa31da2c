"""Tables for a terminal: a few key columns that fit 100 columns, the full table left in the run.

A run writes its whole table as markdown (``table.md``, ``summary.md``: every side measure,
failure counts, seconds per stage): ``key_table`` shows the columns named for a command as a
rich ``Table`` and says where the full one is. ``answers_table`` is ``learn``'s check
questions before and after, as ``selfadapt demo`` prints them.
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# The key columns of each command's table, by the start of their headers, in the table's order.
KEYS = {
    # condition, the reward with its interval (exact match / success, or "metric NAME": --metric), the paired
    # difference from passage+form (the first reference; passage-only with --no-form-equalized), the share of the
    # open-book+form ceiling
    "eval knowledge": ("condition", "exact_match %", "metric ", "Δ vs passage", "W/T/L vs passage", "% of "),
    "eval arc": ("condition", "success %", "metric ", "Δ vs ", "W/T/L vs "),
    "eval continual": ("condition", "final ", "forgetting", "final Δ vs base", "W/T/L vs base"),
    "train": ("round", "mean reward", "positive", "winners", "base score", "adapted score", "probe drop"),
    "rrr eval": ("model", "1st attempt %", "2nd attempt %", "Δ 2nd vs base", "general QA %"),
    "rrr probe": ("task", "1st attempt %", "2nd attempt %", "retry success", "in the 5–50% band"),
}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def key_table(path: Path | str, keys: tuple[str, ...] = ()) -> RenderableType:
    """The markdown file ``path`` for a terminal: each table as a rich ``Table`` of the columns whose
    header starts with one of ``keys`` (all of them without ``keys``), its other lines as text, and
    a last line naming the file that holds every column."""
    path = Path(path)
    parts: list[RenderableType] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if not rows:
            return
        head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
        shown = [i for i, h in enumerate(head) if not keys or h.startswith(keys)]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for i in shown:  # "(95% CI)" under its measure's name: the numbers set a column's width, not its header
            table.add_column(head[i].replace(" (95% CI)", "\n(95% CI)"), overflow="fold",
                             justify="left" if i == shown[0] else "right")
        for r in body:
            table.add_row(*(Text(r[i] if i < len(r) else "") for i in shown))
        parts.append(table)
        rows.clear()

    for line in path.read_text().splitlines():
        if line.lstrip().startswith("|"):
            rows.append(_cells(line))
            continue
        flush()
        if line.strip():
            heading = line.startswith("#")
            parts.append(Text(line.lstrip("# ") if heading else line, style="bold" if heading else ""))
    flush()
    parts.append(Text(f"every column: {path}", style="dim"))
    return Group(*parts)


def answers_table(checks: list[dict], title: str | None = None) -> Table:
    """``learn``'s check questions: question · before · after · expected, a mark where an answer
    holds the expected one."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left", show_lines=False)
    table.add_column("question (taught)", overflow="fold", ratio=3)
    for name in ("before", "after", "expected"):
        table.add_column(name, overflow="fold", ratio=2)
    mark = lambda text, right: Text(f"✓ {text}", style="green") if right else Text(text)  # noqa: E731
    for c in checks:
        table.add_row(Text(c["question"]), mark(c["before"], c.get("right_before")),
                      mark(c["after"], c.get("right_after")), Text(c["expected"]))
    return table
