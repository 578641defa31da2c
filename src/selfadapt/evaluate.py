"""The one place that evaluates: conditions × items → resumable records → a table.

A *condition* is a way of adapting the model to an item before it is tested: nothing
(the base model), the item alone, or the item plus each of a list of self-edits.
Every (condition, item, self-edit) evaluation is one record in the run, written as
soon as it finishes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .domain import Domain, Evaluation
from .lora import ResidentLoRA
from .runs import Run
from .workers import InProcess, Job, Workers

log = logging.getLogger(__name__)

BASE = "base"
WRITE = "write"  # the condition of a record of written self-edits (``policy.write_into_run``)


@dataclass
class Condition:
    """``selfedits`` maps item id → self-edits to try; ``None`` trains on the item alone."""

    name: str
    selfedits: dict[str, list[str]] | None = None
    generate_seconds: dict[str, float] | None = None  # item id → seconds spent writing its self-edits
    domain: Domain | None = None  # how to read this condition's self-edits, if not the default


def progress_bar() -> Progress:
    return Progress(
        # markup off: a file name in a description keeps its brackets ("report[final].txt")
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )


def run_conditions(
    run: Run,
    workers: Workers | ResidentLoRA,
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

    Every self-edit of an item is evaluated with ``seeds`` inner-loop seeds ``seed + 1000 * s``,
    the same as the item-alone condition: with one seed per repetition ``s`` for all of them,
    a self-edit's difference from passage-only holds no LoRA-initialisation noise, and
    best-of-k selects the self-edit, not a lucky initialisation.
    Keys are ``{prefix}{condition}/{item}/{j}/{s}``; ``tags``
    are added to every record (e.g. the ReST-EM round). The model's unadapted score is
    recorded under the condition ``base_name``. ``workers`` run the jobs (a bare
    ``ResidentLoRA``: in this process); this process alone writes the records. A job is
    ``inner_loop.evaluate_selfedit`` (``evaluate_base`` for the unadapted score), the same code in
    this process or on a Ray actor (``workers.run_job``); its record's adapted score is ``score``.
    """
    workers = InProcess(workers) if isinstance(workers, ResidentLoRA) else workers
    tags = tags or {}
    base_keys = {domain.item_id(it): f"{prefix}{base_name}/{domain.item_id(it)}" for it in items}
    units = [(c, item, j, s, se) for item in items for c in conditions
             for j, se in enumerate([None] if c.selfedits is None else c.selfedits[domain.item_id(item)])
             for s in range(seeds)]
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=len(items) + len(units),
                            completed=sum(run.done(k) for k in base_keys.values()))

        def done(job: Job, record: dict[str, Any]) -> None:
            run.append(job.key, record)
            bar.update(task, advance=1, description=f"{record['condition']} {record['item']}")

        workers.run([Job(base_keys[domain.item_id(it)], {"condition": base_name, "item": domain.item_id(it), "j": 0,
                                                         **tags}, domain, it, base=True)
                     for it in items if not run.done(base_keys[domain.item_id(it)])], done)
        jobs = []
        for cond, item, j, s, selfedit in units:
            iid = domain.item_id(item)
            key = f"{prefix}{cond.name}/{iid}/{j}/{s}"
            head = {"condition": cond.name, "item": iid, "j": j, "seed": seed + 1000 * s, **tags}
            base = run.get(base_keys[iid])
            if run.done(key):
                bar.advance(task)
            elif base["status"] == "item_error":
                done(Job(key, head, domain, item), {**head, "status": "item_error", "score": None,
                                                    "reason": base["reason"]})
            else:
                jobs.append(Job(key, head, cond.domain or domain, item, selfedit,
                                before=Evaluation(base["score"], base["records"])))
        generate = {c.name: c for c in conditions if c.generate_seconds}

        def done_selfedit(job: Job, record: dict[str, Any]) -> None:
            cond = generate.get(record["condition"])
            if cond and record.get("seconds") is not None:  # writing time, shared by the item's self-edits
                iid = record["item"]
                record["seconds"]["generate"] = cond.generate_seconds[iid] / max(1, len(cond.selfedits[iid]))
            done(job, record)

        workers.run(jobs, done_selfedit)
    return run.records()


@dataclass
class Result:
    """One evaluation, as the reward reads it: keyed by ``item``, self-edit index ``j`` and
    inner-loop ``seed`` (None for the unadapted score). ``score``: the model's score on the item
    after the condition's update (the unadapted model's own for the base condition); ``base``: the
    unadapted model's score on the same item; ``gain``: ``score − base``, None where no score was
    possible (an item or a worker failed). ``probe``: the probe's score (``knowledge/probe.py``)
    after the same update, where the domain reports one."""

    condition: str
    item: str
    j: int
    seed: int | None = None
    score: float | None = None
    base: float | None = None
    gain: float | None = None
    probe: float | None = None
    status: str | None = None
    selfedit: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    key: str | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> Result:
        """The one place a record's fields are read: the run's files keep their names (the
        unadapted score is ``before`` there) so that runs on disk resume and read as they are."""
        return cls(record["condition"], record["item"], record["j"], record.get("seed"), record.get("score"),
                   record.get("before"), record.get("gain"), (record.get("extra") or {}).get("probe"),
                   record.get("status"), record.get("selfedit"), record.get("seconds") or {}, record.get("key"))


def as_results(records: Iterable[dict[str, Any] | Result]) -> list[Result]:
    """The evaluations among ``records`` (a run's write records left out) as ``Result``s; a
    ``Result`` is taken as it is."""
    return [r if isinstance(r, Result) else Result.of(r) for r in records
            if isinstance(r, Result) or r["condition"] != WRITE]


def mean_ci(values: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a 95% percentile-bootstrap interval over items."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _record_value(r: dict[str, Any], metric: str) -> float | None:
    """A record's score, or the mean of a per-question metric over its graded questions."""
    if metric == "score":
        return r["score"]
    values = [q[metric] for q in r.get("records") or [] if q.get(metric) is not None]
    return float(np.mean(values)) if values else None


def per_item(records: list[dict[str, Any]], condition: str, metric: str = "score",
             failed_scores: bool = False) -> dict[str, float]:
    """item → the condition's mean over that item's self-edits and seeds (items without a value left out).
    ``failed_scores``: an evaluation with no graded question (an invalid self-edit, a diverged
    loss) counts with its score, 0, as it does for the reward, instead of being left out."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["condition"] == condition and r["status"] != "item_error":
            v = r["score"] if failed_scores and not r.get("records") else _record_value(r, metric)
            if v is not None:
                values[r["item"]].append(v)
    return {item: float(np.mean(v)) for item, v in values.items()}


@dataclass
class Paired:
    """A condition minus a reference on the items both have: the mean difference, its 95%
    paired-bootstrap interval, and how many items it wins, ties and loses."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int

    def cell(self, scale: float = 100, digits: int = 1) -> str:
        if not self.n:
            return "–"
        return f"{scale * self.mean:+.{digits}f} ({scale * self.ci_low:+.{digits}f}…{scale * self.ci_high:+.{digits}f})"

    @property
    def wtl(self) -> str:
        return f"{self.wins}/{self.ties}/{self.losses}" if self.n else "–"


def paired(a: dict[str, float], b: dict[str, float], *, tol: float = 1e-9, resamples: int = 2000,
           seed: int = 0) -> Paired:
    """``a`` − ``b`` paired by item: resampling items keeps each item's two scores together,
    so the interval reflects how consistently a beats b, not how much items differ."""
    items = sorted(set(a) & set(b))
    d = [a[i] - b[i] for i in items]
    mean, lo, hi = mean_ci(d, resamples=resamples, seed=seed)
    return Paired(len(d), mean, lo, hi, sum(x > tol for x in d), sum(abs(x) <= tol for x in d),
                  sum(x < -tol for x in d))


def share(a: dict[str, float], ceiling: dict[str, float], *, resamples: int = 2000, seed: int = 0
          ) -> dict[str, Any]:
    """``a`` as a share of ``ceiling`` on the items both have: the ratio of their means of per-item
    values, with a 95% paired-bootstrap interval (items resampled with both values; a resample whose
    ceiling is 0 left out). The ratio is None where the ceiling's mean is 0."""
    items = sorted(set(a) & set(ceiling))
    x, c = np.array([a[i] for i in items], dtype=float), np.array([ceiling[i] for i in items], dtype=float)
    ratio = float(x.sum() / c.sum()) if items and c.sum() > 0 else None
    lo = hi = None
    if ratio is not None:
        idx = np.random.default_rng(seed).integers(0, len(items), size=(resamples, len(items)))
        num, den = x[idx].sum(axis=1), c[idx].sum(axis=1)
        ratios = num[den > 0] / den[den > 0]
        lo, hi = float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))
    return {"n": len(items), "ratio": ratio, "ci_low": lo, "ci_high": hi}


def summarize(records: list[dict[str, Any]], conditions: list[str], *, metrics: tuple[str, ...] = (),
              references: tuple[str, ...] = (), metric: str = "score", ceiling: str | None = None
              ) -> list[dict[str, Any]]:
    """One row per condition: mean per-item ``metric`` (a record's score, or a per-question
    value averaged; self-edits of an item averaged first) with a bootstrap interval, each side
    ``metrics`` averaged the same way, and the paired difference from each reference condition
    present in the records. With a ``ceiling`` condition in the records, every other row's
    ``of_ceiling`` is its share of it (``share``); None on the ceiling's own row and without one."""
    present = {r["condition"] for r in records}
    ref_scores = {ref: per_item(records, ref, metric, failed_scores=True) for ref in references if ref in present}
    top = per_item(records, ceiling, metric, failed_scores=True) if ceiling in present else None
    rows = []
    for name in conditions:
        recs = [r for r in records if r["condition"] == name]
        scores = per_item(records, name, metric, failed_scores=True)
        seconds: dict[str, float] = defaultdict(float)
        judged: list[float] = []
        for r in recs:
            for stage, sec in (r.get("seconds") or {}).items():
                seconds[stage] += sec
            if (r.get("extra") or {}).get("judge_score") is not None:
                judged.append(r["extra"]["judge_score"])
        mean, lo, hi = mean_ci(list(scores.values()))
        side = {m: per_item(records, name, m) for m in metrics}
        rows.append({
            "condition": name, "items": len(scores), "evaluations": sum(r["status"] != "item_error" for r in recs),
            "score": mean, "ci_low": lo, "ci_high": hi,
            "metrics": {m: float(np.mean(list(v.values()))) if v else None for m, v in side.items()},
            "vs": {ref: asdict(paired(scores, s)) for ref, s in ref_scores.items() if ref != name},
            "of_ceiling": {"ceiling": ceiling, **share(scores, top)} if top is not None and name != ceiling else None,
            "judge_score": float(np.mean(judged)) if judged else None,
            "invalid": sum(r["status"] == "invalid_selfedit" for r in recs),
            "nan_loss": sum(r["status"] == "nan_loss" for r in recs),
            "item_errors": sum(r["status"] == "item_error" for r in recs),
            "seconds": dict(seconds),
        })
    return rows


def markdown_table(rows: list[dict[str, Any]], metric: str = "accuracy",
                   metric_names: dict[str, tuple[str, float]] | None = None, references: tuple[str, ...] = ()) -> str:
    """The baseline table: the reward metric with its 95% CI, the paired difference from each
    reference (with win/tie/loss counts), the share of a ceiling (``summarize``'s ``ceiling``),
    side metrics (column name, scale), failures, wall time."""
    metric_names = metric_names or {}
    side = [m for m in metric_names if any(r["metrics"].get(m) is not None for r in rows)]
    judge = any(r.get("judge_score") is not None for r in rows)
    ceiling = next((r["of_ceiling"]["ceiling"] for r in rows if r.get("of_ceiling")), None)
    head = ["condition", f"{metric} % (95% CI)"]
    for ref in references:
        head += [f"Δ vs {ref} (95% CI)", f"W/T/L vs {ref}"]
    head += [f"% of {ceiling} (95% CI)"] if ceiling else []
    head += [metric_names[m][0] for m in side] + (["judge %"] if judge else []) + [
        "items", "evals", "invalid", "nan", "train s", "answer s", "generate s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    num = lambda v, scale=100: "–" if v is None else f"{scale * v:.1f}" if scale == 100 else f"{scale * v:.2f}"  # noqa: E731
    for r in rows:
        s = r["seconds"]
        cells = [r["condition"], f"{100 * r['score']:.1f} ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f})"]
        for ref in references:
            p = Paired(**r["vs"][ref]) if ref in r["vs"] else None
            cells += [p.cell() if p else "–", p.wtl if p else "–"]
        if ceiling:
            c = r.get("of_ceiling") or {}
            cells.append("–" if c.get("ratio") is None else
                         f"{100 * c['ratio']:.0f} ({100 * c['ci_low']:.0f}–{100 * c['ci_high']:.0f})")
        cells += [num(r["metrics"].get(m), metric_names[m][1]) for m in side] + (
            [num(r.get("judge_score"))] if judge else []) + [
            str(r["items"]), str(r["evaluations"]), str(r["invalid"]), str(r["nan_loss"]),
            f"{s.get('train', 0):.0f}", f"{s.get('answer', 0):.0f}", f"{s.get('generate', 0):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
