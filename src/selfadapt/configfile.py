"""A command's settings: declared once, as config dataclass fields, and set by flags or a file.

Each runner's config is a dataclass whose fields carry their default and help (as TRL's
``SFTConfig`` does with ``field(metadata={"help": ...})``); ``opt`` makes a command's option
from such a field, so the option, the ``--config`` key and the Python API share one default.

``--config FILE.yaml``: a command's settings from a file, its flags on top.

A file holds either a command's option names (``lr: 0.0003``, ``format: self-qa``) or the
shape a run saves as ``config.yaml`` (the config dataclass: ``lora: {lr: 0.0003}``), so a
run's own ``config.yaml`` re-runs it. The rules are TRL's ``TrlParser``'s: the file replaces
the defaults, a flag given on the command line replaces the file. Settings are handed to
click as the command's ``default_map``; the few dataclass fields without a flag (e.g.
``lora.max_length``) are set on the built config (``apply``). A key that is neither, or a value
its option or field cannot take, is an error (a ``ValueError``) naming the key and the file.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

import typer
import yaml
from rich.markup import escape

from .runs import CONTENT_HASH

# Nested sections of a saved config, and the prefix their keys have as options.
SECTIONS = {"lora": "", "arc": "", "grpo": "", "domain": "", "sft": "sft_"}
# Recorded in a run's config for the reader (or a resume's check), set by the command itself.
DERIVED = {"domain.name", "domain.subset", "domain.groups", CONTENT_HASH, f"domain.{CONTENT_HASH}"}
PENDING = "selfadapt.config"  # ``ctx.meta`` key: what ``--config`` left for ``apply``


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` (dotted for a nested config: ``lora.epochs``) of dataclass ``cls``."""
    head, _, rest = name.partition(".")
    f = {f.name: f for f in fields(cls)}[head]
    value = f.default_factory() if f.default_factory is not MISSING else f.default
    for part in rest.split(".") if rest else ():
        value = getattr(value, part)
    return value


def help_of(cls: type, name: str) -> str | None:
    """The help of field ``name`` (dotted: that of the nested config's field)."""
    head, _, rest = name.partition(".")
    f = {f.name: f for f in fields(cls)}[head]
    if rest:
        nested = get_type_hints(cls)[head]
        return help_of(nested, rest) if is_dataclass(nested) else None
    return f.metadata.get("help")


def opt(cls: type, name: str, *flags: str, shown: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
    """A typer option for field ``name`` of config ``cls``: its default (``shown`` turns it into
    what the option takes, e.g. a list into ``"a,b"``) and its help come from the field, where they
    are declared once; ``help=`` adds what differs for this command. The field's name is kept on
    the option, so a saved config's key finds its option (``load``)."""
    default = default_of(cls, name)
    text = kwargs.pop("help", None) or help_of(cls, name)
    info = typer.Option(shown(default) if shown else default, *flags,  # help is rich markup: "selfadapt[vllm]" kept
                        help=escape(text) if text else text, **kwargs)
    info.field = name  # dotted where the field is nested: "sft.lr" is not the inner loop's "lr"
    return info


def renames(command: Any) -> dict[str, str]:
    """A saved field's key (dotted where nested: ``sft.lr``) → the command's option that sets it,
    where the two differ."""
    fn = inspect.unwrap(command.callback) if command.callback else None
    params = inspect.signature(fn).parameters if fn else {}
    names = set(params)
    return {key: name for name, p in params.items()
            if (key := getattr(p.default, "field", None)) and key != name and key not in names}


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
    ctx.meta[PENDING] = (None, {}, "")
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
    params = set(by_name) - {"config", "resume", "set_"}
    flags = {o.lstrip("-").replace("-", "_"): p.name for p in ctx.command.params if p.name in params
             for o in getattr(p, "opts", []) if o.startswith("--")}
    renamed = renames(ctx.command)
    defaults: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for dotted, value in _leaves(data):
        if dotted in DERIVED:
            continue
        section, _, key = dotted.rpartition(".")
        key = SECTIONS.get(section, "") + key.replace("-", "_")
        if dotted in renamed:  # the option made from exactly this field
            name = renamed[dotted]
        else:
            name = flags.get(key) if not section and key in flags else renamed.get(key, key)
        if name in params:
            value = _option_value(name, value)
            several = getattr(by_name[name], "multiple", False) or by_name[name].nargs == -1
            defaults[name] = [value] if several and not isinstance(value, list) else value
            if value is not None:  # checked here, where the file and the key are known
                try:
                    by_name[name].process_value(ctx, defaults[name])
                except typer.BadParameter as e:
                    raise ValueError(f"{path}: key {dotted!r}: {e.format_message()}") from None
        else:
            extra[dotted] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[PENDING] = (Path(path), extra, command)


SET = typer.Option([], "--set", metavar="KEY=VALUE", help="Any setting of this command's config, dotted for a "
                   "nested one (--set lora.max_length=1024); the value is read as YAML. Wins over flags and --config.")


def apply(ctx: typer.Context, cfg: Any = None) -> Any:
    """Set the file's keys that no flag sets, then each ``--set KEY=VALUE``, on the built config
    ``cfg`` (a dataclass), and check it again as its constructor would; any other key is an error
    naming it and where it came from."""
    path, extra, command = ctx.meta.get(PENDING, (None, {}, ""))
    command = command or ctx.command_path.split(" ", 1)[-1]
    given = [(path, dotted, value) for dotted, value in extra.items()]
    for item in ctx.params.get("set_") or []:
        key, eq, text = item.partition("=")
        if not (eq and key.strip()):
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lora.max_length=1024")
        try:
            given.append(("--set", key.strip(), yaml.safe_load(text)))
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: not a YAML value ({' '.join(str(e).split())})") from None
    for where, dotted, value in given:
        obj = cfg
        *heads, leaf = dotted.split(".")
        for head in heads:
            obj = getattr(obj, head, None) if is_dataclass(obj) and head in _names(obj) else None
        if not (is_dataclass(obj) and leaf in _names(obj)):
            raise ValueError(f"{where}: unknown key {dotted!r} for `selfadapt {command}` (see "
                             "--help for its options)")
        setattr(obj, leaf, _typed(where, dotted, getattr(obj, leaf), value, _declared(obj, leaf)))
    return _checked(cfg) if given else cfg


def _checked(cfg: Any) -> Any:
    """``cfg`` built again from its fields, nested configs first, so that a value set after
    construction passes the same checks (``__post_init__``) as one given to the constructor."""
    if not is_dataclass(cfg):
        return cfg
    return replace(cfg, **{f.name: _checked(getattr(cfg, f.name)) for f in fields(cfg)
                           if f.init and is_dataclass(getattr(cfg, f.name))})


def _declared(obj: Any, name: str) -> tuple[type, ...]:
    """The plain types a dataclass field is declared with (``int | None`` → int, NoneType)."""
    try:
        hint = get_type_hints(type(obj))[name]
    except Exception:  # a hint this Python cannot evaluate: leave the value unchecked
        return ()
    kinds = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    return tuple(k for k in (get_origin(k) or k for k in kinds) if isinstance(k, type))


def _typed(path: Path | str, dotted: str, current: Any, value: Any, declared: tuple[type, ...] = ()) -> Any:
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
