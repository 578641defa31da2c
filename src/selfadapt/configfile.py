"""``--config FILE.yaml``: a command's settings from a file, its flags on top.

A file holds either a command's option names (``lr: 0.0003``, ``format: self-qa``) or the
shape a run saves as ``config.yaml`` (the config dataclass: ``lora: {lr: 0.0003}``), so a
run's own ``config.yaml`` re-runs it. The rules are TRL's ``TrlParser``'s: the file replaces
the defaults, a flag given on the command line replaces the file. Settings are handed to
click as the command's ``default_map``; the few dataclass fields without a flag (e.g.
``lora.max_length``) are set on the built config (``apply``). A key that is neither, or a value
its option or field cannot take, is an error (a ``ValueError``) naming the key and the file.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import typer
import yaml

from .runs import CONTENT_HASH

# Nested sections of a saved config, and the prefix their keys have as options.
SECTIONS = {"lora": "", "arc": "", "grpo": "", "domain": "", "sft": "sft_"}
# A saved field → the option that sets it, where the names differ.
RENAMES = {
    "formats": "fmt", "format": "fmt", "decodings": "decoding", "controls": "control", "policies": "policy",
    "conditions": "condition", "selfedits_per_passage": "k", "selfedits_per_chunk": "k", "selfedits": "k",
    "target_modules": "targets", "judge_api_key_env": "judge_key_env", "num_generations": "generations",
    "max_steps": "steps", "learning_rate": "lr", "tasks": "task", "rewards": "reward",
}
PER_COMMAND = {"train knowledge": {"items_per_round": "passages"}, "train arc": {"items_per_round": "tasks_per_round"}}
# Recorded in a run's config for the reader (or a resume's check), set by the command itself.
DERIVED = {"domain.name", "domain.subset", "domain.groups", CONTENT_HASH, f"domain.{CONTENT_HASH}"}
# What the last ``--config`` left for ``apply``: (file, keys without a flag, command). The
# callback runs on every invocation (with None when the option is absent), so it never leaks.
_pending: tuple[Path | None, dict[str, Any], str] = (None, {}, "")


def _leaves(data: dict[str, Any], path: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value), descending only into the known sections; top-level keys first, so a
    section's value wins over a top-level one of the same option (e.g. ReST-EM's derived
    ``max_new_tokens`` and its domain's ``max_new_tokens``)."""
    top, nested = [], []
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else str(key)
        if not path and key in SECTIONS and isinstance(value, dict):
            nested += _leaves(value, dotted)
        else:
            top.append((dotted, value))
    return top + nested


def _option_value(name: str, value: Any) -> Any:
    """A saved value as its option takes it."""
    if name == "targets" and isinstance(value, list):
        return ",".join(value)
    if name == "columns" and isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if name == "reward" and isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    return value


def load(ctx: typer.Context, path: Path | None) -> None:
    """The eager ``--config`` callback: the file's settings become the command's defaults."""
    global _pending
    _pending = (None, {}, "")
    if path is None:
        return
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--config {path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of settings")
    command = ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
    by_name = {p.name: p for p in ctx.command.params}
    params = set(by_name) - {"config", "resume"}
    flags = {o.lstrip("-").replace("-", "_"): p.name for p in ctx.command.params if p.name in params
             for o in getattr(p, "opts", []) if o.startswith("--")}
    renames = {**RENAMES, **PER_COMMAND.get(command, {})}
    defaults: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for dotted, value in _leaves(data):
        if dotted in DERIVED:
            continue
        section, _, key = dotted.rpartition(".")
        key = SECTIONS.get(section, "") + key.replace("-", "_")
        name = flags.get(key) if not section and key in flags else renames.get(key, key)
        if name in params:
            value = _option_value(name, value)
            several = getattr(by_name[name], "multiple", False) or by_name[name].nargs == -1
            defaults[name] = [value] if several and not isinstance(value, list) else value
            if value is not None:  # checked here, where the file and the key are known
                try:
                    by_name[name].process_value(ctx, defaults[name])
                except typer.BadParameter as e:
                    raise ValueError(f"{path}: key {dotted!r}: {e.format_message()}") from None
        elif dotted == "report_to" and not section:
            _report_to(ctx, value)
        else:
            extra[dotted] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    _pending = (Path(path), extra, command)


def _report_to(ctx: typer.Context, value: Any) -> None:
    """The root option ``--report-to``, from the file unless it was given on the command line."""
    from . import tracking

    root = ctx.find_root()
    if getattr(root.get_parameter_source("report_to"), "name", "") != "COMMANDLINE":
        tracking.configure([value] if isinstance(value, str) else list(value))


def apply(cfg: Any = None) -> Any:
    """Set the file's keys that no flag sets on the built config ``cfg`` (a dataclass); any
    other key is an error naming it and the file."""
    path, extra, command = _pending
    for dotted, value in extra.items():
        obj = cfg
        *heads, leaf = dotted.split(".")
        for head in heads:
            obj = getattr(obj, head, None) if is_dataclass(obj) and head in _names(obj) else None
        if not (is_dataclass(obj) and leaf in _names(obj)):
            raise ValueError(f"{path}: unknown key {dotted!r} for `selfadapt {command}` (see --help for its options)")
        setattr(obj, leaf, _typed(path, dotted, getattr(obj, leaf), value, _declared(obj, leaf)))
    return cfg


def _declared(obj: Any, name: str) -> tuple[type, ...]:
    """The plain types a dataclass field is declared with (``int | None`` → int, NoneType)."""
    try:
        hint = get_type_hints(type(obj))[name]
    except Exception:  # a hint this Python cannot evaluate: leave the value unchecked
        return ()
    kinds = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    return tuple(k for k in (get_origin(k) or k for k in kinds) if isinstance(k, type))


def _typed(path: Path, dotted: str, current: Any, value: Any, declared: tuple[type, ...] = ()) -> Any:
    """``value`` for a field whose value is ``current`` and whose declared types are ``declared``
    (YAML reads 1e-3 as a string); a value of another type is an error naming the file and the
    key, not a crash minutes later."""
    if isinstance(current, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif current is None and declared:  # an optional field: its declaration says what it takes
        if value is None or (isinstance(value, declared) and not (isinstance(value, bool) and bool not in declared)):
            return value
        names = " or ".join("None" if k is type(None) else k.__name__ for k in declared)
        raise ValueError(f"{path}: key {dotted!r}: expected {names}, got {value!r}")
    elif current is None or value is None or type(value) is type(current):
        return value
    raise ValueError(f"{path}: key {dotted!r}: expected {type(current).__name__} (like {current!r}), got {value!r}")


def _names(obj: Any) -> set[str]:
    return {f.name for f in fields(obj)}
