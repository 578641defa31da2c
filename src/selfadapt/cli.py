"""The ``selfadapt`` command line: a thin layer over the Python API."""

from __future__ import annotations

import inspect
import json
import logging
import time
import warnings
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from . import configfile, tracking
from . import settings as S
from .answering import AskConfig
from .arc.experiment import ArcEvalConfig, ArcSettings, ArcTrainConfig, arc_lora
from .configfile import SET, opt
from .knowledge.continual import ContinualConfig
from .knowledge.data import DatasetError, parse_columns
from .knowledge.experiment import KnowledgeEvalConfig
from .knowledge.train import KnowledgeTrainConfig
from .lora import LoRAConfig
from .models import EMBEDDED, ModelLoadError
from .restem import PolicySFTConfig, ReSTEMConfig
from .rrr.experiment import FailuresConfig, ProbeConfig, RRREvalConfig, RRRTrainConfig
from .rrr.grpo import RRRGRPOConfig
from .runs import RunError
from .tables import KEYS, key_table
from .teaching import LearnConfig

app = typer.Typer(help="Self-adapting language models (SEAL self-edits, ReST-EM).", no_args_is_help=True,
                  pretty_exceptions_enable=False)
eval_app = typer.Typer(help="Evaluate adaptation methods and print a baseline table.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
train_app = typer.Typer(help="Train the self-edit policy (ReST-EM).", no_args_is_help=True)
app.add_typer(train_app, name="train")
rrr_app = typer.Typer(help="Reflect, Retry, Reward: GRPO that rewards only the self-reflection.",
                      no_args_is_help=True)
app.add_typer(rrr_app, name="rrr")
console = Console()


def say(*text: object) -> None:
    """Print text that holds no markup of ours: paths, names and messages keep their brackets
    ("report[final].txt", "selfadapt[documents]"), which rich would read as markup."""
    console.print(*text, markup=False)


USER_ERRORS = (ModelLoadError, DatasetError, RunError, ValueError, OSError)
DEBUG = False  # --debug: let errors raise with their traceback


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
         debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error.")) -> None:
    global DEBUG
    DEBUG = debug
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Deprecation notices of transformers/PEFT/TRL internals: nothing a user of the CLI can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def user_errors(fn):
    """Bad input ends with one clear line and exit code 2; any other failure with one line naming
    what went wrong and exit code 1. The traceback is for ``--debug``, not for every user."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except USER_ERRORS as e:
            if DEBUG:
                raise
            console.print(f"[bold red]error:[/] {escape(str(e))}")
            raise typer.Exit(2) from None
        except Exception as e:
            if DEBUG:
                raise
            console.print(f"[bold red]error:[/] {escape(f'{type(e).__name__}: {e}'.splitlines()[0])} "
                          "(run again with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


REPORT_TO = typer.Option(["none"], "--report-to", metavar="TRACKER", help="Mirror the run's records and "
                         "metrics into experiment trackers (accelerate's): none | tensorboard (RUN/tensorboard) | "
                         "wandb (offline, in RUN/wandb) | trackio (its local store) | mlflow | ...; repeat for several "
                         "(after the command).")
PROJECT = typer.Option(tracking.PROJECT, "--project", metavar="NAME", help="The trackers' project; each run is "
                       "named after its directory.")


def tracked(fn):
    """A command that makes a run takes ``--report-to`` and ``--project``; the trackers it opened
    are finished when it ends, however it ends."""

    @wraps(fn)
    def wrapper(*args, report_to: list[str], project: str, **kwargs):
        tracking.configure(report_to, project)
        try:
            return fn(*args, **kwargs)
        finally:
            tracking.close_all()
            tracking.configure([])

    signature = inspect.signature(fn)
    wrapper.__signature__ = signature.replace(parameters=[
        *signature.parameters.values(),
        inspect.Parameter("report_to", inspect.Parameter.KEYWORD_ONLY, default=REPORT_TO, annotation="list[str]"),
        inspect.Parameter("project", inspect.Parameter.KEYWORD_ONLY, default=PROJECT, annotation="str")])
    wrapper.__annotations__ = {**fn.__annotations__, "report_to": "list[str]", "project": "str"}
    return wrapper


@user_errors  # an eager callback runs before the command's own wrapper: a bad file is one line too
def _config(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    configfile.load(ctx, value)
    return value


CONFIG = typer.Option(None, "--config", is_eager=True, callback=_config, help="A YAML file of this command's "
                      "settings (option names, or a run's config.yaml to re-run it); flags given here override it.")


def _lora(r: int, alpha: int, dropout: float, lr: float, epochs: int, batch_size: int, targets: str,
          amp: bool, max_steps: int | None = None) -> LoRAConfig:
    return LoRAConfig(r=r, alpha=alpha, dropout=dropout, lr=lr, epochs=epochs, batch_size=batch_size,
                      target_modules=[t.strip() for t in targets.split(",") if t.strip()], amp=amp,
                      max_steps=max_steps)


def _targets(modules: list[str]) -> str:
    return ",".join(modules)


# Options many commands share: each is its config field's, default and help (``configfile.opt``).
MODEL = opt(KnowledgeEvalConfig, "model")
R, ALPHA, DROPOUT = opt(LoRAConfig, "r"), opt(LoRAConfig, "alpha"), opt(LoRAConfig, "dropout")
LR, EPOCHS, BATCH = opt(LoRAConfig, "lr"), opt(LoRAConfig, "epochs"), opt(LoRAConfig, "batch_size")
TARGETS = opt(LoRAConfig, "target_modules", "--targets", shown=_targets)
AMP = opt(LoRAConfig, "amp")
DTYPE, DEVICE = opt(KnowledgeEvalConfig, "dtype"), opt(KnowledgeEvalConfig, "device")
BACKEND = opt(KnowledgeEvalConfig, "backend")
GEN_BATCH_SIZE = opt(KnowledgeEvalConfig, "gen_batch_size", min=1)
PRIOR = opt(KnowledgeEvalConfig, "prior_prompt", "--prior-prompt")
COLUMNS = opt(KnowledgeEvalConfig, "columns", shown=lambda v: v)
SEED, RUNS_DIR = opt(KnowledgeEvalConfig, "seed", help=S.SEED), opt(KnowledgeEvalConfig, "runs_dir")
RESUME = typer.Option(None, help="Continue this run directory.")
# How a run is spread out: settings of the machine, not of the experiment (not in its config).
WORKERS = typer.Option(0, help="Spread the inner-loop evaluations over this many Ray workers (0: in this "
                       "process); one per GPU when there are GPUs, else the CPU threads are split between them.")
GPUS_PER_WORKER = typer.Option(None, help="GPUs per Ray worker, a fraction for several small-model workers on one "
                               "GPU (e.g. 0.25: four per GPU), a whole number to spread one worker's model over "
                               "that many (device_map=auto); default 1 where the cluster has GPUs. With no "
                               "--workers, as many workers as the free GPUs hold.")
RAY_ADDRESS = typer.Option(None, help="An existing Ray cluster (e.g. 'auto' or 'ray://host:10001'); default: "
                           "a local Ray started for the run.")


def _parallel(workers: int, ray_address: Optional[str], gpus_per_worker: Optional[float] = None):
    from .workers import Parallel

    return Parallel(workers, ray_address, gpus_per_worker)


KE, LC, AC = KnowledgeEvalConfig, LearnConfig, AskConfig


@eval_app.command("knowledge")
@user_errors
@tracked
def eval_knowledge(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    passages: int = opt(KE, "passages"), offset: int = opt(KE, "offset"), dataset: str = opt(KE, "dataset"),
    columns: Optional[str] = COLUMNS, split: Optional[str] = opt(KE, "split"),
    subset: Optional[str] = opt(KE, "subset"), model: str = MODEL,
    fmt: list[str] = opt(KE, "formats", "--format"), decoding: list[str] = opt(KE, "decodings", "--decoding"),
    own: bool = opt(KE, "own"), control: list[str] = opt(KE, "controls", "--control"),
    no_control: bool = typer.Option(False, "--no-control", help="Skip the controls."),
    form: bool = opt(KE, "form", "--form-equalized/--no-form-equalized"),
    external: list[str] = opt(KE, "external"),
    no_external: bool = typer.Option(False, "--no-external", help="Skip external self-edits."),
    external_format: Optional[str] = opt(KE, "external_format"),
    policy: list[str] = opt(KE, "policies", "--policy"), cpt: bool = opt(KE, "cpt", "--cpt"),
    k: int = opt(KE, "selfedits_per_passage", "--selfedits", "-k"),
    include_passage: bool = opt(KE, "include_passage"),
    temperature: float = opt(KE, "temperature"), top_p: float = opt(KE, "top_p"),
    max_new_tokens: Optional[int] = opt(KE, "max_new_tokens"), prior_prompt: Optional[str] = PRIOR,
    metric: Optional[str] = opt(KE, "metric"),
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT, lr: float = LR, epochs: int = EPOCHS,
    batch_size: int = BATCH, targets: str = TARGETS, amp: bool = AMP,
    seed: int = opt(KE, "seed"), judge_model: Optional[str] = opt(KE, "judge_model"),
    judge_url: Optional[str] = opt(KE, "judge_url"), judge_key_env: str = opt(KE, "judge_api_key_env"),
    runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """Baseline table: base · recital · passage · passage + own self-edits · passage + external self-edits ·
    controls (open-book ceilings) · trained policies. Every update adds the format control's pairs (form
    equalized, so that conditions differ in facts; --no-form-equalized for SEAL's updates and the format control).

    Each condition trains a LoRA update, then answers the passage's questions without it in context;
    the score is exact match of the short answer (SQuAD's rules), compared with passage+form (passage-only
    with --no-form-equalized) and the recital, paired by passage."""
    from .knowledge.experiment import run_knowledge_eval

    cfg = KnowledgeEvalConfig(
        model=model, dataset=dataset, columns=parse_columns(columns) or None, split=split, subset=subset,
        passages=passages, offset=offset, formats=fmt, decodings=decoding, own=own,
        external=[] if no_external else external,
        external_format=external_format, controls=[] if no_control else control, form=form, policies=policy,
        cpt=cpt,
        selfedits_per_passage=k, include_passage=include_passage, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, prior_prompt=prior_prompt, metric=metric,
        lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp), seed=seed, judge_url=judge_url,
        judge_model=judge_model, judge_api_key_env=judge_key_env, runs_dir=str(runs_dir),
        backend=backend, gen_batch_size=gen_batch_size, dtype=dtype, device=device,
    )
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    run, rows = run_knowledge_eval(cfg, resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print(key_table(run.path / "table.md", KEYS["eval knowledge"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path} · "
        f"plot {run.path / 'accuracy.png'}")


RC, KT = ReSTEMConfig, KnowledgeTrainConfig
RESTART = opt(RC, "restart", "--restart/--continue-policy")


@train_app.command("knowledge")
@user_errors
@tracked
def train_knowledge(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    rounds: int = opt(RC, "rounds"), passages: int = opt(RC, "items_per_round", "--passages", "-c"),
    k: int = opt(RC, "k", "--selfedits", "-k"), seeds: int = opt(RC, "seeds"), keep: str = opt(RC, "keep"),
    reward_baseline: str = opt(RC, "reward_baseline"), forgetting_penalty: float = opt(RC, "forgetting_penalty"),
    probe: bool = opt(KT, "probe"), form: bool = opt(KT, "form", "--form-equalized/--no-form-equalized"),
    laser: Optional[float] = opt(RC, "laser"),
    laser_target: Optional[int] = opt(RC, "laser_target"), prior_prompt: Optional[str] = PRIOR,
    dataset: str = opt(KT, "dataset"), columns: Optional[str] = COLUMNS, split: Optional[str] = opt(KT, "split"),
    subset: Optional[str] = opt(KT, "subset"),
    model: str = opt(RC, "model"), student: Optional[str] = opt(RC, "student"),
    fmt: str = opt(KT, "fmt", "--format"), grounded: bool = opt(KT, "grounded"),
    include_passage: bool = opt(KT, "include_passage"),
    temperature: float = opt(RC, "temperature"), top_p: float = opt(RC, "top_p"),
    max_new_tokens: Optional[int] = opt(KT, "max_new_tokens"), metric: Optional[str] = opt(KT, "metric"),
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT, lr: float = LR, epochs: int = EPOCHS,
    batch_size: int = BATCH, targets: str = TARGETS, amp: bool = AMP,
    sft_lr: float = opt(RC, "sft.lr", "--sft-lr"), sft_epochs: int = opt(RC, "sft.epochs", "--sft-epochs"),
    sft_r: int = opt(RC, "sft.r", "--sft-r"), restart: bool = RESTART,
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """ReST-EM on training passages: sample self-edits, keep those that helped, SFT the policy."""
    from .knowledge.train import run_knowledge_training

    cfg = ReSTEMConfig(
        model=model, student=student, rounds=rounds, items_per_round=passages, k=k, seeds=seeds, keep=keep,
        reward_baseline=reward_baseline, forgetting_penalty=forgetting_penalty, laser=laser,
        laser_target=laser_target, temperature=temperature, top_p=top_p,
        lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp),
        sft=PolicySFTConfig(lr=sft_lr, epochs=sft_epochs, r=sft_r, alpha=2 * sft_r), restart=restart, seed=seed,
        backend=backend, gen_batch_size=gen_batch_size, dtype=dtype, device=device, runs_dir=str(runs_dir),
    )
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    kcfg = KnowledgeTrainConfig(dataset=dataset, columns=parse_columns(columns) or None, split=split, subset=subset,
                                fmt=fmt,
                                include_passage=include_passage, grounded=grounded, max_new_tokens=max_new_tokens,
                                probe=probe, prior_prompt=prior_prompt, metric=metric, form=form)
    run = run_knowledge_training(cfg, kcfg, resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print(key_table(run.path / "summary.md", KEYS["train"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · run {run.path}")


AS, AE, AT = ArcSettings, ArcEvalConfig, ArcTrainConfig
MAX_CELLS, CAP, BUDGET = opt(AS, "max_cells"), opt(AS, "cap"), opt(AS, "budget")
MAX_TOKENS, VOTES, CONSTRAIN = opt(AS, "max_tokens"), opt(AS, "votes"), opt(AS, "constrain")
METRIC = opt(AS, "metric")
CC = ContinualConfig


@eval_app.command("continual")
@user_errors
@tracked
def eval_continual(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    passages: int = opt(CC, "passages"), offset: int = opt(CC, "offset"), dataset: str = opt(CC, "dataset"),
    columns: Optional[str] = opt(CC, "columns", shown=lambda v: v), split: Optional[str] = opt(CC, "split"),
    subset: Optional[str] = opt(CC, "subset"), model: str = MODEL,
    condition: list[str] = opt(CC, "conditions", "--condition"),
    fmt: str = opt(CC, "fmt", "--format"), grounded: bool = opt(CC, "grounded"),
    replay: int = opt(CC, "replay"), general: int = opt(CC, "general"),
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT, lr: float = LR, epochs: int = EPOCHS,
    batch_size: int = BATCH, targets: str = TARGETS, amp: bool = AMP,
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Continual learning: passages learned in sequence (each update merged), the N×N matrix of
    scores on every passage seen so far, and how much each condition forgets."""
    from .knowledge.continual import run_continual_eval

    cfg = ContinualConfig(model=model, dataset=dataset, columns=parse_columns(columns) or None, split=split,
                          subset=subset, passages=passages, offset=offset, conditions=condition,
                          fmt=fmt, grounded=grounded, replay=replay, general=general,
                          lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp), seed=seed, dtype=dtype,
                          device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    run, _ = run_continual_eval(cfg, resume=resume)
    console.print(key_table(run.path / "table.md", KEYS["eval continual"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · matrices {run.path / 'matrices.png'}")


@eval_app.command("arc")
@user_errors
@tracked
def eval_arc(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    subset: str = opt(AS, "subset"), task: list[str] = opt(AS, "tasks", "--task"), max_cells: int = MAX_CELLS,
    model: str = MODEL, k: int = opt(AE, "selfedits", "--selfedits", "-k"), oracle: bool = opt(AE, "oracle"),
    policy: list[str] = opt(AE, "policies", "--policy"),
    cap: int = CAP, budget: int = BUDGET, max_tokens: int = MAX_TOKENS, votes: int = VOTES,
    leave_two_out: bool = opt(AS, "leave_two_out"), temperature: float = opt(AE, "temperature"),
    constrain: bool = CONSTRAIN, amp: bool = AMP, metric: Optional[str] = METRIC,
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """ARC baselines: in-context · plain TTT · TTT with own self-edits · oracle TTT · trained policy."""
    from .arc.experiment import run_arc_eval

    cfg = ArcEvalConfig(model=model, arc=ArcSettings(subset, list(task), max_cells, cap, budget, max_tokens, votes,
                                                     leave_two_out, constrain, metric),
                        selfedits=k, oracle=oracle, policies=policy, temperature=temperature,
                        lora=replace(arc_lora(), amp=amp), seed=seed, backend=backend, gen_batch_size=gen_batch_size,
                        dtype=dtype, device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    run, _ = run_arc_eval(cfg, resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print(key_table(run.path / "table.md", KEYS["eval arc"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path}")


@train_app.command("arc")
@user_errors
@tracked
def train_arc(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    rounds: int = opt(AT, "rounds"), tasks_per_round: int = opt(AT, "items_per_round", "--tasks", "-c"),
    k: int = opt(AT, "k", "--selfedits", "-k"),
    task: list[str] = opt(AS, "tasks", "--task-id", help="Restrict the pool to these training task ids."),
    max_cells: int = MAX_CELLS, model: str = opt(AT, "model"),
    cap: int = CAP, budget: int = BUDGET, max_tokens: int = MAX_TOKENS, votes: int = VOTES,
    keep: str = opt(AT, "keep"), temperature: float = opt(AT, "temperature"), constrain: bool = CONSTRAIN,
    metric: Optional[str] = METRIC,
    amp: bool = AMP, laser: Optional[float] = opt(AT, "laser"), laser_target: Optional[int] = opt(AT, "laser_target"),
    sft_lr: float = opt(RC, "sft.lr", "--sft-lr"), sft_epochs: int = opt(RC, "sft.epochs", "--sft-epochs"),
    sft_r: int = opt(RC, "sft.r", "--sft-r"), restart: bool = RESTART,
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """ReST-EM on ARC training tasks: reward 1 if the self-edit's TTT solves the task."""
    from .arc.experiment import run_arc_training

    cfg = ArcTrainConfig(model=model, rounds=rounds, items_per_round=tasks_per_round, k=k, keep=keep,
                         laser=laser, laser_target=laser_target, temperature=temperature,
                         lora=replace(arc_lora(), amp=amp),
                         sft=PolicySFTConfig(lr=sft_lr, epochs=sft_epochs, r=sft_r, alpha=2 * sft_r),
                         restart=restart, seed=seed, backend=backend, gen_batch_size=gen_batch_size, dtype=dtype,
                         device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    arc = ArcSettings("training", list(task), max_cells, cap, budget, max_tokens, votes, False, constrain, metric)
    run = run_arc_training(cfg, arc, resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print(key_table(run.path / "summary.md", KEYS["train"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · run {run.path}")


FC, PC, EC, TC, GC = FailuresConfig, ProbeConfig, RRREvalConfig, RRRTrainConfig, RRRGRPOConfig
TASK = opt(FC, "task")
REFLECTION_TEMPERATURE = opt(EC, "reflection_temperature")
RETRY_TEMPERATURE = opt(EC, "retry_temperature")


@rrr_app.command("build-failures")
@user_errors
@tracked
def rrr_build_failures(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    task: str = TASK, model: str = MODEL, queries: int = opt(FC, "queries"), attempts: int = opt(FC, "attempts"),
    temperature: float = opt(FC, "temperature"), top_p: float = opt(FC, "top_p"),
    max_new_tokens: int = opt(FC, "max_new_tokens"), batch_size: int = opt(FC, "batch_size"),
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Sample N attempts per training query and save the queries the model always fails."""
    from .rrr.experiment import run_build_failures

    cfg = FailuresConfig(model=model, task=task, queries=queries, attempts=attempts, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                         dtype=dtype, device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    path, stats = run_build_failures(cfg, resume=str(resume) if resume else None)
    n = cfg.attempts  # a --config file or --set may have changed it
    say(f"{stats['failures']} of {stats['queries']} queries failed all {n} attempts "
        f"(attempt accuracy {100 * stats['attempt_accuracy']:.1f}%, pass@{n} "
        f"{100 * stats[f'pass@{n}']:.1f}%) · failure dataset {path} · "
        f"wall time {time.perf_counter() - t0:.0f} s")


@rrr_app.command("probe")
@user_errors
@tracked
def rrr_probe(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    task: list[str] = opt(PC, "tasks", "--task"), model: str = MODEL, queries: int = opt(PC, "queries"),
    answer_tokens: int = opt(PC, "answer_tokens"), reflection_tokens: int = opt(PC, "reflection_tokens"),
    prior_prompt: Optional[str] = PRIOR,
    reflection_temperature: float = REFLECTION_TEMPERATURE, retry_temperature: float = RETRY_TEMPERATURE,
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """First- and second-attempt success per difficulty: train where retries succeed 5–50% of the time."""
    from .rrr.experiment import run_rrr_probe

    cfg = ProbeConfig(model=model, tasks=list(task), queries=queries, answer_tokens=answer_tokens,
                      reflection_tokens=reflection_tokens, prior_prompt=prior_prompt,
                      reflection_temperature=reflection_temperature, retry_temperature=retry_temperature, seed=seed,
                      dtype=dtype, device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    run, _ = run_rrr_probe(cfg, resume=str(resume) if resume else None)
    console.print(key_table(run.path / "summary.md", KEYS["rrr probe"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path} · "
        f"plot {run.path / 'probe.png'}")


@rrr_app.command("train")
@user_errors
@tracked
def rrr_train(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    failures: list[Path] = typer.Argument(..., help=configfile.help_of(TC, "failures")),
    model: str = MODEL, task: list[str] = opt(TC, "tasks", "--task"),
    steps: int = opt(GC, "max_steps", "--steps"), generations: int = opt(GC, "num_generations", "--generations", "-G"),
    queries_per_step: int = opt(GC, "queries_per_step"), lr: float = opt(GC, "learning_rate", "--lr"),
    lr_scheduler: str = opt(GC, "lr_scheduler"), warmup_steps: int = opt(GC, "warmup_steps"),
    beta: float = opt(GC, "beta"), temperature: float = opt(GC, "temperature"),
    reflection_tokens: int = opt(GC, "reflection_tokens"), retry_tokens: int = opt(GC, "retry_tokens"),
    retry_temperature: float = opt(GC, "retry_temperature"), lora_r: int = opt(GC, "lora_r"),
    save_steps: int = opt(GC, "save_steps"),
    reward: list[str] = opt(GC, "rewards", "--reward", shown=lambda d: [f"{k}={v:g}" for k, v in d.items()]),
    laser_target: Optional[int] = opt(GC, "laser_target"), disco: Optional[str] = opt(GC, "disco"),
    disco_eps: Optional[float] = opt(GC, "disco_eps"), judge_model: Optional[str] = opt(GC, "judge_model"),
    judge_url: Optional[str] = opt(GC, "judge_url"), prior_prompt: Optional[str] = PRIOR,
    backend: str = opt(GC, "backend"), vllm_memory: float = opt(GC, "vllm_memory"),
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """GRPO on the failure set: rewards judge the retry after each reflection; only reflection tokens are trained."""
    from .rewards import parse_reward_specs
    from .rrr.experiment import run_rrr_train

    grpo = RRRGRPOConfig(num_generations=generations, queries_per_step=queries_per_step, max_steps=steps,
                         learning_rate=lr, lr_scheduler=lr_scheduler, warmup_steps=warmup_steps, beta=beta,
                         temperature=temperature, reflection_tokens=reflection_tokens, retry_tokens=retry_tokens,
                         retry_temperature=retry_temperature, lora_r=lora_r, lora_alpha=2 * lora_r,
                         save_steps=save_steps, rewards=parse_reward_specs(reward), prior_prompt=prior_prompt,
                         laser_target=laser_target, disco=disco, disco_eps=disco_eps, judge_model=judge_model,
                         judge_url=judge_url, backend=backend, vllm_memory=vllm_memory, seed=seed)
    cfg = RRRTrainConfig(failures=[str(f) for f in failures], model=model, tasks=task, grpo=grpo, dtype=dtype,
                         device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    run = run_rrr_train(cfg, resume=str(resume) if resume else None)
    say(f"policy saved to {run / 'policy'} · curves {run / 'training.png'} · "
        f"wall time {time.perf_counter() - t0:.0f} s")


@rrr_app.command("eval")
@user_errors
@tracked
def rrr_eval(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    task: str = opt(EC, "task"), model: str = MODEL, policy: list[str] = opt(EC, "policies", "--policy"),
    queries: int = opt(EC, "queries"), general: int = opt(EC, "general"),
    answer_tokens: int = opt(EC, "answer_tokens"), reflection_tokens: int = opt(EC, "reflection_tokens"),
    prior_prompt: Optional[str] = opt(EC, "prior_prompt", "--prior-prompt"),
    reflection_temperature: float = REFLECTION_TEMPERATURE, retry_temperature: float = RETRY_TEMPERATURE,
    seed: int = SEED, runs_dir: Path = RUNS_DIR, resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """First- and second-attempt accuracy (greedy unless asked), base vs trained, the reference answer's
    likelihood after each reflection (a dense measure where retries fail), and a general-ability check."""
    from .rrr.experiment import run_rrr_eval

    cfg = RRREvalConfig(model=model, task=task, queries=queries, policies=policy, general=general,
                        answer_tokens=answer_tokens, reflection_tokens=reflection_tokens,
                        prior_prompt=prior_prompt, reflection_temperature=reflection_temperature,
                        retry_temperature=retry_temperature, seed=seed, dtype=dtype, device=device,
                        runs_dir=str(runs_dir))
    cfg = configfile.apply(ctx, cfg)
    t0 = time.perf_counter()
    run, _ = run_rrr_eval(cfg, resume=str(resume) if resume else None)
    console.print(key_table(run.path / "summary.md", KEYS["rrr eval"]))
    say(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path} · "
        f"plot {run.path / 'accuracy.png'}")


@app.command()
@user_errors
@tracked
def learn(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    files: list[Path] = typer.Argument(..., help="Documents (.txt, .md, .pdf, .html, .docx, ...), or folders of "
                                       "them, learned in order."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the adapter (PEFT, safetensors)."),
    model: str = MODEL, fmt: str = opt(LC, "fmt", "--format"), grounded: bool = opt(LC, "grounded"),
    k: int = opt(LC, "selfedits_per_chunk", "--selfedits", "-k"), cloze: bool = opt(LC, "cloze"),
    reword: bool = opt(LC, "reword"), short_questions: bool = opt(LC, "short_questions"),
    contrast: bool = opt(LC, "contrast"), chunk_tokens: int = opt(LC, "chunk_tokens"),
    replay: int = opt(LC, "replay"), distill: int = opt(LC, "distill"), reading: int = opt(LC, "reading"),
    context_distill: float = opt(LC, "context_distill"), check: str = opt(LC, "check"),
    checks: int = opt(LC, "checks"), probe: bool = opt(LC, "probe"), probe_adapter: bool = opt(LC, "probe_adapter"),
    r: int = opt(LC, "lora.r"), alpha: int = opt(LC, "lora.alpha"), dropout: float = opt(LC, "lora.dropout"),
    lr: float = opt(LC, "lora.lr", help="Learning rate."),
    epochs: int = opt(LC, "lora.epochs", help="Epochs over each document's examples."),
    batch_size: int = opt(LC, "lora.batch_size", help="Sequences per step."),
    max_steps: int = opt(LC, "lora.max_steps", help="At most this many steps a document, however many epochs "
                         "that is: a dense page stays within minutes on a CPU."),
    targets: str = opt(LC, "lora.target_modules", "--targets", shown=_targets), amp: bool = opt(LC, "lora.amp"),
    seed: int = opt(LC, "seed"), dtype: str = DTYPE, device: str = DEVICE,
    push_to_hub: Optional[str] = opt(LC, "push_to_hub"),
) -> None:
    """Teach the model documents, one after another, into one adapter; show what it learned."""
    from .teaching import learn as learn_documents
    from .teaching import report_lines

    cfg = LearnConfig(model=model, fmt=fmt, grounded=grounded, selfedits_per_chunk=k, cloze=cloze, reword=reword,
                      short_questions=short_questions, contrast=contrast, chunk_tokens=chunk_tokens, replay=replay,
                      distill=distill, reading=reading, context_distill=context_distill, check=check,
                      checks=checks, probe=probe, probe_adapter=probe_adapter,
                      lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp, max_steps), seed=seed,
                      dtype=dtype, device=device, push_to_hub=push_to_hub)
    cfg = configfile.apply(ctx, cfg)
    meta = learn_documents(files, out, cfg)
    for d in meta["documents"]:
        capped = " (the --max-steps cap: fewer epochs than --epochs)" if d["capped"] else ""
        say(f"{d['document']}: {d['chunks']} chunk(s), {d['sequences']} sequences (+{d['replayed']} "
            f"replayed, +{d['general']} general), {d['steps']} steps{capped}, loss "
            f"{d['first_loss']:.3f} → {d['final_loss']:.3f}")
    say("\n".join(report_lines(meta, json.loads((out / "checks.json").read_text()))))
    say(f"adapter saved to {out} (its README.md says the same; every check in checks.json)")
    if meta.get("pushed"):
        say(f"uploaded to the Hub: {meta['pushed']}")


@app.command()
@user_errors
def ask(
    ctx: typer.Context, config: Optional[Path] = CONFIG, set_: list[str] = SET,
    questions: list[str] = typer.Argument(..., help="One or more questions."),
    adapter: list[Path] = typer.Option([], help="An adapter saved by `selfadapt learn` (its directory, or its Hub "
                                       "id when in the local Hugging Face cache); repeat to compare several (each "
                                       "answers in turn)."),
    combine: bool = opt(AC, "combine"), save_combined: Optional[Path] = opt(AC, "save_combined"),
    model: Optional[str] = opt(AC, "model"),
    max_new_tokens: int = opt(AC, "max_new_tokens"), route: bool = opt(AC, "route"),
    dtype: str = opt(AC, "dtype"), device: str = opt(AC, "device"),
) -> None:
    """Answer questions with a short phrase, without the documents in context, optionally with
    learned adapters."""
    from .answering import adapter_paths, routed
    from .answering import ask as ask_questions

    cfg = configfile.apply(ctx, AskConfig(model=model, combine=combine, route=route, max_new_tokens=max_new_tokens,
                                          dtype=dtype, device=device,
                                          save_combined=None if save_combined is None else str(save_combined)))
    answers = ask_questions(questions, adapter, cfg=cfg)
    _, metas = adapter_paths(adapter)
    for n, (label, replies) in enumerate(answers.items()):
        if len(answers) > 1:
            console.print(f"[bold]{escape(label)}[/]")
        group = metas if cfg.combine else metas[n:n + 1]
        for q, a in zip(questions, replies):
            note = "  [dim](the model without the adapter: the question names nothing of its documents)[/]" \
                if cfg.route and group and not routed(q, group) else ""
            console.print(f"[bold]Q:[/] {escape(q)}\n[bold]A:[/] {escape(a)}{note}")
    if cfg.save_combined:
        say(f"combined adapter saved to {cfg.save_combined}")


@app.command("model")
@user_errors
def model_info(ctx: typer.Context, config: Optional[Path] = CONFIG,
               spec: str = typer.Argument(EMBEDDED, help="Model spec to resolve and load."),
               dtype: str = DTYPE, device: str = DEVICE) -> None:
    """Load a model once (converting and caching GGUF) and show where it lives."""
    from .models import load_model

    configfile.apply(ctx)
    t0 = time.perf_counter()
    m = load_model(spec, dtype=dtype, device=device)
    n = sum(p.numel() for p in m.model.parameters())
    say(f"{spec}: {m.model.config.model_type}, {n / 1e6:.0f}M parameters, {m.model.dtype} on "
        f"{m.device}, chat template: {bool(m.tokenizer.chat_template)}\npath: {m.path}\n"
        f"loaded in {time.perf_counter() - t0:.1f} s")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("selfadapt-demo"), "--out", "-o", help="Directory for the demo's adapter (absent, "
                             "empty, or an earlier demo's)."),
    model: str = MODEL, dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Start here: teach the model a short document it cannot know, with `learn` and its defaults (about a
    minute on 2 CPU cores), then see its answers before and after."""
    from importlib import resources

    from .tables import answers_table
    from .teaching import DEMO_QUESTION, clear_demo, demo_config, demo_document
    from .teaching import learn as learn_documents

    t0 = time.perf_counter()
    with resources.as_file(demo_document()) as doc:
        text = doc.read_text()
        console.print(f"[bold]Teaching {escape(model)} a document it cannot know[/] ({escape(doc.name)}, shipped with "
                      f"selfadapt; {len(text.split())} words):\n[dim]{escape(text.strip())}[/]\n")
        clear_demo(out)  # an earlier demo's adapter, not anything else
        meta = learn_documents([doc], out, demo_config(model, dtype, device))
    checks = json.loads((out / "checks.json").read_text())
    console.print(answers_table(checks, "Questions the document taught, asked without it in context "
                                "(✓: the answer holds the expected one)"))
    (d,), (before, after) = meta["documents"], meta["checks_right"]
    say(f"{time.perf_counter() - t0:.0f} s in all: {d['sequences']} training examples from the document "
        f"(the page and its cloze questions, made without a model) and {d['general']} general ones (to "
        f"keep what the model knew), {d['steps']} training steps "
        f"({meta['seconds'].get(f'{doc.name}: training', 0):.0f} s), loss {d['first_loss']:.2f} → "
        f"{d['final_loss']:.2f}. Taught questions answered: {before} of {len(checks)} before, "
        f"{after} after.")
    if (meta.get("general") or {}).get("warning"):
        console.print(f"[bold]Warning:[/] {escape(meta['general']['warning'])}.")
    console.print(f"\nThe adapter is in {escape(str(out))}. Next:\n"
                  f"  selfadapt ask \"{DEMO_QUESTION}\" --adapter {escape(str(out))}\n"
                  "  selfadapt learn YOUR_FILE -o YOUR_ADAPTER_DIR")
