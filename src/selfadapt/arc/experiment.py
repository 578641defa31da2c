"""``selfadapt eval arc`` and ``selfadapt train arc``: the ARC baseline table and ReST-EM.

Conditions (success = fraction of (task, self-edit) pairs whose adapted model solves the task):
- ``icl``: no update, the examples in context (the model's unadapted score);
- ``ttt-plain``: TTT with the default configuration (``DEFAULT_TTT``, no self-edit);
- ``own``: TTT configured by self-edits from the untrained model;
- ``oracle``: every configuration of a small grid; a task counts as solved if any does;
- ``round-N``: a policy trained by ``selfadapt train arc`` writes its self-edits and adapts
  itself on them; ``round-N-icl`` is that policy without an update.

CPU realism: ``max_cells`` keeps tasks whose largest grid has at most that many cells,
``cap``/``budget`` bound the TTT data, ``max_tokens`` drops over-long TTT sequences,
``votes`` sets how many transforms inference votes over.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings as S
from ..evaluate import Condition, markdown_table, run_conditions, summarize
from ..generation import SamplingConfig, batch_size_for
from ..lora import LoRAConfig
from ..metric import check_metric, label
from ..models import EMBEDDED, resolve
from ..plots import plot_distributions, plot_scores
from ..policy import Writing, evaluate_policy, selfedits_and_workers
from ..restem import ReSTEMConfig, resolve_policies, run_restem
from ..runs import Run
from ..settings import setting
from ..vllm_backend import check_backend
from ..workers import Parallel
from .augment import GROUPS
from .data import ArcTask, load_tasks
from .domain import ArcDomain
from .selfedit import TTTConfig, config_distribution

log = logging.getLogger(__name__)


SELFEDIT_TOKENS = 256  # the JSON alone is ~100 tokens; small models write a sentence before it


def oracle_grid() -> list[TTTConfig]:
    """The configurations the oracle tries: augmentation sets × loss scope × learning rate."""
    return [TTTConfig(groups, scope, lr, 3) for groups, scope, lr in
            itertools.product([(), ("basic",), ("basic", "size")], ["output", "all"], [1e-4, 1e-3])]


def arc_lora() -> LoRAConfig:
    """TTT LoRA: rank 16 on all projections, long sequences; lr and epochs come from the self-edit."""
    return LoRAConfig(r=16, alpha=32, lr=1e-4, epochs=2, batch_size=4, max_batch_tokens=4096, max_length=2048)


TTT_PLAIN = "ttt-plain"  # the reference every ARC condition is paired with

@dataclass
class ArcSettings:
    """Which tasks, and how big the TTT and inference work may get (docs/cli.md, "selfadapt eval arc")."""

    subset: str = setting("evaluation", "SEAL ARC subset: 'evaluation' (10 tasks) or 'training' (12).")
    tasks: list[str] = setting(help="ARC task ids; repeat for several (default: every task within --max-cells).",
                               factory=list)
    max_cells: int = setting(100, "Keep tasks whose largest grid has at most this many cells (3×3 = 9).")
    cap: int = setting(24, "Generated TTT examples per self-edit, at most.")
    budget: int = setting(64, "epochs × TTT examples, at most (examples are dropped to fit).")
    max_tokens: int = setting(2048, "Drop TTT sequences longer than this many tokens.")
    votes: int = setting(4, "Invertible transforms voted over at inference (1–8).")
    leave_two_out: bool = setting(False, "Add leave-two-out tasks to the TTT data.")
    constrain: bool = setting(True, "Sample self-edits under their JSON Schema (llguidance), so every one is "
                              "valid; --no-constrain samples freely and parses strictly.")
    metric: str | None = setting(None, S.METRIC + " ARC's is called per test output with `expected`, the grid.")

    def __post_init__(self) -> None:
        if not 1 <= self.votes <= 8:
            raise ValueError("--votes must be between 1 and 8")
        check_metric(self.metric)

    def load(self) -> list[ArcTask]:
        tasks = load_tasks(self.subset, ids=self.tasks or None)
        kept = [t for t in tasks if t.max_cells <= self.max_cells]
        if not kept:
            raise ValueError(f"no {self.subset} task has all grids within {self.max_cells} cells; raise --max-cells")
        log.info("%d of %d %s tasks within %d cells: %s", len(kept), len(tasks), self.subset, self.max_cells,
                 ", ".join(t.id for t in kept))
        return kept

    def domain(self, tokenizer) -> ArcDomain:
        return ArcDomain(tokenizer, self.cap, self.budget, self.max_tokens, self.leave_two_out, self.votes,
                         self.constrain, metric=self.metric)


@dataclass
class ArcEvalConfig:
    """``selfadapt eval arc``: in-context, plain TTT, TTT with own self-edits, oracle TTT, trained policies."""

    model: str = setting(EMBEDDED, S.MODEL)
    arc: ArcSettings = setting(help="Which tasks, and the TTT and inference limits.", factory=ArcSettings)
    selfedits: int = setting(2, "Self-edits per task from the untrained model (0: skip).")
    oracle: bool = setting(True, "Also run the oracle: every configuration of a 12-point grid.")
    policies: list[str] = setting(help="A trained policy (RUN/round-N from `selfadapt train arc`); NAME=SPEC names "
                                  "its condition (default: round-N).", factory=list)
    temperature: float = setting(1.0, S.TEMPERATURE)
    top_p: float = setting(0.95, S.TOP_P)
    selfedit_tokens: int = setting(SELFEDIT_TOKENS, "Self-edit length cap in tokens.")
    lora: LoRAConfig = setting(help="The TTT LoRA; lr and epochs come from each self-edit.", factory=arc_lora)
    seed: int = setting(0, S.SEED)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    backend: str = setting("hf", S.BACKEND)
    gen_batch_size: int | None = setting(None, S.GEN_BATCH_SIZE)
    runs_dir: str = setting("runs", S.RUNS_DIR)

    def __post_init__(self) -> None:
        self.gen_batch_size = batch_size_for(self.gen_batch_size, self.device)
        check_backend(self.backend)


@dataclass
class ArcTrainConfig(ReSTEMConfig):
    """``selfadapt train arc``: ReST-EM's settings where ARC's differ from knowledge's (one round of few
    tasks, every solving self-edit kept: few of ARC's self-edits solve their task at all)."""

    rounds: int = setting(1, "ReST-EM rounds.")
    items_per_round: int = setting(4, "Training tasks sampled per round (C).")
    k: int = setting(3, "Self-edits per task.")
    keep: str = setting("positive", "'positive' (every self-edit that solved its task) or 'best'.")
    max_new_tokens: int = setting(SELFEDIT_TOKENS, "Self-edit length cap in tokens.")
    lora: LoRAConfig = setting(help="The TTT LoRA; lr and epochs come from each self-edit.", factory=arc_lora)


def oracle_row(records: list[dict[str, Any]], name: str = "oracle") -> dict[str, Any]:
    """Fraction of tasks that at least one grid configuration solves."""
    best: dict[str, float] = {}
    for r in records:
        if r["condition"] == name and r.get("score") is not None:
            best[r["item"]] = max(best.get(r["item"], 0.0), r["score"])
    score = sum(best.values()) / max(1, len(best))
    return {"condition": "oracle (best of grid)", "score": score, "ci_low": score, "ci_high": score}


def _baselines(run: Run, cfg: ArcEvalConfig, tasks: list, sampling: SamplingConfig,
               parallel: Parallel | None) -> list[str]:
    """icl, ttt-plain, own self-edits and the oracle grid on the base model; returns the table's
    names. The model lives only in this call, so no copy is alive while a policy is evaluated."""
    writings = [Writing("", cfg.arc.domain, tasks, cfg.selfedits, sampling, cfg.seed)] if cfg.selfedits else []
    with selfedits_and_workers(run, cfg.model, writings, cfg.lora, parallel=parallel, backend=cfg.backend,
                               dtype=cfg.dtype, device=cfg.device) as prepared:
        conditions = [Condition(TTT_PLAIN, None)] + [Condition("own", w.selfedits, w.seconds) for w in prepared.written]
        if cfg.oracle:
            conditions.append(Condition("oracle", {t.id: [c.to_json() for c in oracle_grid()] for t in tasks}))
        run_conditions(run, prepared.workers, cfg.arc.domain(prepared.tokenizer), tasks, conditions, seed=cfg.seed,
                       base_name="icl")
    return ["icl"] + [c.name for c in conditions if c.name != "oracle"]


def run_arc_eval(cfg: ArcEvalConfig, resume: Path | None = None,
                 parallel: Parallel | None = None) -> tuple[Run, list[dict[str, Any]]]:
    """``eval arc``: every condition (in-context, TTT, own self-edits, oracle, policies) on the ARC tasks;
    returns the run and its table rows."""
    tasks = cfg.arc.load()
    policies = resolve_policies(cfg.policies, cfg.model)
    resolve(cfg.model)  # a bad model spec fails here, before a run directory exists
    run = Run.resume(resume, cfg) if resume else Run.create(Path(cfg.runs_dir), "eval-arc", cfg)
    run.names_score(label(cfg.arc.metric, "success"))
    sampling = SamplingConfig(cfg.selfedit_tokens, cfg.temperature, cfg.top_p, batch_size=cfg.gen_batch_size)
    names = _baselines(run, cfg, tasks, sampling, parallel)
    for name, spec in policies:
        names += evaluate_policy(run, name, spec, cfg.arc.domain, tasks, cfg.selfedits, sampling, cfg.lora,
                                 seed=cfg.seed, base_name=f"{name}-icl", dtype=cfg.dtype, device=cfg.device,
                                 parallel=parallel, backend=cfg.backend)
    records = run.records()
    rows = summarize(records, names, references=(TTT_PLAIN,))
    table = markdown_table(rows, metric=label(cfg.arc.metric, "success"), references=(TTT_PLAIN,))
    if cfg.oracle:
        o = oracle_row(records)
        table += (f"\n\noracle (best of {len(oracle_grid())} configurations per task): {100 * o['score']:.1f}% "
                  + ("of tasks" if cfg.arc.metric is None else f"({label(cfg.arc.metric, 'success')})"))
        rows.append({**summarize(records, ["oracle"])[0], **o})
    (run.path / "table.md").write_text(table + "\n")
    run.write_json("metrics.json", {"rows": rows, "tasks": [t.id for t in tasks], "model": cfg.model,
                                    "reward_metric": cfg.arc.metric or "success"})
    plot_scores(rows, run.path / "accuracy.png", f"ARC {cfg.arc.subset}: {len(tasks)} tasks")
    written = {"untrained": ""} | {name: f"{name}/" for name, _ in policies}
    plot_config_choices(run, {who: f"{prefix}write/" for who, prefix in written.items()},
                        f"ARC {cfg.arc.subset}: configurations chosen by own self-edits")
    return run, rows


def plot_config_choices(run: Run, prefixes: dict[str, str], title: str) -> dict[str, Any]:
    """The configurations each policy chose (from its write records), per field: ``configs.json``
    and ``configs.png``. Labels without self-edits are left out."""
    dists = {}
    for who, prefix in prefixes.items():
        edits = [e for r in run.records() if r["key"].startswith(prefix) and r["condition"] == "write"
                 for e in r["selfedits"]]
        if edits:
            dists[who] = {k: dict(v) for k, v in config_distribution(edits).items()}
    if dists:
        run.write_json("configs.json", dists)
        plot_distributions(dists, run.path / "configs.png", title)
    return dists


def run_arc_training(cfg: ReSTEMConfig, arc: ArcSettings, resume: Path | None = None,
                     parallel: Parallel | None = None) -> Run:
    """ReST-EM on ARC training tasks: n self-edits per task, reinforce the ones that solve it."""
    if arc.subset != "training":
        raise ValueError("train arc uses the 'training' subset; the evaluation tasks stay held out")
    pool = arc.load()
    cfg.domain = {"name": "arc", "subset": arc.subset, "tasks": [t.id for t in pool], "max_cells": arc.max_cells,
                  "cap": arc.cap, "budget": arc.budget, "votes": arc.votes, "groups": list(GROUPS),
                  "metric": arc.metric}
    run = run_restem(cfg, pool, arc.domain, resume=resume, name="train-arc", parallel=parallel,
                     score_name=label(arc.metric, "success"))
    plot_config_choices(run, {f"round {r}": f"round{r}/write/" for r in range(cfg.rounds)},
                        "ARC training: configurations the policy chose, per ReST-EM round")
    return run
