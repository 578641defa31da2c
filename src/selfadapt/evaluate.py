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
from pathlib import Path
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


def _base_record(run: Run, lora: ResidentLoRA, domain: Domain, item: Any) -> dict[str, Any]:
    key = f"{BASE}/{domain.item_id(item)}"
    if not run.done(key):
        try:
            ev = evaluate_base(lora, domain, item)
            rec = {"status": "ok", "score": ev.score, "before": ev.score, "records": ev.records,
                   "seconds": ev.seconds, "extra": ev.extra}
        except ItemError as e:
            log.error("%s", e)
            rec = {"status": "item_error", "score": None, "reason": str(e)}
        run.append(key, {"condition": BASE, "item": domain.item_id(item), "j": 0, **rec})
    return run.get(key)


def run_conditions(
    run: Run, lora: ResidentLoRA, domain: Domain, items: list[Any], conditions: list[Condition], *, seed: int
) -> list[dict[str, Any]]:
    """Evaluate every condition on every item, skipping what the run already holds."""
    units = [(c, item, j, se) for item in items for c in conditions
             for j, se in enumerate([None] if c.selfedits is None else c.selfedits[domain.item_id(item)])]
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(items) + len(units))
        bases = {}
        for item in items:
            bases[domain.item_id(item)] = _base_record(run, lora, domain, item)
            bar.advance(task)
        for cond, item, j, selfedit in units:
            iid = domain.item_id(item)
            key = f"{cond.name}/{iid}/{j}"
            bar.update(task, description=f"{cond.name} {iid}")
            base = bases[iid]
            if not run.done(key) and base["status"] == "item_error":
                run.append(key, {"condition": cond.name, "item": iid, "j": j, "status": "item_error",
                                 "score": None, "reason": base["reason"]})
            elif not run.done(key):
                before = Evaluation(base["score"], base["records"])
                res = evaluate_selfedit(lora, cond.domain or domain, item, selfedit, seed=seed + j, before=before)
                rec = res.to_dict()
                rec["score"] = rec.pop("after")
                if cond.generate_seconds:
                    rec["seconds"]["generate"] = cond.generate_seconds[iid] / max(1, len(cond.selfedits[iid]))
                run.append(key, {"condition": cond.name, "item": iid, "j": j, "seed": seed + j,
                                 "selfedit": selfedit, **rec})
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


def plot_scores(rows: list[dict[str, Any]], out: Path, title: str) -> Path:
    """Bar chart of each condition's mean score with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 4))
    names = [r["condition"] for r in rows]
    means = np.array([r["score"] for r in rows]) * 100
    err = np.array([[r["score"] - r["ci_low"], r["ci_high"] - r["score"]] for r in rows]).T * 100
    ax.bar(names, means, yerr=err, capsize=4, color="#4c72b0")
    for i, m in enumerate(means):
        ax.text(i, m + 1, f"{m:.1f}", ha="center", va="bottom")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.set_ylim(0, max(100, float(np.nanmax(means + err[1])) + 5) if len(rows) else 100)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The baseline table: mean score with its 95% CI, side metrics, failures, wall time."""
    judged = any(r["judge_score"] is not None for r in rows)
    head = ["condition", "accuracy % (95% CI)", "EM %", "F1 %"] + (["judge %"] if judged else []) + [
        "items", "evals", "invalid", "nan", "train s", "answer s", "generate s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for r in rows:
        s = r["seconds"]
        cells = [r["condition"], f"{100 * r['score']:.1f} ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f})",
                 pct(r["exact_match"]), pct(r["f1"])] + ([pct(r["judge_score"])] if judged else []) + [
                 str(r["items"]), str(r["evaluations"]), str(r["invalid"]), str(r["nan_loss"]),
                 f"{s.get('train', 0):.0f}", f"{s.get('answer', 0):.0f}", f"{s.get('generate', 0):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
