"""The ``selfadapt`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import logging
import time
import warnings
from functools import wraps
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.logging import RichHandler

from . import configfile
from .knowledge.data import DatasetError, parse_columns
from .lora import LoRAConfig
from .models import EMBEDDED, ModelLoadError
from .runs import RunError

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

USER_ERRORS = (ModelLoadError, DatasetError, RunError, ValueError, OSError)
DEBUG = False  # --debug: let errors raise with their traceback


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
         debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
         report_to: list[str] = typer.Option(["none"], help="Mirror every run's records and metrics into an "
                                             "experiment tracker: none | tensorboard (RUN/tensorboard) | wandb "
                                             "(offline, in RUN/wandb) | trackio (its local store); repeat for several.")) -> None:
    from . import tracking

    global DEBUG
    DEBUG = debug
    tracking.configure(report_to)
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
        except (typer.Exit, typer.Abort, click.ClickException):
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


# Options shared by the commands that fine-tune.
MODEL = typer.Option(EMBEDDED, help="'smollm2' (embedded), a .gguf file, a model directory, or a Hub id.")
FMT = typer.Option("implications", "--format", help="implications | implications-long | "
                   "implications-very-long | rewrite | self-qa")
R = typer.Option(32, help="LoRA rank.")
ALPHA = typer.Option(64, help="LoRA alpha.")
DROPOUT = typer.Option(0.0, help="LoRA dropout.")
LR = typer.Option(1e-3, help="Inner-loop learning rate.")
EPOCHS = typer.Option(10, help="Inner-loop epochs.")
BATCH = typer.Option(16, help="Inner-loop batch: at most this many sequences (and 1024 padded tokens).")
TARGETS = typer.Option("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", help="LoRA target modules.")
AMP = typer.Option(True, help="bf16 models: train LoRA under autocast with fp32 master weights (~1.3x faster). "
                   "--no-amp computes the adapters in fp32 as runs made before this option did.")
DTYPE = typer.Option("auto", help="auto | float32 | bfloat16 | float16")
DEVICE = typer.Option("auto", help="auto | cpu | cuda | cuda:N")
BACKEND = typer.Option("hf", help="What writes the self-edits: 'hf' (transformers) or 'vllm' (the extra "
                       "selfadapt[vllm]; its engine runs before, never beside, the inner loops' model).")
GEN_BATCH_SIZE = typer.Option(None, min=1, help="Self-edits sampled per batch by the hf backend (vLLM schedules "
                              "its own); default 64 on a GPU, 8 otherwise.")
OFFSET = typer.Option(0, help="Skip this many passages first.")
DATASET = typer.Option("eval200", help="'eval200', 'train', your .json/.jsonl/.csv/.parquet file, a saved "
                       "datasets directory or a Hub dataset id (from the local cache); nested or flat (SQuAD) rows.")
COLUMNS = typer.Option(None, help="Your columns for our fields, e.g. 'title=doc_title,context=passage,question=q,"
                       "answer=a' (fields: title, context, questions, question, answer).")
PRIOR = typer.Option(None, "--prior-prompt", help="A prior prompt before what the model writes: reasoning | "
                     "planning | code | knowledge | null-example (see README).")
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


@eval_app.command("knowledge")
@user_errors
def eval_knowledge(
    config: Optional[Path] = CONFIG,
    passages: int = typer.Option(20, help="How many passages (from the start of the dataset)."),
    offset: int = OFFSET, dataset: str = DATASET, columns: Optional[str] = COLUMNS,
    model: str = MODEL,
    fmt: list[str] = typer.Option(["self-qa"], "--format", help="Self-edit format of the own condition; "
                                  "repeat for several (the first is the policies'): implications | "
                                  "implications-long | implications-very-long | rewrite | self-qa. The default "
                                  "was chosen on the train split."),
    decoding: list[str] = typer.Option(["grounded"], help="How own self-edits are sampled: 'free', or "
                                       "'grounded' (self-QA answers copy passage spans; other formats use only "
                                       "the passage's words); repeat for several."),
    own: bool = typer.Option(True, help="Evaluate the model's own self-edits."),
    control: list[str] = typer.Option(["format"], help="Controls trained like a condition: 'format' (the passage "
                                      "+ another train passage's gold Q→A pairs: answer form, no fact) and "
                                      "'gold-qa' (+ its own gold pairs, a ceiling; --dataset train only); repeat."),
    no_control: bool = typer.Option(False, "--no-control", help="Skip the controls."),
    external: list[str] = typer.Option(["gpt-4.1", "seal-qwen"], help="External self-edits: "
                                       "'gpt-4.1', 'seal-qwen' or a JSON file; repeat the option."),
    no_external: bool = typer.Option(False, "--no-external", help="Skip external self-edits."),
    external_format: Optional[str] = typer.Option(None, help="The self-edit format of --external files (default: "
                                                  "each file's \"format\" field; the shipped ones hold implications)."),
    policy: list[str] = typer.Option([], help="A trained policy (RUN/round-N from `selfadapt train "
                                     "knowledge`, or a model spec); repeat for several rounds. NAME=SPEC "
                                     "names its condition (default: round-N, or policy-<dir>)."),
    cpt: bool = typer.Option(False, "--cpt", help="Continued pretraining: one update on all passages' data, "
                             "then all their questions."),
    k: int = typer.Option(1, "--selfedits", "-k", help="Self-edits per passage (own and external)."),
    include_passage: bool = typer.Option(True, help="Train on the passage as well as the self-edit."),
    temperature: float = typer.Option(1.0, help="Self-edit sampling temperature."),
    top_p: float = typer.Option(0.95, help="Self-edit nucleus sampling."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Self-edit length cap (default: per format)."),
    prior_prompt: Optional[str] = PRIOR,
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT, lr: float = LR, epochs: int = EPOCHS,
    batch_size: int = BATCH, targets: str = TARGETS, amp: bool = AMP,
    seed: int = typer.Option(0, help="Seed for sampling and LoRA init (every self-edit of a passage and its "
                             "passage-only reference share it)."),
    judge_model: Optional[str] = typer.Option(None, help="TinyV fallback judge: it grades the short answers that "
                                              "exact match rejects. A model spec, or with --judge-url the "
                                              "endpoint's model name."),
    judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL for --judge-model."),
    judge_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the judge API key."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where run directories are created."),
    resume: Optional[Path] = typer.Option(None, help="Continue this run directory."),
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """Baseline table: base · recital · passage · passage + own self-edits · passage + external self-edits.

    Every condition is scored by multiple choice among passage spans by likelihood (recital
    cannot pass it) and compared with passage-only and recital, paired by passage."""
    from .knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval

    cfg = KnowledgeEvalConfig(
        model=model, dataset=dataset, columns=parse_columns(columns) or None, passages=passages, offset=offset, formats=fmt, decodings=decoding, own=own,
        external=[] if no_external else external, external_format=external_format,
        controls=[] if no_control else control, policies=policy, cpt=cpt, selfedits_per_passage=k, include_passage=include_passage,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, prior_prompt=prior_prompt,
        lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp), seed=seed, judge_url=judge_url,
        judge_model=judge_model, judge_api_key_env=judge_key_env, runs_dir=str(runs_dir),
        backend=backend, gen_batch_size=gen_batch_size, dtype=dtype, device=device,
    )
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run, rows = run_knowledge_eval(cfg, resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print((run.path / "table.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path} · "
                  f"plot {run.path / 'accuracy.png'}")


RESTART = typer.Option(True, "--restart/--continue-policy", help="Each round's SFT fine-tunes the base model on "
                       "that round's winners (ReST-EM); --continue-policy fine-tunes the previous round's policy.")
LASER = typer.Option(None, help="LASER bonus λ: reward += λ for a self-edit that helped and is at most the "
                     "target length (tokens).")
LASER_TARGET = typer.Option(None, help="LASER's fixed target length; default: LASER-D's adaptive target per "
                            "difficulty bucket (share of an item's self-edits that helped).")


@train_app.command("knowledge")
@user_errors
def train_knowledge(
    config: Optional[Path] = CONFIG,
    rounds: int = typer.Option(2, help="ReST-EM rounds."),
    passages: int = typer.Option(8, "--passages", "-c", help="Training passages sampled per round (C)."),
    k: int = typer.Option(5, "--selfedits", "-k", help="Self-edits per passage."),
    seeds: int = typer.Option(1, help="Inner-loop seeds per self-edit (s); the reward is their mean."),
    keep: str = typer.Option("best", help="Winner rule: 'best' (best-of-k with positive gain) or 'positive'."),
    reward_baseline: str = typer.Option("base", help="Reward = adapted score minus this: 'base' (unadapted, "
                                        "as in SEAL) or 'passage' (trained on the passage alone)."),
    forgetting_penalty: float = typer.Option(0.0, help="λ: reward −= λ × the drop of a fixed probe set "
                                             "(other passages' questions, reading comprehension); implies --probe."),
    probe: bool = typer.Option(False, help="Score the probe set after every update (its drop is reported)."),
    laser: Optional[float] = LASER, laser_target: Optional[int] = LASER_TARGET,
    prior_prompt: Optional[str] = PRIOR,
    dataset: str = typer.Option("train", help="Training pool: 'train' or your data as for eval (never eval200)."),
    columns: Optional[str] = COLUMNS,
    model: str = MODEL,
    student: Optional[str] = typer.Option(None, help="A fixed student to adapt (teacher–student split); "
                                          "default: the policy adapts itself."),
    fmt: str = typer.Option("self-qa", "--format", help="implications | implications-long | "
                            "implications-very-long | rewrite | self-qa (default: the eval default)"),
    grounded: bool = typer.Option(True, help="Grounded decoding: self-QA answers copy passage spans; other "
                                  "formats use only the passage's words."),
    include_passage: bool = typer.Option(True, help="Train on the passage as well as the self-edit."),
    temperature: float = typer.Option(1.0), top_p: float = typer.Option(0.95),
    max_new_tokens: Optional[int] = typer.Option(None, help="Self-edit length cap (default: per format)."),
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT, lr: float = LR, epochs: int = EPOCHS,
    batch_size: int = BATCH, targets: str = TARGETS, amp: bool = AMP,
    sft_lr: float = typer.Option(3e-4, help="Policy SFT learning rate."),
    sft_epochs: int = typer.Option(3, help="Policy SFT epochs."),
    sft_r: int = typer.Option(16, help="Policy SFT LoRA rank (merged after each round)."),
    restart: bool = RESTART,
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")),
    resume: Optional[Path] = typer.Option(None, help="Continue this run directory."),
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """ReST-EM on training passages: sample self-edits, keep those that helped, SFT the policy."""
    from .knowledge.train import KnowledgeTrainConfig, run_knowledge_training
    from .restem import PolicySFTConfig, ReSTEMConfig

    cfg = ReSTEMConfig(
        model=model, student=student, rounds=rounds, items_per_round=passages, k=k, seeds=seeds, keep=keep,
        reward_baseline=reward_baseline, forgetting_penalty=forgetting_penalty, laser=laser,
        laser_target=laser_target, temperature=temperature, top_p=top_p, lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp),
        sft=PolicySFTConfig(lr=sft_lr, epochs=sft_epochs, r=sft_r, alpha=2 * sft_r), restart=restart, seed=seed,
        backend=backend, gen_batch_size=gen_batch_size, dtype=dtype, device=device, runs_dir=str(runs_dir),
    )
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run = run_knowledge_training(cfg, KnowledgeTrainConfig(dataset, parse_columns(columns) or None, fmt,
                                                           include_passage, grounded,
                                                           max_new_tokens, probe, prior_prompt),
                                 resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print((run.path / "summary.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · run {run.path}")


RESUME = typer.Option(None, help="Continue this run directory.")
ARC_TASKS = typer.Option([], "--task", help="ARC task id; repeat for several (default: every task within "
                         "--max-cells).")
MAX_CELLS = typer.Option(100, help="Keep tasks whose largest grid has at most this many cells (CPU realism).")
CAP = typer.Option(24, help="Generated TTT examples per self-edit, at most.")
BUDGET = typer.Option(64, help="epochs × TTT examples, at most (examples are dropped to fit).")
MAX_TOKENS = typer.Option(2048, help="Drop TTT sequences longer than this many tokens.")
VOTES = typer.Option(4, help="Invertible transforms voted over at inference (1–8).")


CONSTRAIN = typer.Option(True, help="Sample self-edits under their JSON Schema (llguidance), so every one is "
                         "valid; --no-constrain samples freely and parses strictly.")


def _arc(subset: str, task: list[str], max_cells: int, cap: int, budget: int, max_tokens: int, votes: int,
         leave_two_out: bool, constrain: bool = True):
    from .arc.experiment import ArcSettings

    if not 1 <= votes <= 8:
        raise ValueError("--votes must be between 1 and 8")
    return ArcSettings(subset, list(task), max_cells, cap, budget, max_tokens, votes, leave_two_out, constrain)


@eval_app.command("continual")
@user_errors
def eval_continual(
    config: Optional[Path] = CONFIG,
    passages: int = typer.Option(8, help="How many passages to learn one after another."),
    offset: int = OFFSET, dataset: str = DATASET,
    model: str = MODEL,
    condition: list[str] = typer.Option(["passage", "own", "own+replay"], help="What each update trains on: "
                                        "passage | own | gpt-4.1 | seal-qwen, each optionally with +replay; "
                                        "repeat for several."),
    fmt: str = typer.Option("self-qa", "--format", help="Format of own self-edits (the eval default)."),
    grounded: bool = typer.Option(True, help="Grounded decoding of own self-edits."),
    replay: int = typer.Option(4, help="With +replay: examples of earlier updates mixed into each update."),
    general: int = typer.Option(2, help="With +replay: reading-comprehension examples (passage in context, "
                                "train split) mixed into each update."),
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT, lr: float = LR, epochs: int = EPOCHS,
    batch_size: int = BATCH, targets: str = TARGETS, amp: bool = AMP,
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")),
    resume: Optional[Path] = typer.Option(None, help="Continue this run directory."),
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Continual learning: passages learned in sequence (each update merged), the N×N matrix of
    scores on every passage seen so far, and how much each condition forgets."""
    from .knowledge.continual import ContinualConfig, run_continual_eval

    cfg = ContinualConfig(model=model, dataset=dataset, passages=passages, offset=offset, conditions=condition,
                          fmt=fmt, grounded=grounded, replay=replay, general=general,
                          lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp), seed=seed, dtype=dtype,
                          device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run, _ = run_continual_eval(cfg, resume=resume)
    console.print((run.path / "table.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · matrices {run.path / 'matrices.png'}")


@eval_app.command("arc")
@user_errors
def eval_arc(
    config: Optional[Path] = CONFIG,
    subset: str = typer.Option("evaluation", help="SEAL ARC subset: 'evaluation' (10 tasks) or 'training' (12)."),
    task: list[str] = ARC_TASKS, max_cells: int = MAX_CELLS, model: str = MODEL,
    k: int = typer.Option(2, "--selfedits", "-k", help="Self-edits per task from the untrained model (0: skip)."),
    oracle: bool = typer.Option(True, help="Also run the oracle: every configuration of a 12-point grid."),
    policy: list[str] = typer.Option([], help="A trained policy (RUN/round-N from `selfadapt train arc`); "
                                     "NAME=SPEC names its condition (default: round-N)."),
    cap: int = CAP, budget: int = BUDGET, max_tokens: int = MAX_TOKENS, votes: int = VOTES,
    leave_two_out: bool = typer.Option(False, help="Add leave-two-out tasks to the TTT data."),
    temperature: float = typer.Option(1.0, help="Self-edit sampling temperature."),
    constrain: bool = CONSTRAIN, amp: bool = AMP,
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")), resume: Optional[Path] = RESUME,
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """ARC baselines: in-context · plain TTT · TTT with own self-edits · oracle TTT · trained policy."""
    from .arc.experiment import ArcEvalConfig, arc_lora, run_arc_eval

    cfg = ArcEvalConfig(model=model, arc=_arc(subset, task, max_cells, cap, budget, max_tokens, votes, leave_two_out,
                                                            constrain),
                        selfedits=k, oracle=oracle, policies=policy, temperature=temperature, lora=arc_lora(amp),
                        seed=seed, backend=backend, gen_batch_size=gen_batch_size, dtype=dtype, device=device,
                        runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run, _ = run_arc_eval(cfg, resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print((run.path / "table.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path}")


@train_app.command("arc")
@user_errors
def train_arc(
    config: Optional[Path] = CONFIG,
    rounds: int = typer.Option(1, help="ReST-EM rounds."),
    tasks_per_round: int = typer.Option(4, "--tasks", "-c", help="Training tasks sampled per round."),
    k: int = typer.Option(3, "--selfedits", "-k", help="Self-edits per task."),
    task: list[str] = typer.Option([], "--task-id", help="Restrict the pool to these training task ids."),
    max_cells: int = MAX_CELLS, model: str = MODEL,
    cap: int = CAP, budget: int = BUDGET, max_tokens: int = MAX_TOKENS, votes: int = VOTES,
    keep: str = typer.Option("positive", help="'positive' (every self-edit that solved its task) or 'best'."),
    temperature: float = typer.Option(1.0), constrain: bool = CONSTRAIN, amp: bool = AMP,
    laser: Optional[float] = LASER, laser_target: Optional[int] = LASER_TARGET,
    sft_lr: float = typer.Option(3e-4), sft_epochs: int = typer.Option(3), sft_r: int = typer.Option(16),
    restart: bool = RESTART,
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")), resume: Optional[Path] = RESUME,
    backend: str = BACKEND, gen_batch_size: Optional[int] = GEN_BATCH_SIZE,
    dtype: str = DTYPE, device: str = DEVICE, workers: int = WORKERS, ray_address: Optional[str] = RAY_ADDRESS,
    gpus_per_worker: Optional[float] = GPUS_PER_WORKER,
) -> None:
    """ReST-EM on ARC training tasks: reward 1 if the self-edit's TTT solves the task."""
    from .arc.experiment import SELFEDIT_TOKENS, arc_lora, run_arc_training
    from .restem import PolicySFTConfig, ReSTEMConfig

    cfg = ReSTEMConfig(model=model, rounds=rounds, items_per_round=tasks_per_round, k=k, keep=keep,
                       laser=laser, laser_target=laser_target, temperature=temperature, max_new_tokens=SELFEDIT_TOKENS,
                       lora=arc_lora(amp),
                       sft=PolicySFTConfig(lr=sft_lr, epochs=sft_epochs, r=sft_r, alpha=2 * sft_r),
                       restart=restart, seed=seed, backend=backend, gen_batch_size=gen_batch_size, dtype=dtype,
                       device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run = run_arc_training(cfg, _arc("training", task, max_cells, cap, budget, max_tokens, votes, False, constrain),
                           resume=resume, parallel=_parallel(workers, ray_address, gpus_per_worker))
    console.print((run.path / "summary.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · run {run.path}")


TASK = typer.Option("countdown", help="countdown | function-calling, with optional difficulty knobs: "
                    "countdown:numbers=2,max_number=25,max_target=100 or function-calling:set=multiple,functions=2")
REFLECTION_TEMPERATURE = typer.Option(0.0, help="Reflection sampling temperature (0: greedy; GRPO samples at 1).")
RETRY_TEMPERATURE = typer.Option(0.0, help="Retry sampling temperature, as rrr train --retry-temperature (0: greedy).")


@rrr_app.command("build-failures")
@user_errors
def rrr_build_failures(
    config: Optional[Path] = CONFIG,
    task: str = TASK, model: str = MODEL,
    queries: int = typer.Option(64, help="Training-split queries to try."),
    attempts: int = typer.Option(4, help="N: a query is kept if none of its N sampled attempts is correct."),
    temperature: float = typer.Option(1.0), top_p: float = typer.Option(1.0),
    max_new_tokens: int = typer.Option(192, help="Answer length cap."),
    batch_size: int = typer.Option(16, help="Generation batch."),
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")), resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Sample N attempts per training query and save the queries the model always fails."""
    from .rrr.experiment import FailuresConfig, run_build_failures

    cfg = FailuresConfig(model=model, task=task, queries=queries, attempts=attempts, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                         dtype=dtype, device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    path, stats = run_build_failures(cfg, resume=str(resume) if resume else None)
    console.print(f"{stats['failures']} of {stats['queries']} queries failed all {attempts} attempts "
                  f"(attempt accuracy {100 * stats['attempt_accuracy']:.1f}%, pass@{attempts} "
                  f"{100 * stats[f'pass@{attempts}']:.1f}%) · failure dataset {path} · "
                  f"wall time {time.perf_counter() - t0:.0f} s")


@rrr_app.command("probe")
@user_errors
def rrr_probe(
    config: Optional[Path] = CONFIG,
    task: list[str] = typer.Option(["countdown:numbers=2", "countdown:numbers=3", "countdown"], help="A task "
                                   "spec with difficulty knobs (see build-failures --task); repeat for several."),
    model: str = MODEL,
    queries: int = typer.Option(40, help="Training-split queries per task."),
    answer_tokens: int = typer.Option(192), reflection_tokens: int = typer.Option(96),
    prior_prompt: Optional[str] = PRIOR,
    reflection_temperature: float = REFLECTION_TEMPERATURE, retry_temperature: float = RETRY_TEMPERATURE,
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")), resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """First- and second-attempt success per difficulty: train where retries succeed 5–50% of the time."""
    from .rrr.experiment import ProbeConfig, run_rrr_probe

    cfg = ProbeConfig(model=model, tasks=list(task), queries=queries, answer_tokens=answer_tokens,
                      reflection_tokens=reflection_tokens, prior_prompt=prior_prompt,
                      reflection_temperature=reflection_temperature, retry_temperature=retry_temperature, seed=seed,
                      dtype=dtype, device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run, _ = run_rrr_probe(cfg, resume=str(resume) if resume else None)
    console.print((run.path / "summary.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path} · "
                  f"plot {run.path / 'probe.png'}")


@rrr_app.command("train")
@user_errors
def rrr_train(
    config: Optional[Path] = CONFIG,
    failures: list[Path] = typer.Argument(..., help="failures.jsonl files or build-failures run directories; "
                                          "several tasks make one mixed-domain run."),
    model: str = MODEL,
    task: list[str] = typer.Option([], "--task", help="Your own task (file.py:NAME, pkg.module:NAME, a plug-in) "
                                   "that a failure dataset names; repeat for several. A data file alone never "
                                   "loads code: built-in tasks need no flag."),
    steps: int = typer.Option(10, help="GRPO optimisation steps."),
    generations: int = typer.Option(4, "--generations", "-G", help="Reflections sampled per failed query."),
    queries_per_step: int = typer.Option(2, help="Failed queries per step."),
    lr: float = typer.Option(1e-4, help="Learning rate."),
    lr_scheduler: str = typer.Option("constant", help="transformers scheduler name (constant, linear, cosine…)."),
    warmup_steps: int = typer.Option(0),
    beta: float = typer.Option(0.04, help="KL coefficient towards the initial model (0: no reference)."),
    temperature: float = typer.Option(1.0, help="Reflection sampling temperature."),
    reflection_tokens: int = typer.Option(96, help="Reflection length cap (the trained completion)."),
    retry_tokens: int = typer.Option(192, help="Retry length cap (generated inside the reward)."),
    retry_temperature: float = typer.Option(0.0, help="Retry sampling temperature (0: greedy). Under a task's "
                                            "constrain=1 a greedy retry tends to repeat the failed attempt; "
                                            "sampling makes the reward an estimate of P(correct | reflection)."),
    lora_r: int = typer.Option(16, help="LoRA rank; 0 trains every weight."),
    save_steps: int = typer.Option(5, help="Checkpoint every this many steps (for --resume)."),
    reward: list[str] = typer.Option(["retry=1"], help="A reward and its weight, NAME=WEIGHT; repeat to "
                                     "compose: retry (the retry passes the verifier), nover (the policy's "
                                     "likelihood of a reference answer, ranked in the group), laser (retry "
                                     "correct and reflection within --laser-target tokens), laser-d (the same "
                                     "with a target per difficulty bucket that adapts)."),
    laser_target: Optional[int] = typer.Option(None, help="The laser reward's target length (default 64 tokens)."),
    disco: Optional[str] = typer.Option(None, help="DISCO scaling of each group's rewards: domain weight 'log' "
                                        "(log(1+1/share)) or 'inverse' (1/share), times 1/(self-consistency+eps)."),
    disco_eps: Optional[float] = typer.Option(None, help="DISCO's eps (default 0.1)."),
    judge_model: Optional[str] = typer.Option(None, help="TinyV: a judge for retries the verifier rejects (a "
                                              "model spec, or with --judge-url the endpoint's model name)."),
    judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL for --judge-model."),
    prior_prompt: Optional[str] = PRIOR,
    backend: str = typer.Option("hf", help="What samples reflections and retries: 'hf' (transformers) or 'vllm' "
                                "(TRL's colocated vLLM copy of the policy, synced each step; the extra selfadapt[vllm])."),
    vllm_memory: float = typer.Option(0.3, help="With --backend vllm on a GPU: the share of its memory vLLM takes."),
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")), resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """GRPO on the failure set: rewards judge the retry after each reflection; only reflection tokens are trained."""
    from .rewards import parse_reward_specs
    from .rrr.experiment import RRRTrainConfig, run_rrr_train
    from .rrr.grpo import RRRGRPOConfig

    grpo = RRRGRPOConfig(num_generations=generations, queries_per_step=queries_per_step, max_steps=steps,
                         learning_rate=lr, lr_scheduler=lr_scheduler, warmup_steps=warmup_steps, beta=beta,
                         temperature=temperature, reflection_tokens=reflection_tokens, retry_tokens=retry_tokens,
                         retry_temperature=retry_temperature, lora_r=lora_r, lora_alpha=2 * lora_r, save_steps=save_steps,
                         rewards=parse_reward_specs(reward), prior_prompt=prior_prompt, laser_target=laser_target,
                         disco=disco, disco_eps=disco_eps, judge_model=judge_model, judge_url=judge_url,
                         backend=backend, vllm_memory=vllm_memory, seed=seed)
    cfg = RRRTrainConfig(failures=[str(f) for f in failures], model=model, tasks=task, grpo=grpo, dtype=dtype,
                         device=device, runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run = run_rrr_train(cfg, resume=str(resume) if resume else None)
    console.print(f"policy saved to {run / 'policy'} · curves {run / 'training.png'} · "
                  f"wall time {time.perf_counter() - t0:.0f} s")


@rrr_app.command("eval")
@user_errors
def rrr_eval(
    config: Optional[Path] = CONFIG,
    task: str = TASK, model: str = MODEL,
    policy: list[str] = typer.Option([], help="An `rrr train` run directory; repeat to compare several."),
    queries: int = typer.Option(50, help="Test-split queries."),
    general: int = typer.Option(30, help="Reading-comprehension questions for the forgetting check (0: skip)."),
    answer_tokens: int = typer.Option(192), reflection_tokens: int = typer.Option(96),
    prior_prompt: Optional[str] = typer.Option(None, "--prior-prompt", help="Prior prompt for the base model "
                                               "(a policy uses the one it was trained with)."),
    reflection_temperature: float = REFLECTION_TEMPERATURE, retry_temperature: float = RETRY_TEMPERATURE,
    seed: int = typer.Option(0), runs_dir: Path = typer.Option(Path("runs")), resume: Optional[Path] = RESUME,
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """First- and second-attempt accuracy (greedy unless asked), base vs trained, the reference answer's
    likelihood after each reflection (a dense measure where retries fail), and a general-ability check."""
    from .rrr.experiment import RRREvalConfig, run_rrr_eval

    cfg = RRREvalConfig(model=model, task=task, queries=queries, policies=policy, general=general,
                        answer_tokens=answer_tokens, reflection_tokens=reflection_tokens,
                        prior_prompt=prior_prompt, reflection_temperature=reflection_temperature,
                        retry_temperature=retry_temperature, seed=seed, dtype=dtype, device=device,
                        runs_dir=str(runs_dir))
    cfg = configfile.apply(cfg)
    t0 = time.perf_counter()
    run, _ = run_rrr_eval(cfg, resume=str(resume) if resume else None)
    console.print((run.path / "summary.md").read_text())
    console.print(f"wall time {time.perf_counter() - t0:.0f} s · records {run.records_path} · "
                  f"plot {run.path / 'accuracy.png'}")


@app.command()
@user_errors
def learn(
    config: Optional[Path] = CONFIG,
    files: list[Path] = typer.Argument(..., help="Documents (.txt, .md, .pdf, .html, .docx, ...), or folders of them, learned in order."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the adapter (PEFT, safetensors)."),
    model: str = MODEL,
    fmt: str = typer.Option("self-qa", "--format", help="Self-edit format (default: the eval default, "
                            "grounded self-QA)."),
    grounded: bool = typer.Option(True, help="Grounded decoding of the self-edits."),
    k: int = typer.Option(0, "--selfedits", "-k", help="The model's own self-edits per chunk (default none: on "
                          "train documents they added no fact to the cloze pairs, RESULTS.md)."),
    cloze: bool = typer.Option(True, help="Also train on each chunk's cloze Q→A pairs: its sentences with a name "
                               "or number asked for (no model, so no invented question); --no-cloze: the "
                               "self-edits alone."),
    reword: bool = typer.Option(True, help="Teach each cloze question once more as a reader would rather ask it "
                                "(\"Steam arrived in what year?\" for the whole sentence; \"the garden\" for the title)."),
    chunk_tokens: int = typer.Option(256, help="Tokens (of the model's tokenizer) per chunk of a document."),
    replay: int = typer.Option(8, help="Examples of earlier documents mixed into each later one (0: none)."),
    distill: int = typer.Option(16, help="The unadapted model's own answers to general questions, replayed into "
                                "every update so that it keeps them (0: none)."),
    reading: int = typer.Option(2, help="Reading-comprehension examples (a passage in context) in every update."),
    check: str = typer.Option("cloze", help="Check questions asked before and after learning: 'cloze' (10 of the "
                              "taught cloze pairs: did the facts go in?), 'model' (the model writes held-out "
                              "ones: slow, and at 135M mostly about things the document never says), 'none'."),
    checks: int = typer.Option(10, help="How many cloze check questions."),
    probe: bool = typer.Option(True, help="Ask simple general questions before and after, and warn when the "
                               "update erased what the model knew."),
    probe_adapter: bool = typer.Option(False, help="Ask the adapter every general question, before and after (what "
                                       "`ask --no-route` answers), not only those `ask` routes to it (~20 s)."),
    r: int = R, alpha: int = ALPHA, dropout: float = DROPOUT,
    lr: float = typer.Option(1e-3, help="Learning rate (learn's own: chosen on train documents, RESULTS.md)."),
    epochs: int = typer.Option(6, help="Epochs over each document's examples (learn's own, as --lr)."),
    batch_size: int = typer.Option(4, help="Sequences per step (learn's own, as --lr: more steps fit the taught "
                                   "pairs better than larger batches)."),
    max_steps: int = typer.Option(80, help="At most this many steps a document, however many epochs that is: a "
                                  "dense page stays within ~2 minutes on a 2-core CPU (RESULTS.md)."),
    targets: str = TARGETS, amp: bool = AMP,
    seed: int = typer.Option(0), dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Teach the model documents, one after another, into one adapter; show what it learned."""
    from .teach import LearnConfig, learn as learn_documents, report_lines

    cfg = LearnConfig(model=model, fmt=fmt, grounded=grounded, selfedits_per_chunk=k, cloze=cloze, reword=reword,
                      chunk_tokens=chunk_tokens, replay=replay, distill=distill, reading=reading, check=check, checks=checks, probe=probe,
                      probe_adapter=probe_adapter,
                      lora=_lora(r, alpha, dropout, lr, epochs, batch_size, targets, amp, max_steps), seed=seed,
                      dtype=dtype, device=device)
    cfg = configfile.apply(cfg)
    meta = learn_documents(files, out, cfg)
    for d in meta["documents"]:
        capped = " (the --max-steps cap: fewer epochs than --epochs)" if d["capped"] else ""
        console.print(f"{d['document']}: {d['chunks']} chunk(s), {d['sequences']} sequences (+{d['replayed']} "
                      f"replayed, +{d['general']} general), {d['steps']} steps{capped}, loss "
                      f"{d['first_loss']:.3f} → {d['final_loss']:.3f}")
    console.print("\n".join(report_lines(meta, json.loads((out / "checks.json").read_text()))))
    console.print(f"adapter saved to {out} (its README.md says the same; every check in checks.json)")


@app.command()
@user_errors
def ask(
    config: Optional[Path] = CONFIG,
    questions: list[str] = typer.Argument(..., help="One or more questions."),
    adapter: list[Path] = typer.Option([], help="An adapter saved by `selfadapt learn`; repeat to compare "
                                       "several (each answers in turn)."),
    combine: bool = typer.Option(False, help="Answer with all --adapter at once (their LoRA updates summed)."),
    model: Optional[str] = typer.Option(None, help="Base model (default: the adapters' when they name the embedded "
                                        "model or a Hub id, else the embedded one; an adapter learned on a local "
                                        "model needs it named here)."),
    max_new_tokens: int = typer.Option(12, help="Answer length cap (a short answer phrase)."),
    route: bool = typer.Option(True, help="Answer a question that names nothing of an adapter's documents with "
                               "the adapter disabled (the update rewrites unrelated answers); --no-route: "
                               "the adapter answers everything."),
    dtype: str = DTYPE, device: str = DEVICE,
) -> None:
    """Answer questions with a short phrase, without the documents in context, optionally with
    learned adapters."""
    from .teach import adapter_paths, routed
    from .teach import ask as ask_questions

    configfile.apply()
    answers = ask_questions(questions, adapter, model, combine=combine, route=route, max_new_tokens=max_new_tokens,
                            dtype=dtype, device=device)
    _, metas = adapter_paths(adapter)
    for n, (label, replies) in enumerate(answers.items()):
        if len(answers) > 1:
            console.print(f"[bold]{label}[/]")
        group = metas if combine else metas[n:n + 1]
        for q, a in zip(questions, replies):
            note = "  [dim](the model without the adapter: the question names nothing of its documents)[/]" \
                if route and group and not routed(q, group) else ""
            console.print(f"[bold]Q:[/] {q}\n[bold]A:[/] {a}{note}")


@app.command("model")
@user_errors
def model_info(config: Optional[Path] = CONFIG,
               spec: str = typer.Argument(EMBEDDED, help="Model spec to resolve and load."),
               dtype: str = DTYPE, device: str = DEVICE) -> None:
    """Load a model once (converting and caching GGUF) and show where it lives."""
    from .models import load_model

    configfile.apply()
    t0 = time.perf_counter()
    m = load_model(spec, dtype=dtype, device=device)
    n = sum(p.numel() for p in m.model.parameters())
    console.print(f"{spec}: {m.model.config.model_type}, {n / 1e6:.0f}M parameters, {m.model.dtype} on "
                  f"{m.device}, chat template: {bool(m.tokenizer.chat_template)}\npath: {m.path}\n"
                  f"loaded in {time.perf_counter() - t0:.1f} s")
