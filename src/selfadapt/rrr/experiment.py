"""The three ``selfadapt rrr`` jobs, each a resumable run directory.

- ``build-failures``: sample N attempts per training query, keep the ones never solved;
- ``train``: GRPO on the failures, rewarding only reflections; saves the policy (a LoRA
  adapter, or full weights with ``lora_r=0``) with metrics, rollouts and curves;
- ``eval``: first- and second-attempt accuracy on the test split for the base model and
  each trained policy, plus reading-comprehension QA as a forgetting check.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import settings as S
from ..evaluate import Paired, mean_ci, paired, progress_bar
from ..generation import SamplingConfig, generate
from ..grading import grade
from ..knowledge.data import load_passages
from ..lora import load_adapter, name_base_model
from ..models import EMBEDDED, LoadedModel, chat_prompt, load_model, resolve
from ..plots import plot_curves, plot_scores
from ..prior import check_prior
from ..rewards.likelihood import reference_scores
from ..runs import Run, read_jsonl
from ..settings import setting
from .failures import build_failures, load_failures
from .grpo import RRRGRPOConfig, make_trainer
from .reflect import ReflectConfig, accuracy, reflect_and_retry
from .tasks import Task, get_task

log = logging.getLogger(__name__)
GENERAL_SYSTEM = "Answer the question with a short, direct answer."


def _open_run(resume: str | None, runs_dir: str, name: str, cfg: Any) -> Run:
    """A task's name may hold a colon (``reasoning-gym:letter_counting``): not in a directory name."""
    return Run.resume(Path(resume), cfg) if resume else Run.create(Path(runs_dir), name.replace(":", "-"), cfg)


TASK_HELP = ("countdown | function-calling | reasoning-gym:NAME, with optional difficulty knobs: "
             "countdown:numbers=2,max_number=25,max_target=100 or function-calling:set=multiple,functions=2")


@dataclass
class FailuresConfig:
    """``selfadapt rrr build-failures``: the training queries the model always fails."""

    model: str = setting(EMBEDDED, S.MODEL)
    task: str = setting("countdown", TASK_HELP)
    queries: int = setting(64, "Training-split queries to try.")
    attempts: int = setting(4, "N: a query is kept if none of its N sampled attempts is correct.")
    temperature: float = setting(1.0, "Attempt sampling temperature.")
    top_p: float = setting(1.0, "Attempt nucleus sampling (top-p).")
    max_new_tokens: int = setting(192, "Answer length cap.")
    batch_size: int = setting(16, "Generation batch.")
    seed: int = setting(0, S.SEED)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    runs_dir: str = setting("runs", S.RUNS_DIR)


def run_build_failures(cfg: FailuresConfig, resume: str | None = None) -> tuple[Path, dict[str, Any]]:
    """``rrr build-failures``: the training queries none of whose sampled attempts is correct; returns the
    failures file and its summary."""
    task = get_task(cfg.task)
    queries = task.queries("train", cfg.queries)
    m = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    run = _open_run(resume, cfg.runs_dir, f"rrr-failures-{task.name}", cfg)
    sampling = SamplingConfig(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.batch_size)
    path = build_failures(m.model, m.tokenizer, task, queries, run, attempts=cfg.attempts, sampling=sampling,
                          seed=cfg.seed)
    solved = [r["solved"] for r in run.records()]
    stats = {"queries": len(solved), "failures": sum(s == 0 for s in solved), "attempts": cfg.attempts,
             "attempt_accuracy": sum(solved) / max(1, len(solved) * cfg.attempts),
             f"pass@{cfg.attempts}": sum(s > 0 for s in solved) / max(1, len(solved)), "file": str(path)}
    run.write_json("metrics.json", stats)
    return path, stats


@dataclass
class RRRTrainConfig:
    """``selfadapt rrr train``: GRPO on failure datasets, rewarding only the reflection tokens."""

    failures: list[str] = setting(help="failures.jsonl files or build-failures run directories; several tasks "
                                  "make one mixed-domain run.")
    model: str = setting(EMBEDDED, S.MODEL)
    tasks: list[str] = setting(help="Your own task (file.py:NAME, pkg.module:NAME, a plug-in) that a failure "
                               "dataset names; repeat for several. A data file alone never loads code: built-in "
                               "tasks need no flag.", factory=list)
    grpo: RRRGRPOConfig = setting(help="The GRPO settings.", factory=RRRGRPOConfig)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    runs_dir: str = setting("runs", S.RUNS_DIR)

    def __post_init__(self) -> None:
        if isinstance(self.failures, (str, Path)):
            self.failures = [str(self.failures)]


def _checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def run_rrr_train(cfg: RRRTrainConfig, resume: str | None = None) -> Path:
    """GRPO on the failure set; resumes from the newest checkpoint; returns the run directory."""
    if not isinstance(cfg.model, str):
        raise ValueError("rrr train fine-tunes its own copy of the model: give it a model spec (a directory saved "
                         "with save_pretrained, or a Hub id), not a model object")
    task, failures = load_failures(cfg.failures, cfg.tasks)
    # Full fine-tuning keeps fp32 master weights: AdamW on bf16 weights rounds a step of lr 1e-6
    # away entirely (bf16 spacing at 0.02 is ~1e-4). LoRA adapters are fp32 in PEFT already.
    m = load_model(cfg.model, dtype="float32" if cfg.grpo.lora_r == 0 else cfg.dtype, device=cfg.device)
    run = _open_run(resume, cfg.runs_dir, f"rrr-train-{task.name}", cfg)
    policy = run.path / "policy"
    if policy.exists():
        log.info("%s is already trained", run.path)
        return run.path
    rollouts = run.path / "rollouts.jsonl"
    checkpoints = sorted(run.path.glob("checkpoints/checkpoint-*"), key=_checkpoint_step)
    if rollouts.exists():  # rollouts after the newest checkpoint (all, without one) will be generated again
        done = _checkpoint_step(checkpoints[-1]) if checkpoints else 0
        keep = [r for _, r in read_jsonl(rollouts, partial_last=True) if r["step"] < done]
        rollouts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), encoding="utf-8")
    log.info("GRPO on %d failed %s queries, %d steps of %d queries × %d reflections", len(failures), task.name,
             cfg.grpo.max_steps, cfg.grpo.queries_per_step, cfg.grpo.num_generations)
    trainer = make_trainer(m.model, m.tokenizer, task, failures, cfg.grpo, run.path / "checkpoints", rollouts,
                           tracker=run.tracker)
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    history = [h for h in trainer.state.log_history if "reward" in h or "loss" in h]
    run.write_json("metrics.json", {"failures": len(failures), "history": history, "step_times": trainer.step_times})
    components = [f"rewards/{name}/mean" for name in cfg.grpo.rewards]  # TRL logs each reward function
    plot_curves(history, ["reward", *components, "kl", "loss", "completions/mean_length"], run.path / "training.png",
                f"RRR GRPO on {task.name}")
    tmp = run.path / "policy.tmp"
    trainer.save_model(str(tmp))
    if (tmp / "adapter_config.json").is_file():  # a LoRA policy names its base as a user finds it, not a cache path
        name_base_model(tmp, cfg.model, m.path)
    m.tokenizer.save_pretrained(tmp)
    tmp.rename(policy)  # the policy appears only when complete
    return run.path


@dataclass
class AttemptSettings:
    """How attempts, reflections and retries are generated; shared by `rrr eval` and `rrr probe`."""

    answer_tokens: int = setting(192, "First-attempt and retry length cap.")
    reflection_tokens: int = setting(96, "Reflection length cap.")
    chunk: int = setting(16, "Queries generated per batch.")
    prior_prompt: str | None = setting(None, "Prior prompt for the base model (a policy uses the one it was "
                                       "trained with): reasoning | planning | code | knowledge | null-example.")
    reflection_temperature: float = setting(0.0, "Reflection sampling temperature (0: greedy; GRPO samples at 1).")
    retry_temperature: float = setting(0.0, "Retry sampling temperature, as rrr train --retry-temperature "
                                       "(0: greedy).")
    seed: int = setting(0, S.SEED)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    runs_dir: str = setting("runs", S.RUNS_DIR)

    def __post_init__(self) -> None:
        check_prior(self.prior_prompt)
        if min(self.reflection_temperature, self.retry_temperature) < 0:
            raise ValueError("temperatures must be >= 0")


@dataclass
class RRREvalConfig(AttemptSettings):
    """``selfadapt rrr eval``: first and second attempts, base against trained policies."""

    model: str = setting(EMBEDDED, S.MODEL)
    task: str = setting("countdown", TASK_HELP)
    queries: int = setting(50, "Test-split queries.")
    policies: list[str] = setting(help="An `rrr train` run directory (or its policy/); repeat to compare several.",
                                  factory=list)
    general: int = setting(30, "Reading-comprehension questions for the forgetting check (0: skip).")


def policy_prior(policy: str | None, default: str | None) -> str | None:
    """The prior prompt a policy was trained with (its run's config), else ``default``."""
    if policy is None:
        return default
    path = Path(policy)
    config = (path.parent if path.name == "policy" else path) / "config.yaml"
    if not config.is_file():
        return default
    return ((yaml.safe_load(config.read_text()) or {}).get("grpo") or {}).get("prior_prompt", default)


def load_policy(policy: str | None, base: str, dtype: str, device: str) -> LoadedModel:
    """The base model, or a trained policy: its LoRA adapter on the model it was trained from."""
    if policy is None:
        return load_model(base, dtype=dtype, device=device)
    path = Path(policy)
    path = path / "policy" if (path / "policy").is_dir() else path
    if not (path / "adapter_config.json").is_file():
        return load_model(str(path), dtype=dtype, device=device)
    trained_from = path.parent / "config.yaml"
    spec = yaml.safe_load(trained_from.read_text())["model"] if trained_from.is_file() else base
    m = load_model(spec, dtype=dtype, device=device)
    m.model = load_adapter(m.model, path)
    return m


def general_questions(n: int) -> list[tuple[str, str]]:
    """(prompt text, gold answer): SQuAD train questions with their passage in context."""
    out = []
    for p in load_passages("train"):
        out += [(f"{p.text}\n\nQuestion: {q.question}", q.answer) for q in p.questions]
        if len(out) >= n:
            break
    return out[:n]


def _reflect_into_run(run: Run, name: str, m: LoadedModel, task: Task, queries: list[dict[str, Any]],
                      cfg: "RRREvalConfig | ProbeConfig", bar: Any, job: Any, prior: str | None = None,
                      temperatures: tuple[float, float] = (0.0, 0.0), dense: bool = False) -> None:
    """Greedy attempt → reflection → retry for every query the run does not hold yet, in chunks
    (``temperatures``: of the reflection and the retry; 0 is greedy). ``dense`` adds, for each
    failed first attempt, the mean per-token log-likelihood of the task's reference answer as the
    retry after the reflection: whether a reflection brings the right answer closer, measured
    even where every retry fails (NOVER's signal, on held-out queries)."""
    reflect_cfg = ReflectConfig(SamplingConfig(cfg.answer_tokens, 0.0, batch_size=cfg.chunk),
                                SamplingConfig(cfg.reflection_tokens, temperatures[0], batch_size=cfg.chunk), prior,
                                SamplingConfig(cfg.answer_tokens, temperatures[1], batch_size=cfg.chunk))
    todo = [q for q in queries if not run.done(f"{name}/task/{q['id']}")]
    for start in range(0, len(todo), cfg.chunk):
        part = todo[start : start + cfg.chunk]
        recs = reflect_and_retry(m.model, m.tokenizer, task, part, reflect_cfg, seed=cfg.seed)
        failed = [(q, r) for q, r in zip(part, recs) if not r["first_correct"]]
        if dense and failed:
            scores = reference_scores(m.model, m.tokenizer, task, [q for q, _ in failed],
                                      [r["attempt"] for _, r in failed], [r["reflection"] for _, r in failed], prior)
            for (_, r), score in zip(failed, scores):
                r["reference_logprob"] = score.logprob / score.tokens
        for rec in recs:
            run.append(f"{name}/task/{rec['id']}", {"condition": name, "kind": "task", **rec})
        bar.advance(job, len(part))


def _evaluate(run: Run, name: str, m: LoadedModel, task: Task, queries: list[dict[str, Any]],
              general: list[tuple[str, str]], cfg: RRREvalConfig, bar: Any, job: Any, prior: str | None) -> None:
    _reflect_into_run(run, name, m, task, queries, cfg, bar, job, prior,
                      (cfg.reflection_temperature, cfg.retry_temperature), dense=True)
    todo_g = [i for i in range(len(general)) if not run.done(f"{name}/general/{i}")]
    for start in range(0, len(todo_g), cfg.chunk):
        idx = todo_g[start : start + cfg.chunk]
        prompts = [chat_prompt(m.tokenizer, general[i][0], system=GENERAL_SYSTEM) for i in idx]
        answers = generate(m.model, m.tokenizer, prompts, SamplingConfig(32, 0.0, batch_size=cfg.chunk))
        for i, a in zip(idx, answers):
            run.append(f"{name}/general/{i}", {"condition": name, "kind": "general", "gold": general[i][1],
                                               "response": a, "correct": grade(a, general[i][1]).contains})
        bar.advance(job, len(idx))


def summarize_rrr(records: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Accuracies with bootstrap intervals, and each policy's paired difference from the first
    condition (the base model) on the same queries. The reference answer's log-likelihood
    exists only where a first attempt failed, so it is paired on queries both models failed."""
    rows = []
    by_query = lambda name, key, kind="task": {  # noqa: E731
        r["id"] if kind == "task" else r["key"].rsplit("/", 1)[1]: float(r[key])
        for r in records if r["condition"] == name and r["kind"] == kind and key in r}
    for name in names:
        task_recs = [r for r in records if r["condition"] == name and r["kind"] == "task"]
        general = [float(r["correct"]) for r in records if r["condition"] == name and r["kind"] == "general"]
        acc = accuracy(task_recs)
        vs = {} if name == names[0] else {
            key: asdict(paired(by_query(name, field_, kind), by_query(names[0], field_, kind)))
            for key, field_, kind in [("first", "first_correct", "task"), ("second", "second_correct", "task"),
                                      ("general", "correct", "general"), ("reference", "reference_logprob", "task")]}
        reference = [r["reference_logprob"] for r in task_recs if "reference_logprob" in r]
        rows.append({"condition": name, "n": acc["n"],
                     "first": mean_ci([float(r["first_correct"]) for r in task_recs]),
                     "second": mean_ci([float(r["second_correct"]) for r in task_recs]),
                     "fixed_by_retry": sum(r["second_correct"] and not r["first_correct"] for r in task_recs),
                     "general": mean_ci(general) if general else None,
                     "reference": mean_ci(reference) if reference else None, "vs_base": vs})
    return rows


def rrr_table(rows: list[dict[str, Any]]) -> str:
    ci = lambda t: f"{100 * t[0]:.1f} ({100 * t[1]:.1f}–{100 * t[2]:.1f})"  # noqa: E731
    diff = lambda r, k, scale=100, digits=1: (  # noqa: E731
        Paired(**r["vs_base"][k]).cell(scale, digits) + f" {Paired(**r['vs_base'][k]).wtl}" if r["vs_base"] else "–")
    logp = lambda t: "–" if not t else f"{t[0]:.3f} ({t[1]:.3f}…{t[2]:.3f})"  # noqa: E731
    lines = ["| model | 1st attempt % (95% CI) | 2nd attempt % (95% CI) | Δ 2nd vs base, paired (95% CI) W/T/L | "
             "fixed by retry | general QA % (95% CI) | Δ general vs base | reference answer log p / token after "
             "the reflection (95% CI) | Δ log p vs base, paired | queries |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {ci(r['first'])} | {ci(r['second'])} | {diff(r, 'second')} | "
                     f"{r['fixed_by_retry']} | {ci(r['general']) if r['general'] else '–'} | "
                     f"{diff(r, 'general') if r['general'] else '–'} | {logp(r['reference'])} | "
                     f"{diff(r, 'reference', 1, 3) if r['reference'] else '–'} | {r['n']} |")
    return "\n".join(lines)


def run_rrr_eval(cfg: RRREvalConfig, resume: str | None = None) -> tuple[Run, list[dict[str, Any]]]:
    """``rrr eval``: first and second attempts on test queries, by the base model and each policy; returns
    the run and its table rows."""
    task = get_task(cfg.task)
    queries = task.queries("test", cfg.queries)
    general = general_questions(cfg.general)
    resolve(cfg.model)  # a bad model spec fails before a run directory exists
    for p in cfg.policies:
        if not Path(p).is_dir():
            raise FileNotFoundError(f"policy {p}: no such directory")
    run = _open_run(resume, cfg.runs_dir, f"rrr-eval-{task.name}", cfg)
    conditions = [("base", None)] + [(Path(p).resolve().name if Path(p).name != "policy"
                                      else Path(p).resolve().parent.name, p) for p in cfg.policies]
    names = [n for n, _ in conditions]
    if len(set(names)) != len(names):
        raise ValueError(f"two policies share a name: {names}")
    per_condition = len(queries) + len(general)
    with progress_bar() as bar:
        for name, policy in conditions:
            job = bar.add_task(f"{task.name} · {name}", total=per_condition)
            done = sum(run.done(f"{name}/task/{q['id']}") for q in queries) + sum(
                run.done(f"{name}/general/{i}") for i in range(len(general)))
            bar.advance(job, done)
            if done == per_condition:
                continue
            _evaluate(run, name, load_policy(policy, cfg.model, cfg.dtype, cfg.device), task, queries, general,
                      cfg, bar, job, policy_prior(policy, cfg.prior_prompt))
    rows = summarize_rrr(run.records(), names)
    table = rrr_table(rows)
    (run.path / "summary.md").write_text(f"# selfadapt rrr eval ({task.name}, {len(queries)} test queries)\n\n"
                                         f"{table}\n")
    run.write_json("metrics.json", rows)
    bars = [{"condition": f"{r['condition']} · {label}", "score": r[key][0], "ci_low": r[key][1],
             "ci_high": r[key][2]} for r in rows for key, label in
            [("first", "1st"), ("second", "2nd"), ("general", "QA")] if r[key]]
    plot_scores(bars, run.path / "accuracy.png", f"Reflect, Retry, Reward: {task.name}")
    return run, rows


@dataclass
class ProbeConfig(AttemptSettings):
    """Where does the model sometimes succeed? First attempt and retry per difficulty (train split)."""

    model: str = setting(EMBEDDED, S.MODEL)
    tasks: list[str] = setting(help="A task spec with difficulty knobs (see build-failures --task); repeat for "
                               "several.", factory=lambda: ["countdown:numbers=2", "countdown:numbers=3", "countdown"])
    queries: int = setting(40, "Training-split queries per task.")


TRAINABLE = (0.05, 0.5)  # retry success on first failures where GRPO groups get mixed rewards


def summarize_probe(records: list[dict[str, Any]], specs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        recs = [r for r in records if r["condition"] == spec and r["kind"] == "task"]
        failed = [float(r["second_correct"]) for r in recs if not r["first_correct"]]
        retry = mean_ci(failed) if failed else (float("nan"),) * 3
        rows.append({"task": spec, "n": len(recs), "first": mean_ci([float(r["first_correct"]) for r in recs]),
                     "second": mean_ci([float(r["second_correct"]) for r in recs]), "failed": len(failed),
                     "retry": retry, "trainable": bool(failed) and TRAINABLE[0] <= retry[0] <= TRAINABLE[1]})
    return rows


def probe_table(rows: list[dict[str, Any]]) -> str:
    ci = lambda t: "–" if t[0] != t[0] else f"{100 * t[0]:.1f} ({100 * t[1]:.1f}–{100 * t[2]:.1f})"  # noqa: E731
    lines = ["| task | queries | 1st attempt % (95% CI) | 2nd attempt % (95% CI) | retry success on failures "
             "% (95% CI) | failures | in the 5–50% band |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['n']} | {ci(r['first'])} | {ci(r['second'])} | {ci(r['retry'])} | "
                     f"{r['failed']} | {'yes' if r['trainable'] else 'no'} |")
    return "\n".join(lines)


def run_rrr_probe(cfg: ProbeConfig, resume: str | None = None) -> tuple[Run, list[dict[str, Any]]]:
    """First- and second-attempt success per difficulty, greedy, on training queries (resumable)."""
    tasks = [(spec, get_task(spec)) for spec in cfg.tasks]  # a bad spec fails before any work
    if len({s for s, _ in tasks}) != len(tasks):
        raise ValueError(f"a task spec is given twice: {cfg.tasks}")
    m = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    run = _open_run(resume, cfg.runs_dir, "rrr-probe", cfg)
    with progress_bar() as bar:
        for spec, task in tasks:
            queries = task.queries("train", cfg.queries)
            job = bar.add_task(spec, total=len(queries))
            bar.advance(job, sum(run.done(f"{spec}/task/{q['id']}") for q in queries))
            _reflect_into_run(run, spec, m, task, queries, cfg, bar, job, cfg.prior_prompt,
                              (cfg.reflection_temperature, cfg.retry_temperature))
    rows = summarize_probe(run.records(), cfg.tasks)
    (run.path / "summary.md").write_text(f"# selfadapt rrr probe ({cfg.model}, {cfg.queries} train queries "
                                         f"per task)\n\n{probe_table(rows)}\n")
    run.write_json("metrics.json", rows)
    bars = [{"condition": f"{r['task']} · {label}", "score": r[key][0], "ci_low": r[key][1], "ci_high": r[key][2]}
            for r in rows for key, label in [("first", "1st"), ("retry", "retry")] if r[key][0] == r[key][0]]
    plot_scores(bars, run.path / "probe.png", "Reflect, Retry, Reward: success per difficulty")
    return run, rows
