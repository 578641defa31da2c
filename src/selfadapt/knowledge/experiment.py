"""``selfadapt eval knowledge``: the baseline table on SQuAD passages.

Conditions, each evaluated without the passage in context after its own LoRA update:
- ``base``: no update;
- ``passage``: the passage alone;
- ``own-<format>``: the passage plus self-edits the model writes itself;
- ``<name>``: the passage plus self-edits from a file (``gpt-4.1``, ``seal-qwen`` ship).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..evaluate import BASE, Condition, markdown_table, plot_scores, progress_bar, run_conditions, summarize
from ..generation import SamplingConfig
from ..grading import JudgeConfig, LLMJudge
from ..lora import LoRAConfig, ResidentLoRA
from ..models import EMBEDDED, load_model
from ..policy import write_selfedits
from ..runs import Run
from .data import EXTERNAL_SELFEDITS, load_external_selfedits, load_passages
from .domain import KnowledgeDomain
from .selfedit import FORMATS

log = logging.getLogger(__name__)


@dataclass
class KnowledgeEvalConfig:
    model: str = EMBEDDED
    dataset: str = "eval200"
    passages: int = 20
    offset: int = 0
    fmt: str = "implications"
    own: bool = True
    external: list[str] = field(default_factory=lambda: ["gpt-4.1", "seal-qwen"])
    selfedits_per_passage: int = 1
    include_passage: bool = True
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int | None = None  # None: the format's default
    gen_batch_size: int = 8
    answer_max_new_tokens: int = 32
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    judge_url: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    runs_dir: str = "runs"

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown self-edit format {self.fmt!r}; choose from {', '.join(FORMATS)}")
        if self.passages < 1 or self.selfedits_per_passage < 1:
            raise ValueError("passages and selfedits_per_passage must be >= 1")
        if bool(self.judge_url) != bool(self.judge_model):
            raise ValueError("an LLM judge needs both judge_url and judge_model")

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.max_new_tokens or FORMATS[self.fmt].max_new_tokens,
                              self.temperature, self.top_p, self.gen_batch_size)


def _own_selfedits(run: Run, lora: ResidentLoRA, domain: KnowledgeDomain, passages: list, cfg: KnowledgeEvalConfig
                   ) -> Condition:
    """Write (or reload from the run) the model's own self-edits for every passage."""
    todo = [p for p in passages if not run.done(f"write/{domain.item_id(p)}")]
    if todo:
        lora.reset()
        with progress_bar() as bar:
            task = bar.add_task(f"writing {cfg.fmt} self-edits", total=len(todo) * cfg.selfedits_per_passage)
            texts, seconds = write_selfedits(lora.model, lora.tokenizer, domain, todo, cfg.selfedits_per_passage,
                                             cfg.sampling, seed=cfg.seed, on_batch=lambda n: bar.advance(task, n))
        for p, t in zip(todo, texts):
            run.append(f"write/{domain.item_id(p)}", {"condition": "write", "item": domain.item_id(p),
                                                      "selfedits": t, "seconds": seconds / len(todo)})
    written = {domain.item_id(p): run.get(f"write/{domain.item_id(p)}") for p in passages}
    return Condition(f"own-{cfg.fmt}", {i: w["selfedits"] for i, w in written.items()},
                     {i: w["seconds"] for i, w in written.items()})


def run_knowledge_eval(cfg: KnowledgeEvalConfig, resume: Path | None = None) -> tuple[Run, list[dict[str, Any]]]:
    """Evaluate every condition on the first ``cfg.passages`` passages; returns the run and table rows."""
    passages = load_passages(cfg.dataset, limit=cfg.passages, offset=cfg.offset)
    external = {name: load_external_selfedits(name, passages) for name in cfg.external}  # fail before any work
    loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    run = Run.resume(resume, cfg) if resume else Run.create(Path(cfg.runs_dir), "eval-knowledge", cfg)
    lora = ResidentLoRA(loaded.model, loaded.tokenizer, cfg.lora)
    judge = None
    if cfg.judge_url:
        judge = LLMJudge(JudgeConfig(cfg.judge_url, cfg.judge_model, cfg.judge_api_key_env,
                                     cache_path=run.path / "judge_cache.jsonl"))
    domain = KnowledgeDomain(loaded.tokenizer, cfg.fmt, cfg.include_passage,
                             SamplingConfig(cfg.answer_max_new_tokens, 0.0, 1.0, 16), judge)
    conditions = [Condition("passage")]
    if cfg.own:
        conditions.append(_own_selfedits(run, lora, domain, passages, cfg))
    implications = replace(domain, fmt="implications")  # the shipped files hold implications
    for source, by_index in external.items():
        name = source if source in EXTERNAL_SELFEDITS else Path(source).stem
        conditions.append(Condition(name, {domain.item_id(p): by_index[p.index][: cfg.selfedits_per_passage]
                                           for p in passages}, domain=implications))
    records = run_conditions(run, lora, domain, passages, conditions, seed=cfg.seed)
    rows = summarize(records, [BASE] + [c.name for c in conditions])
    run.write_json("metrics.json", {"rows": rows, "model": cfg.model, "passages": len(passages)})
    (run.path / "table.md").write_text(markdown_table(rows) + "\n")
    plot_scores(rows, run.path / "accuracy.png", f"no-context QA, {len(passages)} {cfg.dataset} passages")
    return run, rows
