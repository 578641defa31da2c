"""The one place that evaluates: conditions × items → resumable records → a table.

A *condition* is a way of adapting the model to an item before it is tested: nothing
(the base model), the item alone, or the item plus each of a list of self-edits.
Every (condition, item, self-edit) evaluation is one record in the run, written as
soon as it finishes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .domain import Domain, Evaluation, ItemError
from .inner_loop import evaluate_base, evaluate_selfedit
from .lora import ResidentLoRA
from .runs import Run

log = logging.getLogger(__name__)

BASE = "base"


@dataclass
class Condition:
    """``selfedits`` maps item id → self-edits to try; ``None`` trains on the item alone."""

    name: str
    selfedits: dict[str, list[str]] | None = None
    generate_seconds: dict[str, float] | None = None  # item id → seconds spent writing its self-edits
    domain: Domain | None = None  # how to read this condition's self-edits, if not the default


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )


def _base_record(run: Run, lora: ResidentLoRA, domain: Domain, item: Any, prefix: str, tags: dict,
                 base_name: str) -> dict[str, Any]:
    key = f"{prefix}{base_name}/{domain.item_id(item)}"
    if not run.done(key):
        try:
            ev = evaluate_base(lora, domain, item)
            rec = {"status": "ok", "score": ev.score, "before": ev.score, "records": ev.records,
                   "seconds": ev.seconds, "extra": ev.extra}
        except ItemError as e:
            log.error("%s", e)
            rec = {"status": "item_error", "score": None, "reason": str(e)}
        run.append(key, {"condition": base_name, "item": domain.item_id(item), "j": 0, **tags, **rec})
    return run.get(key)


def run_conditions(
    run: Run,
    lora: ResidentLoRA,
    domain: Domain,
    items: list[Any],
    conditions: list[Condition],
    *,
    seed: int,
    seeds: int = 1,
    prefix: str = "",
    tags: dict[str, Any] | None = None,
    base_name: str = BASE,
) -> list[dict[str, Any]]:
    """Evaluate every condition on every item, skipping what the run already holds.

    Self-edit ``j`` of an item is evaluated with ``seeds`` inner-loop seeds
    (``seed + j + 1000 * s``). Keys are ``{prefix}{condition}/{item}/{j}/{s}``; ``tags``
    are added to every record (e.g. the ReST-EM round). The model's unadapted score is
    recorded under the condition ``base_name``.
    """
    tags = tags or {}
    units = [(c, item, j, s, se) for item in items for c in conditions
             for j, se in enumerate([None] if c.selfedits is None else c.selfedits[domain.item_id(item)])
             for s in range(seeds)]
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(items) + len(units))
        bases = {}
        for item in items:
            bases[domain.item_id(item)] = _base_record(run, lora, domain, item, prefix, tags, base_name)
            bar.advance(task)
        for cond, item, j, s, selfedit in units:
            iid = domain.item_id(item)
            key = f"{prefix}{cond.name}/{iid}/{j}/{s}"
            bar.update(task, description=f"{cond.name} {iid}")
            base = bases[iid]
            head = {"condition": cond.name, "item": iid, "j": j, "seed": seed + j + 1000 * s, **tags}
            if not run.done(key) and base["status"] == "item_error":
                run.append(key, {**head, "status": "item_error", "score": None, "reason": base["reason"]})
            elif not run.done(key):
                before = Evaluation(base["score"], base["records"])
                res = evaluate_selfedit(lora, cond.domain or domain, item, selfedit, seed=head["seed"], before=before)
                rec = res.to_dict()
                rec["score"] = rec.pop("after")
                if cond.generate_seconds:
                    rec["seconds"]["generate"] = cond.generate_seconds[iid] / max(1, len(cond.selfedits[iid]))
                run.append(key, {**head, "selfedit": selfedit, **rec})
            bar.advance(task)
    return run.records()


def mean_ci(values: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a 95% percentile-bootstrap interval over items."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(records: list[dict[str, Any]], conditions: list[str]) -> list[dict[str, Any]]:
    """One row per condition: mean per-item score (self-edits of an item averaged first)."""
    rows = []
    for name in conditions:
        recs = [r for r in records if r["condition"] == name]
        per_item: dict[str, list[float]] = defaultdict(list)
        seconds: dict[str, float] = defaultdict(float)
        judged: list[float] = []
        metrics: dict[str, list[float]] = defaultdict(list)
        for r in recs:
            if r["status"] == "item_error":
                continue
            per_item[r["item"]].append(r["score"])
            for stage, s in (r.get("seconds") or {}).items():
                seconds[stage] += s
            if (r.get("extra") or {}).get("judge_score") is not None:
                judged.append(r["extra"]["judge_score"])
            for q in r.get("records") or []:
                for m in ("exact_match", "f1"):
                    if m in q:  # knowledge records; ARC records have none
                        metrics[m].append(q[m])
        mean, lo, hi = mean_ci([float(np.mean(v)) for v in per_item.values()])
        rows.append({
            "condition": name, "items": len(per_item), "evaluations": sum(map(len, per_item.values())),
            "score": mean, "ci_low": lo, "ci_high": hi,
            "exact_match": float(np.mean(metrics["exact_match"])) if metrics["exact_match"] else None,
            "f1": float(np.mean(metrics["f1"])) if metrics["f1"] else None,
            "judge_score": float(np.mean(judged)) if judged else None,
            "invalid": sum(r["status"] == "invalid_selfedit" for r in recs),
            "nan_loss": sum(r["status"] == "nan_loss" for r in recs),
            "item_errors": sum(r["status"] == "item_error" for r in recs),
            "seconds": dict(seconds),
        })
    return rows


def markdown_table(rows: list[dict[str, Any]], metric: str = "accuracy") -> str:
    """The baseline table: mean score with its 95% CI, side metrics (where the domain has them),
    failures, wall time."""
    side = [(name, key) for name, key in [("EM %", "exact_match"), ("F1 %", "f1"), ("judge %", "judge_score")]
            if any(r.get(key) is not None for r in rows)]
    head = ["condition", f"{metric} % (95% CI)"] + [name for name, _ in side] + [
        "items", "evals", "invalid", "nan", "train s", "answer s", "generate s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for r in rows:
        s = r["seconds"]
        cells = [r["condition"], f"{100 * r['score']:.1f} ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f})"] + [
                 pct(r.get(key)) for _, key in side] + [
                 str(r["items"]), str(r["evaluations"]), str(r["invalid"]), str(r["nan_loss"]),
                 f"{s.get('train', 0):.0f}", f"{s.get('answer', 0):.0f}", f"{s.get('generate', 0):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
