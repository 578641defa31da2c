"""Experiment trackers as a mirror of a run, through accelerate's trackers (TensorBoard, W&B,
trackio, MLflow, ... whichever accelerate knows and is installed).

The JSONL records stay the source of truth; a tracker shows the same numbers as curves while a
run goes. ``--report-to`` (and ``--project``) name them for a command (``configure``); every run
it makes opens one tracker run per run directory, named after it, in one project, and closes it
when the command ends (``close_all``). TRL's trainers do not open trackers of their own: their logs
reach the same tracker run through ``TrainerLogs``, so a GRPO curve sits beside the run's records.

Every value is logged at an explicit step of a named axis, and its name says what it measures:

- a record's score, per condition (and round), at the axis ``item`` (its n-th record), named by
  the run's metric (``exact_match``, ``solved``, ...), with ``{metric}_gain`` over the unadapted model;
- a ReST-EM round's metrics at the axis ``round``, and its policy SFT's loss per step at ``policy_sft_step``;
- TRL's GRPO logs at ``grpo_step``; ``learn``'s training loss at ``learn_step`` and each document at ``document``;
- a finished table's rows once, at the axis ``table`` (step 0).

TensorBoard takes the step as it is; W&B keeps one step counter per run, so each axis is a
metric of its own (``define_metric``) and charts plot against it; trackio stores the step as given.
TensorBoard, W&B and trackio stay on this machine unless asked: W&B runs offline (``WANDB_MODE``
to change it; ``wandb sync`` uploads later), TensorBoard writes event files in the run directory,
trackio its local SQLite store (``$TRACKIO_DIR``; ``trackio show`` opens the dashboard); other
trackers (comet_ml, clearml, swanlab, ...) follow their own defaults. A failure to log is a
warning: the mirror never stops a run. A resumed run continues each condition's ``item`` axis;
W&B (offline) opens a new run of the same name for it, TensorBoard and trackio append.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PROJECT = "selfadapt"
_report_to: list[str] = []
_project: list[str] = [PROJECT]
_open: list["Tracker"] = []


def known() -> list[str]:
    """The trackers accelerate knows, by name."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def configure(report_to: list[str], project: str | None = None) -> None:
    """The trackers every later run mirrors into ('none' or an empty list: none), in ``project``.
    A tracker accelerate does not know, or whose package is missing, is an error naming the fix."""
    from accelerate.tracking import get_available_trackers

    names = [n for n in dict.fromkeys(report_to) if n != "none"]
    unknown = [n for n in names if n not in known()]
    if unknown:
        raise ValueError(f"unknown tracker {unknown[0]!r}; choose from none, {', '.join(known())}")
    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"the tracker {missing[0]!r} is not installed: pip install {missing[0]} "
                         "(tensorboard, wandb and trackio come with 'selfadapt[trackers]')")
    _report_to[:] = names
    _project[:] = [project or PROJECT]


def report_to() -> list[str]:
    """The configured trackers."""
    return list(_report_to)


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested dicts, as slash-joined names; a list of dicts only where each
    names a condition (a table's rows); any other list is left out (a history is logged as it goes)."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list) and data and all(isinstance(v, dict) and "condition" in v for v in data):
        items = ((str(d["condition"]), d) for d in data)
    else:
        items = ()
    for k, v in items:
        name = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            out[name] = float(v)
        else:
            out.update(_numbers(v, name))
    return out


def _flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as the flat scalars every tracker's hyperparameter view takes."""
    out: dict[str, Any] = {}
    for k, v in (config or {}).items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat_config(v, name))
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[name] = v
        else:
            out[name] = str(v)
    return out


def _start(name: str, project: str, run_dir: Path, run_name: str, config: dict[str, Any]):
    """One of accelerate's trackers, started, for this run: files under ``run_dir``, named ``run_name``."""
    from accelerate import PartialState
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    PartialState()  # accelerate's trackers log through its state (one process here, or this one's rank)
    cls = LOGGER_TYPE_TO_CLASS[name]
    if name == "tensorboard":
        tracker = cls(run_name, str(run_dir / "tensorboard"))
    elif name == "wandb":  # a run of its own even while another is open (two runners in one script)
        tracker = cls(project, name=run_name, dir=str(run_dir), mode=os.environ.get("WANDB_MODE", "offline"),
                      config=config, reinit="create_new")
    elif name == "trackio":
        tracker = cls(project, name=run_name, config=config, resume="allow", auto_log_cpu=False,
                      auto_log_gpu=False)
    elif name == "mlflow":
        tracker = cls(project, logging_dir=str(run_dir / "mlruns"), run_name=run_name)
    elif cls.requires_logging_directory:
        tracker = cls(project, str(run_dir / name))
    else:
        tracker = cls(project)
    tracker.start()
    if name not in ("wandb", "trackio"):  # those two took it at init
        tracker.store_init_configuration({k: "" if v is None else v for k, v in config.items()})
    return tracker


def _head(record: dict[str, Any]) -> str:
    """A record's round (if any) and condition: ``round0/selfedit``, ``passage``."""
    return "/".join(x for x in (f"round{record['round']}" if "round" in record else "",
                                str(record.get("condition") or "")) if x)


class Tracker:
    """The configured trackers for one run directory; ``log`` sends scalars at a step of an axis."""

    def __init__(self, run_dir: Path, config: dict[str, Any], name: str | None = None):
        run_dir = Path(run_dir)
        flat = _flat_config(config)
        self.score_name = "score"  # the run's metric, as its tags are named (``Run.names_score``)
        self.items: Counter[str] = Counter()  # records so far per round and condition: the axis ``item``
        self._axes: set[str] = set()
        self._tags: set[str] = set()
        self._failed: set[str] = set()
        self.trackers: list = []
        _open.append(self)
        for n in _report_to:  # each kept as it starts, so a later failure still finishes it
            self.trackers.append(_start(n, _project[0], run_dir, name or run_dir.name, flat))

    def log(self, scalars: dict[str, float], step: int, axis: str) -> None:
        """``scalars`` at ``step`` of ``axis`` (a round, a GRPO step, an item, a document)."""
        if not scalars:
            return
        for tracker in self.trackers:
            try:
                if tracker.name == "wandb":
                    run = tracker.tracker
                    if axis not in self._axes:
                        run.define_metric(axis, hidden=True)
                        self._axes.add(axis)
                    for tag in scalars.keys() - self._tags:  # a "." would be read as a nested key
                        run.define_metric(tag.replace(".", "\\."), step_metric=axis)
                    tracker.log({**scalars, axis: step})
                elif tracker.name == "mlflow":  # its names allow letters, digits and _-.:/ only
                    tracker.log({re.sub(r"[^\w\-.:/ ]", "_", k): v for k, v in scalars.items()}, step=step)
                else:
                    tracker.log(scalars, step=step)
            except Exception as e:  # the mirror never stops the run; its records are the truth
                if tracker.name not in self._failed:
                    log.warning("%s: could not log %s (%s); the run goes on", tracker.name, next(iter(scalars)), e)
                    self._failed.add(tracker.name)
        self._tags.update(scalars)

    def record(self, record: dict[str, Any]) -> None:
        """A run record's score and gain over the unadapted model, under its round and condition,
        each at the next step of the axis ``item``."""
        head = _head(record)
        values = {f"{head}/{name}": float(record[key]) for key, name in (("score", self.score_name),
                                                                         ("gain", f"{self.score_name}_gain"))
                  if isinstance(record.get(key), (int, float)) and not isinstance(record.get(key), bool)}
        if values:
            self.log(values, self.items[head], "item")
            self.items[head] += 1

    def resumed(self, records: list[dict[str, Any]]) -> None:
        """A resumed run's records so far: the next record of a condition continues its axis."""
        self.items.update(_head(r) for r in records if isinstance(r.get("score"), (int, float)))

    def metrics(self, name: str, data: Any) -> None:
        """A metrics file's numbers: a ReST-EM round's (``round-N/metrics.json``) at its round, with
        its policy SFT's losses per step; a finished table's once (the run's own ``metrics.json``)."""
        parent = Path(name).parent.name
        if parent.startswith("round-"):
            r = int(parent.removeprefix("round-"))
            self.log({f"restem/{k.replace('score', self.score_name)}": v for k, v in _numbers(data).items()},
                     r, "round")
            for step, loss in enumerate((data.get("sft") or {}).get("losses") or [], 1):
                self.log({f"round{r}/policy_sft/loss": float(loss)}, step, "policy_sft_step")
        elif "rounds" not in data:  # a ReST-EM run's own metrics.json repeats its rounds' files
            self.log({f"table/{k}".replace("/score", f"/{self.score_name}"): v
                      for k, v in _numbers(data.get("rows", data) if isinstance(data, dict) else data).items()},
                     0, "table")

    def close(self) -> None:
        trackers, self.trackers = self.trackers, []
        if self in _open:
            _open.remove(self)
        for tracker in trackers:
            try:
                tracker.finish()
            except Exception as e:  # the others are still finished, and the command's own error shows
                log.warning("%s: could not finish its run (%s)", tracker.name, e)


def close_all() -> None:
    """Finish every tracker run still open (the end of a command)."""
    for tracker in list(_open):
        tracker.close()


atexit.register(close_all)  # the Python API: runs mirrored without a command around them


def trainer_logs(tracker: Tracker | None, prefix: str, axis: str) -> list:
    """A transformers callback list that sends a TRL trainer's logs to ``tracker`` (none without one)."""
    if tracker is None or not tracker.trackers:
        return []
    from transformers import TrainerCallback

    class TrainerLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            tracker.log({f"{prefix}/{k}": float(v) for k, v in (logs or {}).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}, state.global_step, axis)

    return [TrainerLogs()]
