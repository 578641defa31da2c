"""``selfadapt train knowledge``: ReST-EM on SQuAD training passages."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import settings as S
from ..evaluate import BASE
from ..metric import check_metric, label
from ..restem import PASSAGE_FORM, ReSTEMConfig, run_restem
from ..runs import CONTENT_HASH, Run
from ..settings import setting
from ..workers import Parallel
from .controls import with_form
from .data import content_hash, load_passages
from .domain import KnowledgeDomain
from .measure import REWARD_METRIC
from .probe import ProbedDomain, probe_passages
from .selfedit import DEFAULT_DECODING, DEFAULT_FORMAT, FORMATS

log = logging.getLogger(__name__)


@dataclass
class KnowledgeTrainConfig:
    """``selfadapt train knowledge``'s domain settings (ReST-EM's own are a ``ReSTEMConfig``)."""

    dataset: str = setting("train", "Training pool: 'train' or your data as for eval (never eval200).")
    columns: dict[str, str] | None = setting(None, S.COLUMNS)  # our field → your column (``data.load_passages``)
    split: str | None = setting(None, S.SPLIT)
    subset: str | None = setting(None, S.SUBSET)
    fmt: str = setting(DEFAULT_FORMAT, S.FORMAT + " The eval default, chosen on the train split.")
    include_passage: bool = setting(True, S.INCLUDE_PASSAGE)
    grounded: bool = setting(DEFAULT_DECODING == "grounded", S.GROUNDED)
    max_new_tokens: int | None = setting(None, S.MAX_NEW_TOKENS)
    probe: bool = setting(False, "Score a fixed probe set after every update (its drop is reported); on with a "
                          "forgetting penalty.")
    prior_prompt: str | None = setting(None, S.PRIOR)
    metric: str | None = setting(None, S.METRIC)
    form: bool = setting(True, "Form equalized: every update (each self-edit's and the passage-alone one) adds "
                         "the format control's Q→A pairs of another train passage, and the reward is EM(self-edit"
                         "+form) − EM(passage+form), which answer form alone cannot earn. --no-form-equalized: "
                         "SEAL's reward, against --reward-baseline.")

    def __post_init__(self) -> None:
        check_metric(self.metric)


def run_knowledge_training(cfg: ReSTEMConfig, kcfg: KnowledgeTrainConfig, resume: Path | None = None,
                           parallel: Parallel | None = None) -> Run:
    """Train the self-edit policy on the training pool; eval200 is refused so it stays held out."""
    if kcfg.fmt not in FORMATS:
        raise ValueError(f"unknown self-edit format {kcfg.fmt!r}; choose from {', '.join(FORMATS)}")
    if kcfg.dataset == "eval200":
        raise ValueError("eval200 is the held-out evaluation set; train on 'train' or your own file")
    pool = load_passages(kcfg.dataset, columns=kcfg.columns, split=kcfg.split, subset=kcfg.subset)
    held_out = {p.context for p in load_passages("eval200")}
    overlap = [p for p in pool if p.context in held_out]
    if overlap:
        raise ValueError(f"{kcfg.dataset}: {len(overlap)} passage(s) are in eval200, first: record "
                         f"{overlap[0].index} ({overlap[0].title!r}); remove them to keep eval200 held out")
    kcfg.probe = kcfg.probe or cfg.forgetting_penalty > 0
    recall, reading = probe_passages() if kcfg.probe else ([], [])
    probe_texts = {p.context for p in recall + reading}
    pool = [p for p in pool if p.context not in probe_texts]  # the probe is never trained on
    cfg.max_new_tokens = kcfg.max_new_tokens or FORMATS[kcfg.fmt].max_new_tokens
    # under form equalization the passage-alone update is passage+form, and the reward subtracts it; 'base' is
    # the default of every domain's reward baseline, so it stands for "the domain's own" here
    if kcfg.form and cfg.reward_baseline not in (BASE, PASSAGE_FORM):
        raise ValueError(f"--reward-baseline {cfg.reward_baseline} needs --no-form-equalized: form equalization's "
                         "reward is against passage+form")
    if not kcfg.form and cfg.reward_baseline == PASSAGE_FORM:
        raise ValueError("--reward-baseline passage+form needs form equalization (drop --no-form-equalized)")
    if kcfg.form and cfg.reward_baseline != PASSAGE_FORM:
        log.info("form-equalized: the reward is EM(self-edit+form) − EM(passage+form) (--no-form-equalized for "
                 "SEAL's, against the unadapted model)")
        cfg.reward_baseline = PASSAGE_FORM
    cfg.domain = {"name": "knowledge", **asdict(kcfg), CONTENT_HASH: content_hash(pool)}  # resume: same pool only

    def make_domain(tok):
        domain = KnowledgeDomain(tok, kcfg.fmt, kcfg.include_passage, grounded=kcfg.grounded,
                                 prior=kcfg.prior_prompt, metric=kcfg.metric)
        domain = with_form(domain) if kcfg.form else domain
        return ProbedDomain(domain, recall, reading) if kcfg.probe else domain

    return run_restem(cfg, pool, make_domain, resume=resume, name="train-knowledge", parallel=parallel,
                      score_name=label(kcfg.metric, REWARD_METRIC))
