"""``selfadapt eval continual``: passages learned one after another, and what each update erases.

SEAL's stated limit is catastrophic forgetting. Here N passages are learned in sequence:
update i trains a fresh LoRA on passage i's data (the passage, its self-edit, and with
replay a few examples of earlier updates plus general reading-comprehension examples),
merges it into the weights, and then the questions of every passage seen so far are scored
without context by the knowledge measure. Row i of the N×N matrix is the model after update
i, column j is passage j (the paper's continual experiment). Own self-edits are written by
the model as it is at that point of the sequence. Every update is saved (safetensors) and
every evaluation recorded, so a killed run resumes by merging the saved updates again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from .. import settings as S
from ..evaluate import mean_ci, paired, progress_bar
from ..generation import SamplingConfig
from ..lora import Example, LoRAConfig, ResidentLoRA
from ..models import EMBEDDED, load_model
from ..plots import plot_matrices
from ..policy import write_selfedits
from ..runs import CONTENT_HASH, Run
from ..runs import plain as plain_config  # this module's own ``plain`` is for examples
from ..settings import setting
from .data import EXTERNAL_SELFEDITS, Passage, content_hash, external_format, load_external_selfedits, load_passages
from .domain import KnowledgeDomain
from .general import general_examples, replay_examples
from .measure import REWARD_METRIC
from .selfedit import DEFAULT_DECODING, DEFAULT_FORMAT, FORMATS

log = logging.getLogger(__name__)

REPLAY = "+replay"
SOURCES = ("passage", "own", *EXTERNAL_SELFEDITS)


@dataclass
class ContinualConfig:
    """``selfadapt eval continual``: passages learned one after another."""

    model: str = setting(EMBEDDED, S.MODEL)
    dataset: str = setting("eval200", S.DATASET)
    columns: dict[str, str] | None = setting(None, S.COLUMNS)  # our field → your column (``data.load_passages``)
    split: str | None = setting(None, S.SPLIT)
    subset: str | None = setting(None, S.SUBSET)
    passages: int = setting(8, "How many passages to learn one after another.")
    offset: int = setting(0, "Skip this many passages first.")
    conditions: list[str] = setting(help="What each update trains on: passage | own | gpt-4.1 | seal-qwen, each "
                                    "optionally with +replay; repeat for several.",
                                    factory=lambda: ["passage", "own", "own+replay"])
    fmt: str = setting(DEFAULT_FORMAT, "Format of own self-edits (the eval default).")
    grounded: bool = setting(DEFAULT_DECODING == "grounded", "Grounded decoding of own self-edits.")
    replay: int = setting(4, "With +replay: examples of earlier updates mixed into each update.")
    general: int = setting(2, "With +replay: reading-comprehension examples (passage in context, train split) "
                           "mixed into each update.")
    temperature: float = setting(1.0, S.TEMPERATURE)
    top_p: float = setting(0.95, S.TOP_P)
    lora: LoRAConfig = setting(help="The LoRA fine-tune of each update.", factory=LoRAConfig)
    seed: int = setting(0, S.SEED)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    runs_dir: str = setting("runs", S.RUNS_DIR)

    def __post_init__(self) -> None:
        for c in self.conditions:
            if c.removesuffix(REPLAY) not in SOURCES:
                raise ValueError(f"unknown condition {c!r}; choose from {', '.join(SOURCES)}, each optionally "
                                 f"with {REPLAY}")
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown self-edit format {self.fmt!r}; choose from {', '.join(FORMATS)}")
        if self.passages < 2:
            raise ValueError("a sequence needs at least 2 passages")
        if self.replay < 0 or self.general < 0:
            raise ValueError("replay and general must be >= 0")


def plain(examples: list[Example]) -> list[Any]:
    return [list(ex) if isinstance(ex, tuple) else ex for ex in examples]


def _examples(stored: list[Any]) -> list[Example]:
    return [tuple(ex) if isinstance(ex, list) else ex for ex in stored]


def run_continual_eval(cfg: ContinualConfig, resume: Path | None = None) -> tuple[Run, dict[str, Any]]:
    """Every condition's sequence of N updates; returns the run and the summary."""
    passages = load_passages(cfg.dataset, limit=cfg.passages, offset=cfg.offset, columns=cfg.columns,
                             split=cfg.split, subset=cfg.subset)
    if len(passages) < 2:
        raise ValueError(f"{cfg.dataset} has {len(passages)} passage(s) from offset {cfg.offset}; need 2+")
    external = {c.removesuffix(REPLAY): load_external_selfedits(c.removesuffix(REPLAY), passages)
                for c in cfg.conditions if c.removesuffix(REPLAY) in EXTERNAL_SELFEDITS}
    config = {**plain_config(cfg), CONTENT_HASH: content_hash(passages)}  # a resume on other items is refused
    run = Run.resume(resume, config) if resume else Run.create(Path(cfg.runs_dir), "eval-continual", config)
    run.names_score(REWARD_METRIC)
    for cond in cfg.conditions:
        _sequence(run, cfg, cond, passages, external)
    summary = summarize_continual(run.records(), cfg.conditions, [f"p{p.index}" for p in passages])
    run.write_json("metrics.json", summary)
    (run.path / "table.md").write_text(continual_table(summary) + "\n")
    plot_matrices({c: summary["conditions"][c]["matrix"] for c in cfg.conditions},
                  [f"p{p.index}" for p in passages], run.path / "matrices.png",
                  f"{REWARD_METRIC} (%) after each update, {cfg.dataset}")
    return run, summary


def _sequence(run: Run, cfg: ContinualConfig, cond: str, passages: list[Passage],
              external: dict[str, dict[int, list[str]]]) -> None:
    source, replay = cond.removesuffix(REPLAY), cond.endswith(REPLAY)
    n = len(passages)
    keys = ([f"base/p{p.index}" for p in passages] + [f"{cond}/update-{i}" for i in range(n)]
            + [f"{cond}/after-{i}/p{seen.index}" for i in range(n) for seen in passages[: i + 1]])
    if all(run.done(k) for k in keys):  # nothing left: no model state to rebuild
        log.info("%s: every update and evaluation is recorded; nothing to redo", cond)
        return
    loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)  # a fresh base model per sequence
    lora = ResidentLoRA(loaded.model, loaded.tokenizer, cfg.lora)
    tok = loaded.tokenizer
    domain = KnowledgeDomain(tok, cfg.fmt, grounded=cfg.grounded)
    reader = KnowledgeDomain(tok, external_format(source), grounded=False) if source in external else domain
    # one self-edit per update: a batch of one prompt on any device, so the run's config has no batch size to
    # record (``generation.default_batch_size`` is never consulted)
    sampling = SamplingConfig(FORMATS[cfg.fmt].max_new_tokens, cfg.temperature, cfg.top_p, batch_size=1)
    updates_dir = run.path / "updates" / cond
    updates_dir.mkdir(parents=True, exist_ok=True)
    history: list[list[Example]] = []
    with progress_bar() as bar:
        task = bar.add_task(cond, total=n + n * (n + 1) // 2)
        for p in passages:  # the unadapted model, once per run
            key = f"base/p{p.index}"
            if not run.done(key):
                ev = domain.evaluate(lora.model, tok, p)
                run.append(key, {"condition": "base", "item": f"p{p.index}", "score": ev.score,
                                 "records": ev.records})
        for i, p in enumerate(passages):
            key, weights = f"{cond}/update-{i}", updates_dir / f"update-{i}.safetensors"
            if run.done(key) and weights.is_file():
                lora.merge(load_file(str(weights)))
            elif run.done(key):  # the weights file was lost (they are not kept in git): train again on
                rec = run.get(key)  # the recorded examples, with the same seed; the record stands
                log.warning("%s: update weights missing; training again on the recorded examples", key)
                lora.train(_examples(rec["examples"]) + _examples(rec["extra"]), seed=cfg.seed + i)
                save_file(lora.update(), str(weights))
                lora.merge()
            else:
                selfedit = None
                if source == "own":
                    selfedit = write_selfedits(lora.model, tok, domain, [p], 1, sampling, seed=cfg.seed + i)[0][0][0]
                elif source in external:
                    selfedit = external[source][p.index][0]
                own = reader.training_examples(p, selfedit) if selfedit else [p.text]
                rng = random.Random(cfg.seed * 1_000_003 + i)
                extra = (replay_examples(history, cfg.replay, rng) + general_examples(tok, cfg.general, rng)
                         if replay else [])
                stats = lora.train(own + extra, seed=cfg.seed + i)
                save_file(lora.update(), str(weights))
                lora.merge()
                run.append(key, {"condition": cond, "update": i, "item": f"p{p.index}", "selfedit": selfedit,
                                 "examples": plain(own), "extra": plain(extra), "steps": stats.steps,
                                 "tokens": stats.tokens, "final_loss": stats.final_loss, "seconds": stats.seconds})
            history.append(_examples(run.get(key)["examples"]))
            bar.advance(task)
            for seen in passages[: i + 1]:
                ekey = f"{cond}/after-{i}/p{seen.index}"
                if not run.done(ekey):
                    ev = domain.evaluate(lora.model, tok, seen)
                    run.append(ekey, {"condition": cond, "update": i, "item": f"p{seen.index}", "score": ev.score,
                                      "records": ev.records, "seconds": ev.seconds})
                bar.advance(task)


def summarize_continual(records: list[dict[str, Any]], conditions: list[str], items: list[str]) -> dict[str, Any]:
    """Per condition: the N×N matrix (row: after update i; column: passage j; None above the
    diagonal), the final score on all passages, how much earlier passages lost from when they
    were learned (forgetting), and the final score against the unadapted model, paired."""
    base = {r["item"]: r["score"] for r in records if r["condition"] == "base"}
    out: dict[str, Any] = {"items": items, "base": [base.get(it) for it in items], "conditions": {}}
    n = len(items)
    for cond in conditions:
        score = {(r["update"], r["item"]): r["score"] for r in records
                 if r["condition"] == cond and "update" in r and "score" in r}
        matrix = [[score.get((i, items[j])) if j <= i else None for j in range(n)] for i in range(n)]
        if any(v is None for i in range(n) for v in matrix[i][: i + 1]):
            out["conditions"][cond] = {"matrix": matrix, "complete": False}
            continue
        final, learned = matrix[-1], [matrix[j][j] for j in range(n)]
        drop = [learned[j] - final[j] for j in range(n - 1)]  # the last passage has had no later update
        out["conditions"][cond] = {
            "matrix": matrix, "complete": True,
            "final": mean_ci(final), "just_learned": mean_ci(learned), "forgetting": mean_ci(drop),
            "final_vs_base": paired(dict(zip(items, final)), {it: base[it] for it in items}).__dict__,
        }
    return out


def continual_table(summary: dict[str, Any]) -> str:
    """Markdown: final score on all N passages, score right after learning, forgetting, vs base."""
    head = (f"| condition | final {REWARD_METRIC} % on all N (95% CI) | just after learning % | forgetting "
            "(points lost by earlier passages, 95% CI) | final Δ vs base (95% CI) | W/T/L vs base |")
    lines = [head, "|---|---|---|---|---|---|"]
    base = [b for b in summary["base"] if b is not None]
    lines.append(f"| base (no update) | {100 * np.mean(base):.1f} | – | – | – | – |")
    for cond, s in summary["conditions"].items():
        if not s["complete"]:
            lines.append(f"| {cond} | (incomplete) | | | | |")
            continue
        f, j, d, v = s["final"], s["just_learned"], s["forgetting"], s["final_vs_base"]
        lines.append(f"| {cond} | {100 * f[0]:.1f} ({100 * f[1]:.1f}–{100 * f[2]:.1f}) | {100 * j[0]:.1f} | "
                     f"{100 * d[0]:+.1f} ({100 * d[1]:+.1f}…{100 * d[2]:+.1f}) | "
                     f"{100 * v['mean']:+.1f} ({100 * v['ci_low']:+.1f}…{100 * v['ci_high']:+.1f}) | "
                     f"{v['wins']}/{v['ties']}/{v['losses']} |")
    return "\n".join(lines)
