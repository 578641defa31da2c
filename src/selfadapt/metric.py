"""Your own metric for knowledge and ARC: each question's (test output's) score, by import path.

``--metric my_metrics.py:f`` (or ``pkg.module:f``) names a function written as TRL writes reward
functions, ``f(prompts, completions, **kwargs) -> list[float]``. Each evaluation calls it once per
item with the prompts the model answered, its answers as ``completions`` and the item's columns
as keyword arguments (knowledge: ``answers``, every gold answer of each question, ``question``,
``title``; ARC: ``expected``, the expected output grid as text, ``attempts``, the two voted
grids, ``task``). Its values replace exact match (knowledge) or the ARC checker as the per-question
score (``METRIC`` in the records), so the item's score is their mean and ReST-EM's reward is the
adapted model's score minus the baseline's, by this metric. Without it nothing changes.

Code is imported only from a spec given on the command line, in the user's ``--config`` file or
to the Python API: never one read from a dataset or another run's files. A domain holds the spec,
a string (a file's path made absolute), so it travels to subprocesses and Ray workers as it is and
each process imports it once (``load_metric``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from .plugins import is_reference, load_object
from .rewards import call_as_trl, checked_values, is_trl_function

METRIC = "metric"  # a question's (test output's) value by the custom metric, in a run's records
SHAPE = "a function f(prompts, completions, **kwargs) -> list[float], as TRL writes reward functions"


@functools.cache
def load_metric(spec: str) -> Callable[..., Any]:
    """The function ``spec`` names, imported once per process; a bad spec is a ``ValueError`` naming it."""
    if not is_reference(spec):
        raise ValueError(f"metric {spec!r}: expected path/to/file.py:NAME or pkg.module:NAME, {SHAPE}")
    try:
        found = load_object(spec)
    except ValueError:
        raise
    except Exception as e:  # the user's module failed to import: one line naming it
        raise ValueError(f"metric {spec}: importing it failed ({type(e).__name__}: {e})") from None
    if not callable(found) or not is_trl_function(found):
        raise ValueError(f"metric {spec}: {spec.rpartition(':')[2]} is not {SHAPE}")
    return found


def check_metric(spec: str | None) -> None:
    """Fails on a bad spec when a config is built, before any model or data is loaded."""
    if spec is not None:
        load_metric(spec)


def absolute(spec: str | None) -> str | None:
    """The spec with a file's path made absolute, so a worker in another directory finds it."""
    if spec is None:
        return None
    where, _, name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where:
        return f"{Path(where).expanduser().resolve()}:{name}"
    return spec


def label(spec: str | None, default: str) -> str:
    """What a table calls the score: ``default`` (exact_match, success) or the metric's name, never both."""
    return default if spec is None else f"{METRIC} {spec.rpartition(':')[2]}"


def score(spec: str, prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
    """One value per completion, checked: a number for every question (None scores nothing)."""
    values = checked_values(f"metric {spec}", call_as_trl(load_metric(spec), prompts, completions, **columns),
                            len(completions))
    if any(v is None for v in values):
        raise ValueError(f"metric {spec} returned None for a question: a metric scores every answer")
    return values
