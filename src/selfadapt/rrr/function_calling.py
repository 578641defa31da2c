"""Function calling on BFCL data: parse the model's call, check it against the accepted values.

A call is accepted as JSON (``{"name": ..., "arguments": {...}}``, or a one-element
list of it) or as Python call syntax (``math.hypot(x=4, y=5)``). Python syntax is read
with ``ast``: the callee must be a (dotted) name, arguments must be keywords, and each
value goes through ``ast.literal_eval``, so nothing the model writes is ever run.
Correct means: a ground-truth function name, every required parameter present, no
unknown parameter, and every value among the accepted ones (``""`` in the accepted
list marks an optional parameter).
"""

from __future__ import annotations

import ast
import json
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import Verdict, read_jsonl

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


def _norm(value: Any) -> Any:
    """BFCL-style leniency: case, surrounding spaces and punctuation in strings; 5 == 5.0."""
    if isinstance(value, str):
        return value.strip().lower().translate(str.maketrans("", "", string.punctuation + " "))
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in value.items()}
    return value


def check_call(call: FunctionCall, task: CallTask) -> Verdict:
    schemas = {f["name"]: f for f in task.functions}
    for truth in task.ground_truth:
        if call.name not in truth:
            continue
        accepted = truth[call.name]
        params = schemas.get(call.name, {}).get("parameters", {})
        unknown = sorted(set(call.arguments) - set(params.get("properties", accepted)))
        if unknown:
            return Verdict(False, f"unknown argument(s) {unknown} for {call.name}")
        for req in params.get("required", []):
            if req not in call.arguments:
                return Verdict(False, f"missing required argument {req!r}")
        for arg, allowed in accepted.items():
            if arg not in call.arguments:
                if "" not in allowed:
                    return Verdict(False, f"missing argument {arg!r}")
                continue
            if _norm(call.arguments[arg]) not in [_norm(a) for a in allowed if a != ""]:
                return Verdict(False, f"{arg}={call.arguments[arg]!r:.60} is not among the accepted values")
        return Verdict(True, "correct")
    names = sorted(n for t in task.ground_truth for n in t)
    return Verdict(False, f"called {call.name!r}, expected {' or '.join(names)}")


def verify(task: CallTask, response: str) -> Verdict:
    try:
        call = parse_call(response)
    except CallParseError as e:
        return Verdict(False, str(e))
    return check_call(call, task)


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
