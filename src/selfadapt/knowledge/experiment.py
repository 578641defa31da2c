"""``selfadapt eval knowledge``: the baseline table on SQuAD passages.

Conditions, each evaluated without the passage in context after its own LoRA update:
- ``base``: no update;
- ``recital``: no model at all; every answer is the passage's opening (the control that
  a measure of knowledge must not reward);
- ``passage``: the passage alone;
- ``format-control``, ``gold-qa`` (``controls``): the passage plus another passage's gold Q→A
  pairs (teaches the answer form, no fact), or its own (train on test, a ceiling; see ``controls.py``);
- ``open-book``, ``open-book+form`` (``controls``): the passage *in* the prompt, without an update
  or after the format control's: the ceilings; every row's share of ``open-book+form`` is reported;
- ``own-<format>[-grounded]``: the passage plus self-edits the model writes itself, freely
  or with grounded decoding (only the passage's words);
- ``<name>``: the passage plus self-edits from a file (``gpt-4.1``, ``seal-qwen`` ship);
- ``round-N`` (with ``policies``): a policy trained by ``selfadapt train knowledge`` writes
  its self-edits and adapts itself on them, as in SEAL; ``round-N-base`` is its score
  without an update.
With ``cpt``, every condition makes one update on all passages' data, then answers all
their questions (the paper's continued-pretraining setting). With ``form`` (form equalized, the
default), every update adds the format control's pairs and every trained condition is named
``<name>+form`` (``passage+form``, which the format control then equals: it is not run again), so
that conditions differ in the facts they teach, not in the answer form; without it (SEAL's setting)
the names are as above.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .. import settings as S
from ..domain import ItemError
from ..evaluate import BASE, Condition, markdown_table, run_conditions, summarize
from ..generation import SamplingConfig, batch_size_for
from ..judge import make_judge
from ..lora import LoRAConfig
from ..metric import METRIC, check_metric, label
from ..models import EMBEDDED, LoadedModel, resolve
from ..plots import plot_paired, plot_policy_rounds, plot_scores
from ..policy import Writing, evaluate_policy, selfedits_and_workers
from ..prior import check_prior
from ..restem import policy_name, resolve_policies
from ..runs import CONTENT_HASH, Run, plain
from ..settings import setting
from ..vllm_backend import check_backend
from ..workers import Parallel
from .controls import CEILING, CONTROLS, FORM, FORMAT, OPEN_BOOK, OPEN_BOOK_FORM, control_domain, with_form
from .data import (
    EXTERNAL_SELFEDITS,
    DatasetError,
    Passage,
    content_hash,
    external_format,
    load_external_selfedits,
    load_passages,
)
from .domain import ANSWER_CAP, CPTDomain, KnowledgeDomain
from .measure import REWARD_METRIC
from .selfedit import DEFAULT_DECODING, DEFAULT_FORMAT, FORMATS

RECITAL = "recital"
DECODINGS = ("free", "grounded")
REFERENCES = ("passage", RECITAL)  # every condition is compared with these, paired by passage (or passage+form)
SIDE_METRICS = {m: v for m, v in {
    "mc_prob": ("mc_prob %", 100), "mc_acc": ("MC acc %", 100), "cal_prob": ("cal_prob %", 100),
    "cal_logprob": ("cal log p/tok", 1), "typed_prob": ("typed_prob %", 100), "typed_cal_prob": ("typed cal %", 100),
    "answer_logprob": ("log p(gold)/tok", 1), "exact_match": ("EM %", 100),
    "f1": ("F1 %", 100), "contains": ("contains %", 100)}.items() if m != REWARD_METRIC}


def own_name(fmt: str, decoding: str) -> str:
    return f"own-{fmt}" + ("" if decoding == "free" else f"-{decoding}")

log = logging.getLogger(__name__)


@dataclass
class KnowledgeEvalConfig:
    """``selfadapt eval knowledge``: the baseline table on SQuAD passages."""

    model: str = setting(EMBEDDED, S.MODEL)
    dataset: str = setting("eval200", S.DATASET)
    columns: dict[str, str] | None = setting(None, S.COLUMNS)  # our field → your column (``data.load_passages``)
    split: str | None = setting(None, S.SPLIT)
    subset: str | None = setting(None, S.SUBSET)
    passages: int = setting(20, "How many passages (from the start of the dataset, after --offset).")
    offset: int = setting(0, "Skip this many passages first.")
    formats: list[str] = setting(help="Self-edit format of the own condition; repeat for several (the first is the "
                                 "policies'): implications | implications-long | implications-very-long | rewrite | "
                                 "self-qa. The default was chosen on the train split.",
                                 factory=lambda: [DEFAULT_FORMAT])
    decodings: list[str] = setting(help="How own self-edits are sampled: 'free', or 'grounded' (self-QA answers "
                                   "copy passage spans; other formats use only the passage's words); repeat for "
                                   "several.", factory=lambda: [DEFAULT_DECODING])
    own: bool = setting(True, "Evaluate the model's own self-edits.")
    external: list[str] = setting(help="External self-edits: 'gpt-4.1', 'seal-qwen' or a JSON file; repeat.",
                                  factory=lambda: ["gpt-4.1", "seal-qwen"])
    external_format: str | None = setting(None, "The self-edit format of --external files (default: each file's "
                                          "\"format\" field; the shipped ones hold implications).")
    controls: list[str] = setting(help="Controls trained like a condition: 'format' (the passage + another train "
                                  "passage's gold Q→A pairs: answer form, no fact), 'gold-qa' (+ its own gold "
                                  "pairs, a ceiling; --dataset train only), and the open-book ceilings, the "
                                  "passage in the prompt: 'open-book' (no update) and 'open-book+form' (after the "
                                  "format control's update; every row's share of it is reported); repeat. Under "
                                  "form equalization 'format' is passage+form itself and is not run separately.",
                                  factory=lambda: ["format", OPEN_BOOK, OPEN_BOOK_FORM])
    form: bool = setting(True, "Form equalized: every update of every condition (passage-only included) adds the "
                         "format control's Q→A pairs, the same for every condition of a passage, so that the "
                         "conditions differ in facts, not in answer form; conditions are named <name>+form, and the "
                         "format control is then passage+form itself and is not run separately. "
                         "--no-form-equalized: SEAL's setting, each update only its own text.")
    policies: list[str] = setting(help=S.POLICY, factory=list)
    cpt: bool = setting(False, "Continued pretraining: one update on all passages' data, then all their questions.")
    selfedits_per_passage: int = setting(1, "Self-edits per passage (own and external).")
    include_passage: bool = setting(True, S.INCLUDE_PASSAGE)
    temperature: float = setting(1.0, S.TEMPERATURE)
    top_p: float = setting(0.95, S.TOP_P)
    max_new_tokens: int | None = setting(None, S.MAX_NEW_TOKENS)
    prior_prompt: str | None = setting(None, S.PRIOR)
    gen_batch_size: int | None = setting(None, S.GEN_BATCH_SIZE)
    answer_max_new_tokens: int = setting(ANSWER_CAP, "Answer length cap when a question is asked.")
    metric: str | None = setting(None, S.METRIC)
    lora: LoRAConfig = setting(help="The inner-loop LoRA fine-tune.", factory=LoRAConfig)
    seed: int = setting(0, "Seed for sampling and LoRA init (every self-edit of a passage and its passage-only "
                        "reference share it).")
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    backend: str = setting("hf", S.BACKEND)
    judge_url: str | None = setting(None, "OpenAI-compatible base URL for --judge-model.")
    judge_model: str | None = setting(None, "TinyV fallback judge: it grades the short answers that exact match "
                                      "rejects. A model spec, or with --judge-url the endpoint's model name.")
    judge_api_key_env: str = setting("OPENAI_API_KEY", "Environment variable holding the judge API key.")
    runs_dir: str = setting("runs", S.RUNS_DIR)

    def __post_init__(self) -> None:
        self.gen_batch_size = batch_size_for(self.gen_batch_size, self.device)
        for fmt in [*self.formats, *([self.external_format] if self.external_format else [])]:
            if fmt not in FORMATS:
                raise ValueError(f"unknown self-edit format {fmt!r}; choose from {', '.join(FORMATS)}")
        for decoding in self.decodings:
            if decoding not in DECODINGS:
                raise ValueError(f"unknown decoding {decoding!r}; choose from {', '.join(DECODINGS)}")
        if not self.formats or not self.decodings:
            raise ValueError("at least one self-edit format and one decoding are needed")
        if self.passages < 1 or self.selfedits_per_passage < 1:
            raise ValueError("passages and selfedits_per_passage must be >= 1")
        check_prior(self.prior_prompt)
        check_metric(self.metric)
        check_backend(self.backend)
        for control in self.controls:
            if control not in CONTROLS:
                raise ValueError(f"unknown control {control!r}; choose from {', '.join(CONTROLS)}")
        if "gold-qa" in self.controls and self.dataset != "train":
            raise ValueError("the gold-qa control trains on the test questions: only on the train split "
                             "(--dataset train)")
        if self.judge_url and not self.judge_model:
            raise ValueError("an endpoint judge (judge_url) needs judge_model, the endpoint's model name")

    def sampling(self, fmt: str) -> SamplingConfig:
        return SamplingConfig(self.max_new_tokens or FORMATS[fmt].max_new_tokens,
                              self.temperature, self.top_p, self.gen_batch_size)


class _Setting:
    """Per-passage conditions, or all passages at once (CPT): the items and how to read self-edits."""

    def __init__(self, domain: KnowledgeDomain, passages: list[Passage], cpt: bool):
        self.cpt, self.passages = cpt, passages
        self.domain = CPTDomain(domain) if cpt else domain
        self.items: list[Any] = [tuple(passages)] if cpt else passages

    def condition(self, name: str, edits: dict[str, list[str]] | None, seconds: dict[str, float] | None = None,
                  domain: KnowledgeDomain | None = None) -> Condition:
        if not self.cpt:
            return Condition(name, edits, seconds, domain)
        item = self.domain.item_id(self.items[0])
        joint = None if edits is None else {item: [
            [edits[f"p{p.index}"][j] for p in self.passages]
            for j in range(min(len(edits[f"p{p.index}"]) for p in self.passages))]}
        total = None if seconds is None else {item: sum(seconds.values())}
        return Condition(name, joint, total, None if domain is None else CPTDomain(domain))


def run_knowledge_eval(cfg: KnowledgeEvalConfig, resume: Path | None = None,
                       parallel: Parallel | None = None) -> tuple[Run, list[dict[str, Any]]]:
    """Evaluate every condition on the first ``cfg.passages`` passages; returns the run and table rows.
    ``parallel`` spreads the evaluations over Ray workers."""
    if parallel and parallel.enabled and cfg.judge_model:
        raise ValueError("the LLM judge runs in this process only: use it without --workers/--ray-address")
    passages = load_passages(cfg.dataset, limit=cfg.passages, offset=cfg.offset, columns=cfg.columns,
                             split=cfg.split, subset=cfg.subset)
    external = {name: load_external_selfedits(name, passages) for name in cfg.external}  # fail before any work
    external_formats = {name: external_format(name, cfg.external_format) for name in cfg.external}
    for name, fmt in external_formats.items():
        if fmt not in FORMATS:
            raise DatasetError(f"{name}: unknown self-edit format {fmt!r}; choose from {', '.join(FORMATS)}")
    # a policy under a name the resumed run has already evaluated is refused here, before any work
    evaluated = (Run.saved_config(resume).get("policies") or []) if resume else []
    policies = resolve_policies(cfg.policies, cfg.model.spec if isinstance(cfg.model, LoadedModel) else cfg.model,
                                evaluated)
    resolve(cfg.model)  # a bad model spec fails here, before a run directory exists
    config = {**plain(cfg), CONTENT_HASH: content_hash(passages)}  # a resume on other items is refused
    # a control or policy added on a resume adds conditions and changes no record
    run = (Run.resume(resume, config, extend=("policies", "controls")) if resume
           else Run.create(Path(cfg.runs_dir), "eval-knowledge", config))
    run.names_score(label(cfg.metric, REWARD_METRIC))
    judge = make_judge(cfg.judge_model, cfg.judge_url, cfg.judge_api_key_env, run.path / "judge_cache.jsonl",
                       dtype=cfg.dtype, device=cfg.device)

    def domain_for(tokenizer, fmt: str = cfg.formats[0], decoding: str = cfg.decodings[0],
                   prior: str | None = cfg.prior_prompt) -> KnowledgeDomain:
        domain = KnowledgeDomain(tokenizer, fmt, cfg.include_passage,
                                 SamplingConfig(cfg.answer_max_new_tokens, 0.0, 1.0, 16), judge,
                                 grounded=decoding == "grounded", prior=prior, metric=cfg.metric)
        return with_form(domain) if cfg.form else domain

    sfx = FORM if cfg.form else ""  # a form-equalized update's records never mix with another's
    passage_name = f"passage{sfx}"
    controls = [c for c in cfg.controls if not (cfg.form and c == "format")]  # under form: passage+form
    if len(controls) < len(cfg.controls):
        log.info("form-equalized: the format control is passage+form, not run again")

    def baselines() -> list[str]:
        """Every condition of the base model; returns their names. The model lives only in this
        call, so no copy of it is alive while a policy is evaluated (at 7B two do not fit a GPU)."""
        own = [(fmt, decoding) for fmt in (cfg.formats if cfg.own else []) for decoding in cfg.decodings]
        writings = [Writing(f"{own_name(fmt, decoding)}{sfx}/", lambda tok, f=fmt, d=decoding: domain_for(tok, f, d),
                            passages, cfg.selfedits_per_passage, cfg.sampling(fmt), cfg.seed) for fmt, decoding in own]
        with selfedits_and_workers(run, cfg.model, writings, cfg.lora, parallel=parallel, backend=cfg.backend,
                                   dtype=cfg.dtype, device=cfg.device) as prepared:
            domain = domain_for(prepared.tokenizer)
            setting = _Setting(domain, passages, cfg.cpt)
            record_recital(run, setting.domain, setting.items)
            trained = [setting.condition(control_name(c, sfx), None, domain=control_domain(c, domain, passages))
                       for c in controls if c != OPEN_BOOK]
            conditions = [setting.condition(passage_name, None), *trained]
            conditions += [setting.condition(own_name(fmt, decoding) + sfx, w.selfedits, w.seconds, domain=w.domain)
                           for (fmt, decoding), w in zip(own, prepared.written)]
            for source, by_index in external.items():
                name = (source if source in EXTERNAL_SELFEDITS else Path(source).stem) + sfx
                edits = {domain.item_id(p): by_index[p.index][: cfg.selfedits_per_passage] for p in passages}
                # read in the file's own format; every answer kept (another model's, not grounded here)
                conditions.append(setting.condition(
                    name, edits, domain=replace(domain, fmt=external_formats[source], grounded=False)))
            run_conditions(run, prepared.workers, setting.domain, setting.items, conditions, seed=cfg.seed)
            if OPEN_BOOK in controls:  # no update: the unadapted model, reading
                book = _Setting(control_domain(OPEN_BOOK, domain, passages), passages, cfg.cpt)
                run_conditions(run, prepared.workers, book.domain, book.items, [], seed=cfg.seed, base_name=OPEN_BOOK)
        # the controls in their order (open-book among them), then the self-edits
        return [BASE, RECITAL, passage_name] + [control_name(c, sfx) for c in controls] + [
            c.name for c in conditions[1 + len(trained):]]

    names = baselines()

    def arrange(pdomain, condition):
        psetting = _Setting(pdomain, passages, cfg.cpt)
        return psetting.domain, psetting.items, psetting.condition(condition.name, condition.selfedits,
                                                                   condition.generate_seconds)

    for (name, spec), source in zip(policies, cfg.policies):
        fmt, decoding, prior = trained_format(source, cfg.formats[0], cfg.decodings[0], cfg.prior_prompt)
        evaluate_policy(run, name + sfx, spec, lambda tok: domain_for(tok, fmt, decoding, prior), passages,
                        cfg.selfedits_per_passage, cfg.sampling(fmt), cfg.lora, seed=cfg.seed,
                        base_name=f"{name}-base", dtype=cfg.dtype, device=cfg.device, arrange=arrange,
                        parallel=parallel, backend=cfg.backend)
    # The table holds every policy the run has tested, also those not named again on this resume
    # (whose checkpoints need not be on this machine).
    tested = [policy_name(spec) for spec in run.config.get("policies") or []]
    names += [n for name in tested for n in (f"{name}-base", name + sfx)]

    references = (passage_name, *REFERENCES[1:]) + ((FORMAT,) if "format" in controls else ())
    ceiling = CEILING if CEILING in controls else None
    # from the per-question values, so a table never shows a run's stored scores under another measure's name;
    # a custom metric is the score, exact match a side column
    key, name = (REWARD_METRIC, REWARD_METRIC) if cfg.metric is None else (METRIC, label(cfg.metric, REWARD_METRIC))
    side = SIDE_METRICS if cfg.metric is None else {REWARD_METRIC: ("EM %", 100), **SIDE_METRICS}
    rows = summarize(run.records(), names, metrics=tuple(side), references=references, metric=key, ceiling=ceiling)
    setting_name = "CPT, " if cfg.cpt else ""
    run.write_json("metrics.json", {"rows": rows, "model": cfg.model, "passages": len(passages), "cpt": cfg.cpt,
                                    "reward_metric": cfg.metric or REWARD_METRIC})
    (run.path / "table.md").write_text(markdown_table(rows, name, side, references) + "\n")
    title = f"no-context QA, {setting_name}{len(passages)} {cfg.dataset} passages"
    plot_scores(rows, run.path / "accuracy.png", title, ylabel=f"{name} (%)")
    reference = passage_name if cfg.form else "passage-only"
    plot_paired(rows, passage_name, run.path / "paired.png", f"{title}: paired difference from {reference}")
    if tested:
        by_name = {r["condition"]: r for r in rows}
        first = own_name(cfg.formats[0], cfg.decodings[0]) + sfx
        untrained = [{**by_name[first], "condition": "untrained"}] if first in by_name else []
        curve = untrained + [by_name[n + sfx] for n in tested]
        baselines = {c: by_name[c]["score"] for c in ["base", RECITAL, passage_name, FORMAT, "gpt-4.1" + sfx,
                                                      "seal-qwen" + sfx, OPEN_BOOK_FORM] if c in by_name}
        plot_policy_rounds(curve, baselines, run.path / "rounds.png", title)
    return run, rows


def control_name(control: str, suffix: str = "") -> str:
    """A control's condition name; ``suffix`` (``+form``) on a trained one that lacks it."""
    name = CONTROLS[control]
    return name if control == OPEN_BOOK or name.endswith(FORM) else name + suffix


def trained_format(source: str, fmt: str, decoding: str, prior: str | None = None) -> tuple[str, str, str | None]:
    """The self-edit format, decoding and prior prompt a ``train knowledge`` run trained its
    policy with (a policy is tested on what it learned to write); the given ones for any
    other model."""
    config = Path(source).parent / "config.yaml"
    if not (Path(source) / "policy.json").is_file() or not config.is_file():
        return fmt, decoding, prior
    domain = (yaml.safe_load(config.read_text()) or {}).get("domain") or {}
    return (domain.get("fmt", fmt), "grounded" if domain.get("grounded") else "free",
            domain.get("prior_prompt", prior))


def record_recital(run: Run, domain: KnowledgeDomain | CPTDomain, items: list[Any]) -> None:
    """The recital control's records (no model involved), once per item; an item without
    questions is left out (the model's conditions record it as an item error)."""
    for item in items:
        key = f"{RECITAL}/{domain.item_id(item)}"
        try:
            if not run.done(key):
                ev = domain.recital(item)
                run.append(key, {"condition": RECITAL, "item": domain.item_id(item), "j": 0, "status": "ok",
                                 "score": ev.score, "records": ev.records})
        except ItemError:
            continue
