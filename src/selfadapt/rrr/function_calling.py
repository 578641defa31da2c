"""Function calling on BFCL data: parse the model's call, check it against the accepted values.

A call is accepted as JSON (``{"name": ..., "arguments": {...}}``, or a one-element
list of it) or as Python call syntax (``math.hypot(x=4, y=5)``). Python syntax is read
with ``ast``: the callee must be a (dotted) name, arguments must be keywords, and each
value goes through ``ast.literal_eval``, so nothing the model writes is ever run.
Correctness follows the rules of BFCL's ``ast_checker`` for Python (reimplemented, not
copied; ``tests/test_verifiers.py`` holds the cases derived from them):
- the function is the ground truth's; every required parameter is present; every given
  parameter is both declared and in the ground truth; a ground-truth parameter may be
  left out only when its accepted values contain ``""``;
- types are the declared ones exactly (``7890.0`` is not an integer, ``1`` is not a
  boolean), except that an int is accepted as a float, a tuple as a list for ``tuple``,
  and a value of the accepted values' own type (BFCL's "variable" case);
- strings are compared after removing spaces and ``, . / - _ * ^`` and lower-casing
  (``3x - 2`` still differs from ``3x + 2``); lists compare their string items the same
  way; a dict must use accepted keys only, give each key an accepted value (each key maps
  to a list of them) and omit only optional keys; a list of dicts is checked dict by dict.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..runs import read_jsonl
from . import Verdict

MAX_CALL_CHARS = 4000
SETS = {"simple_python": "BFCL_v4_simple_python", "multiple": "BFCL_v4_multiple"}


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class CallTask:
    id: str
    messages: tuple[dict[str, str], ...]
    functions: tuple[dict[str, Any], ...]
    ground_truth: tuple[dict[str, dict[str, list]], ...]


class CallParseError(ValueError):
    pass


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise CallParseError("the callee must be a plain or dotted name")


def _from_python(text: str) -> FunctionCall:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise CallParseError(f"neither JSON nor a Python call ({type(e).__name__})") from None
    call = tree.body
    if isinstance(call, (ast.List, ast.Tuple)) and len(call.elts) == 1:
        call = call.elts[0]
    if not isinstance(call, ast.Call):
        raise CallParseError("not a function call")
    if call.args:
        raise CallParseError("positional arguments are not accepted; name every argument")
    args = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise CallParseError("**kwargs is not accepted")
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise CallParseError(f"argument {kw.arg!r} is not a literal value") from None
    return FunctionCall(_dotted(call.func), args)


def _from_json(obj: Any) -> FunctionCall:
    if isinstance(obj, list) and len(obj) == 1:
        obj = obj[0]
    if not isinstance(obj, dict):
        raise CallParseError("JSON call must be an object with 'name' and 'arguments'")
    if len(obj) == 1 and isinstance(next(iter(obj.values())), dict) and "name" not in obj:
        (name, args), = obj.items()  # {"fn": {"arg": value}}, BFCL's ground-truth shape
    else:
        name, args = obj.get("name"), obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            raise CallParseError("'arguments' is a string that is not JSON") from None
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        raise CallParseError("JSON call needs a string 'name' and an object 'arguments'")
    return FunctionCall(name, args)


def parse_call(response: str) -> FunctionCall:
    """The single call in a response (code fences and surrounding whitespace allowed)."""
    text = response.strip()
    fence = re.search(r"```(?:json|python)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    if not text:
        raise CallParseError("empty response")
    if len(text) > MAX_CALL_CHARS:
        raise CallParseError(f"call longer than {MAX_CALL_CHARS} characters")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return _from_python(text)
    return _from_json(obj)


PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool,
                                 "array": list, "tuple": list, "dict": dict, "any": str}
_STANDARDIZE = re.compile(r"[ ,./\-_*^]")


def standardize(text: str) -> str:
    """BFCL's string leniency: "April 1, 2024" equals "april 1 2024", and nothing else is dropped."""
    return _STANDARDIZE.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize(value) if isinstance(value, str) else value


def _accepted_type(accepted: list) -> type | None:
    """The type of the accepted values (``""`` only marks an optional parameter)."""
    return next((type(a) for a in accepted if a != ""), None)


def _type_ok(value: Any, accepted: list, expected: type, inner: type | None) -> tuple[bool, bool]:
    """(valid, is_variable): the declared type, or the accepted values' own type (a "variable")."""
    own = _accepted_type(accepted)
    if type(value) is expected:
        if inner is None:
            return True, own is not None and own is not expected
        for option in accepted:  # one accepted list whose items' type every item matches
            if not isinstance(option, list) or all(_type_ok(v, option, inner, None)[0] for v in value):
                return True, own is not None and own is not expected
        return False, False
    return (True, True) if own is not None and type(value) is own else (False, False)


def _dict_ok(value: dict, options: list) -> bool:
    for option in options:
        if option == "":
            continue
        if all(k in option and _std(v) in [_std(a) for a in option[k]] for k, v in value.items()) and all(
                k in value or "" in accepted for k, accepted in option.items()):
            return True
    return False


def _value_ok(value: Any, accepted: list, expected: type, inner: type | None) -> bool:
    if expected is dict:
        return _dict_ok(value, accepted)
    if expected is list and inner is dict:
        return any(isinstance(option, list) and len(option) == len(value)
                   and all(_dict_ok(v, [o]) for v, o in zip(value, option)) for option in accepted)
    if expected is str:
        return standardize(value) in [standardize(a) for a in accepted if isinstance(a, str)]
    if expected is list:
        return [_std(v) for v in value] in [[_std(a) for a in option] for option in accepted
                                            if isinstance(option, list)]
    return value in accepted


def _check_argument(arg: str, value: Any, accepted: list, schema: dict) -> str | None:
    """Why the value is wrong, or None."""
    declared = schema.get("type", "any")
    expected = PYTHON_TYPES.get(declared, str)
    inner = (PYTHON_TYPES.get(schema.get("items", {}).get("type", "any"), str)
             if declared in ("array", "tuple") else None)
    if declared == "tuple" and isinstance(value, tuple):
        value = list(value)
    if declared == "float" and type(value) is int:
        value = float(value)
    valid, variable = _type_ok(value, accepted, expected, inner)
    if not valid:
        return f"{arg}={value!r:.60} is not of type {declared}"
    if not (value in accepted if variable else _value_ok(value, accepted, expected, inner)):
        return f"{arg}={value!r:.60} is not among the accepted values"
    return None


def check_call(call: FunctionCall, task: CallTask) -> Verdict:
    schemas = {f["name"]: f for f in task.functions}
    for truth in task.ground_truth:
        if call.name not in truth:
            continue
        accepted = truth[call.name]
        params = schemas.get(call.name, {}).get("parameters", {})
        properties = params.get("properties", {})
        for req in params.get("required", []):
            if req not in call.arguments:
                return Verdict(False, f"missing required argument {req!r}")
        unknown = sorted(a for a in call.arguments if a not in properties or a not in accepted)
        if unknown:
            return Verdict(False, f"unexpected argument(s) {unknown} for {call.name}")
        for arg, value in call.arguments.items():
            why = _check_argument(arg, value, accepted[arg], properties[arg])
            if why:
                return Verdict(False, why)
        for arg, allowed in accepted.items():
            if arg not in call.arguments and "" not in allowed:
                return Verdict(False, f"missing argument {arg!r}")
        return Verdict(True, "correct")
    names = sorted(n for t in task.ground_truth for n in t)
    return Verdict(False, f"called {call.name!r}, expected {' or '.join(names)}")


def _first_accepted(accepted: list) -> Any:
    """The first accepted value as a correct call writes it (optional dict keys left out)."""
    value = next(a for a in accepted if a != "")
    strip = lambda d: {k: _first_accepted(v) for k, v in d.items() if any(a != "" for a in v)}  # noqa: E731
    if isinstance(value, dict):
        return strip(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [strip(d) for d in value]
    return value


def gold_call(task: CallTask) -> FunctionCall:
    """A correct call: the ground truth's function with the first accepted value of each parameter
    that is not optional-only."""
    ((name, params),) = task.ground_truth[0].items()
    return FunctionCall(name, {k: _first_accepted(v) for k, v in params.items() if any(a != "" for a in v)})


def verify(task: CallTask, response: str) -> Verdict:
    try:
        call = parse_call(response)
    except CallParseError as e:
        return Verdict(False, str(e))
    return check_call(call, task)


# BFCL's declared types in JSON Schema ("float" accepts an integer, as BFCL does; "any": no constraint).
_SCHEMA_TYPES = {"string": "string", "integer": "integer", "float": "number", "boolean": "boolean",
                 "array": "array", "tuple": "array", "dict": "object"}


def _schema(declared: dict) -> dict:
    out: dict[str, Any] = {}
    kind = _SCHEMA_TYPES.get(declared.get("type", "any"))
    if kind:
        out["type"] = kind
    if kind == "object" and "properties" in declared:
        out["properties"] = {k: _schema(v) for k, v in declared["properties"].items()}
        out["required"] = [k for k in declared.get("required", []) if k in declared["properties"]]
        out["additionalProperties"] = False
    if kind == "array" and isinstance(declared.get("items"), dict):
        out["items"] = _schema(declared["items"])
    if isinstance(declared.get("enum"), list):
        out["enum"] = declared["enum"]
    return out


def call_schema(functions: list[dict]) -> dict:
    """The JSON Schema of one call ``{"name": ..., "arguments": {...}}`` to one of ``functions``:
    the name is one offered, the arguments those it declares, with every required one and the
    declared types. What the values mean is still the model's to get right."""
    return {"anyOf": [{"type": "object", "properties": {"name": {"const": f["name"]},
                                                        "arguments": _schema(f.get("parameters") or {})},
                       "required": ["name", "arguments"], "additionalProperties": False} for f in functions]}


def _jsonl(path: Path) -> list[dict]:
    out = []
    for n, rec in read_jsonl(path):
        if "id" not in rec:
            raise ValueError(f"{path}: line {n}: expected an object with an 'id'")
        out.append(rec)
    return out


def load_tasks(name: str = "simple_python", directory: Path | None = None) -> list[CallTask]:
    """BFCL tasks with their answers (shipped sets by name, or the same files in ``directory``)."""
    if name not in SETS:
        raise ValueError(f"unknown BFCL set {name!r}; choose from {', '.join(SETS)}")
    base = Path(directory) if directory else Path(str(resources.files("selfadapt").joinpath("data/bfcl")))
    questions = _jsonl(base / f"{SETS[name]}.json")
    answers = {a["id"]: a for a in _jsonl(base / f"{SETS[name]}.answer.json")}
    tasks = []
    for q in questions:
        if q["id"] not in answers:
            raise ValueError(f"{base / SETS[name]}.answer.json: no answer for {q['id']!r}")
        try:
            tasks.append(CallTask(q["id"], tuple(q["question"][0]), tuple(q["function"]),
                                  tuple(answers[q["id"]]["ground_truth"])))
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"{base / SETS[name]}.json: record {q['id']!r} is malformed ({e!r})") from None
    return tasks
