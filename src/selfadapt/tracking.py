"""Experiment trackers as a mirror of a run: TensorBoard, Weights & Biases (offline), trackio.

The JSONL records stay the source of truth; a tracker only shows the same numbers as curves
while a run goes. ``--report-to`` names the trackers once (``configure``); every run made
afterwards in the process mirrors into them: each record's ``score`` and ``gain`` as it is
appended (``{round}/{condition}/score``, one step per record), and the numbers of every
``metrics.json`` it writes (a ReST-EM round's rewards, winners and SFT losses, a table's
rows). TRL's trainers get the same list as their ``report_to``. Nothing here reaches a
tracker's server: W&B runs in offline mode (``wandb sync`` uploads later), TensorBoard writes
local event files, trackio its local SQLite store (``$TRACKIO_DIR``, by default
``~/.cache/huggingface/trackio``; project ``selfadapt``, one run per run directory; ``trackio
show`` opens the dashboard).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb", "trackio")
_report_to: list[str] = []


def configure(report_to: list[str]) -> None:
    """The trackers every later run mirrors into ('none' or an empty list: none)."""
    names = [n for n in report_to if n != "none"]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(f"unknown tracker {unknown[0]!r}; choose from none, {', '.join(TRACKERS)}")
    _report_to[:] = names


def report_to() -> list[str]:
    """The configured trackers, as TRL's ``report_to`` takes them."""
    return list(_report_to)


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested dicts (lists of dicts by position), as slash-joined names."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list) and all(isinstance(v, dict) for v in data):
        items = ((str(d.get("condition", d.get("round", i))), d) for i, d in enumerate(data))
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


class Tracker:
    """The configured trackers for one run directory; ``log`` sends scalars to each."""

    def __init__(self, run_dir: Path, config: dict[str, Any]):
        self.steps: Counter[str] = Counter()
        self.tensorboard, self.wandb, self.trackio = None, None, None
        if "tensorboard" in _report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        if "wandb" in _report_to:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            self.wandb = wandb.init(project="selfadapt", name=Path(run_dir).name, dir=str(run_dir), config=config,
                                    reinit="create_new")
        if "trackio" in _report_to:
            import trackio

            self.trackio = trackio.init(project="selfadapt", name=Path(run_dir).name, config=config, resume="allow",
                                        auto_log_cpu=False, auto_log_gpu=False)

    def log(self, scalars: dict[str, float], step: int | None = None) -> None:
        """Each tag at its own next step (records), or all at ``step`` (a metrics file)."""
        if not scalars:
            return
        if self.tensorboard is not None:
            for tag, value in scalars.items():
                self.tensorboard.add_scalar(tag, value, self.steps[tag] if step is None else step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(scalars)  # W&B keeps one step counter per run
        if self.trackio is not None:
            self.trackio.log(scalars)  # as W&B: one step counter per run
        if step is None:
            self.steps.update(scalars.keys())

    def record(self, record: dict[str, Any]) -> None:
        """A run record's score and gain, under its round (if any) and condition."""
        head = "/".join(x for x in (f"round{record['round']}" if "round" in record else "",
                                    str(record.get("condition") or "")) if x)
        self.log({f"{head}/{k}": float(record[k]) for k in ("score", "gain")
                  if isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)})

    def metrics(self, name: str, data: Any) -> None:
        """The numbers of a metrics file, at step 0 (a finished table or round)."""
        stem = name.removesuffix(".json").removesuffix("metrics").strip("/")
        self.log({f"{stem}/{k}" if stem else k: v for k, v in _numbers(data).items()}, step=0)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.trackio is not None:
            self.trackio.finish()
