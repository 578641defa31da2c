"""Your own code as a task or a reward: ``pkg.module:NAME``, ``path/to/file.py:NAME``, or an
installed plug-in under the entry-point groups ``selfadapt.tasks`` and ``selfadapt.rewards``.

This is how TRL's ``reward_funcs`` and verl's ``custom_reward_function`` take user code: the
user's module is imported (it is the user's code, never model output or data).
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

TASKS_GROUP = "selfadapt.tasks"
REWARDS_GROUP = "selfadapt.rewards"


def is_reference(spec: str) -> bool:
    """``module.path:NAME`` or ``file.py:NAME`` (a built-in spec such as ``countdown:numbers=2``
    has no dot or slash before its colon)."""
    where, colon, name = spec.partition(":")
    return bool(colon and name and "=" not in name and ("." in where or "/" in where))


def load_object(ref: str) -> Any:
    """The object ``NAME`` of ``pkg.module:NAME`` or ``path/to/file.py:NAME``."""
    where, _, name = ref.partition(":")
    if where.endswith(".py") or "/" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ValueError(f"{ref}: no such file {path}")
        spec = importlib.util.spec_from_file_location(f"selfadapt_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ValueError(f"{ref}: cannot import {where} ({e})") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{ref}: {where} has no {name!r}") from None


def entry_point(group: str, name: str) -> Any | None:
    """The object an installed package registered as ``name`` in ``group``, or None."""
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    return found[0].load() if found else None


def installed(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))
