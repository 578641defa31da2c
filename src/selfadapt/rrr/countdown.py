"""Countdown: combine every given number exactly once with + − × ÷ to hit the target.

The verifier parses the answer with ``ast`` and walks a whitelist of nodes (integer
literals and the four binary operators); arithmetic is exact (``Fraction``), so 7/2*2
is 7 and no float rounding can make a wrong answer right. Nothing is ever evaluated by
Python itself. The generator only emits instances a brute-force solver has solved.
"""

from __future__ import annotations

import ast
import itertools
import operator
import random
import re
from dataclasses import dataclass
from fractions import Fraction

from . import Verdict

MAX_ANSWER_CHARS = 200  # an honest answer for 3–4 numbers is far shorter
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Countdown:
    numbers: tuple[int, ...]
    target: int

    def prompt(self) -> str:
        nums = ", ".join(map(str, self.numbers))
        return (f"Using the numbers [{nums}], write an arithmetic expression that equals {self.target}. "
                "Use each number exactly once and only + - * / and parentheses. "
                "Put the expression alone inside <answer></answer>, for example <answer>(1 + 2) * 3</answer>.")


def extract_answer(response: str) -> str | None:
    """The expression in the last ``<answer>`` tag, without a trailing ``= target``."""
    tags = _ANSWER_TAG.findall(response)
    if not tags:
        return None
    return tags[-1].split("=")[0].strip()


class _Invalid(ValueError):
    pass


def _value(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _value(node.left, used), _value(node.right, used)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise _Invalid("division by zero")
        return left / right
    raise _Invalid(f"{type(node).__name__} is not allowed (only integers, + - * / and parentheses)")


def evaluate(expression: str) -> tuple[Fraction, list[int]]:
    """Exact value of an expression and the integers it uses; ValueError if it is not one."""
    if len(expression) > MAX_ANSWER_CHARS:
        raise ValueError(f"answer longer than {MAX_ANSWER_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ValueError(f"not an arithmetic expression ({type(e).__name__})") from None
    used: list[int] = []
    try:
        return _value(tree.body, used), used
    except RecursionError:
        raise ValueError("expression nested too deeply") from None
    except _Invalid as e:
        raise ValueError(str(e)) from None


def verify(problem: Countdown, response: str) -> Verdict:
    """Correct iff the tagged answer uses exactly the given numbers and equals the target."""
    expression = extract_answer(response)
    if expression is None:
        return Verdict(False, "no <answer>...</answer>")
    try:
        value, used = evaluate(expression)
    except ValueError as e:
        return Verdict(False, str(e))
    if sorted(used) != sorted(problem.numbers):
        return Verdict(False, f"uses {sorted(used)}, must use each of {sorted(problem.numbers)} exactly once")
    if value != problem.target:
        return Verdict(False, f"equals {value}, not {problem.target}")
    return Verdict(True, "correct")


def answer_grammar(numbers: tuple[int, ...]) -> str:
    """Lark grammar of ``<answer>EXPR</answer>`` where EXPR uses every number exactly once,
    joined by + - * / with single spaces, every inner operation in parentheses (the outer
    one optionally, as ``solve`` writes it). "Exactly once" is not context-free in general,
    but for a handful of numbers one rule per subset of them is: ``e{mask}`` derives the
    expressions over the numbers whose bits are set, by every ordered split into two parts.
    The model then only chooses among expressions it could be asked for; whether one hits
    the target is still up to it."""
    full = (1 << len(numbers)) - 1

    def operand(mask: int) -> str:
        return f"e{mask}" if mask & (mask - 1) == 0 else f'"(" e{mask} ")"'

    rules = [f'start: "<answer>" (e{full} | "(" e{full} ")") "</answer>"', 'op: " + " | " - " | " * " | " / "']
    for mask in range(1, full + 1):
        if mask & (mask - 1) == 0:
            rules.append(f'e{mask}: "{numbers[mask.bit_length() - 1]}"')
            continue
        splits, part = [], (mask - 1) & mask
        while part:
            splits.append(f"{operand(part)} op {operand(mask ^ part)}")
            part = (part - 1) & mask
        rules.append(f"e{mask}: " + " | ".join(splits))
    return "\n".join(rules) + "\n"


def expressions(numbers: tuple[int, ...]) -> dict[str, Fraction | None]:
    """Every expression of ``answer_grammar`` (without the tags) with its exact value, None
    where it divides by zero: 8 for two numbers, 384 for three, 15,360 for four."""
    def over(mask: int) -> list[tuple[str, Fraction | None]]:
        if mask & (mask - 1) == 0:
            n = numbers[mask.bit_length() - 1]
            return [(str(n), Fraction(n))]
        out, part = [], (mask - 1) & mask
        while part:
            for ta, va in over(part):
                for tb, vb in over(mask ^ part):
                    ta_, tb_ = (t if m & (m - 1) == 0 else f"({t})" for t, m in ((ta, part), (tb, mask ^ part)))
                    for op, apply in _APPLY.items():
                        value = None if va is None or vb is None or (op == "/" and vb == 0) else apply(va, vb)
                        out.append((f"{ta_} {op} {tb_}", value))
            part = (part - 1) & mask
        return out

    top = over((1 << len(numbers)) - 1)
    return dict(top + [(f"({t})", v) for t, v in top])


def retry_grammar(numbers: tuple[int, ...], failed: str | None) -> str:
    """``answer_grammar`` without what the failed attempt already ruled out: every expression
    with the failed expression's value (the model was told that value is wrong), and any that
    divides by zero. A retry under it must try another value; the reflection can steer which."""
    try:
        ruled_out = evaluate(failed)[0] if failed is not None else None
    except ValueError:
        ruled_out = None
    allowed = [t for t, v in expressions(numbers).items() if v is not None and v != ruled_out]
    return 'start: "<answer>" (' + " | ".join(f'"{t}"' for t in allowed) + ') "</answer>"\n'


def solve(numbers: tuple[int, ...], target: int) -> str | None:
    """An expression reaching ``target`` with every number once, or None (exhaustive search)."""
    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, ea), (b, eb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            candidates = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
            if b != 0:
                candidates.append((a / b, f"({ea} / {eb})"))
            for value, expr in candidates:
                found = search(rest + [(value, expr)])
                if found:
                    return found
        return None

    return search([(Fraction(n), str(n)) for n in numbers])


def reachable_targets(numbers: tuple[int, ...]) -> set[int]:
    """Every positive integer that some expression over all the numbers reaches."""
    def values(items: tuple[Fraction, ...]) -> set[Fraction]:
        if len(items) == 1:
            return {items[0]}
        out: set[Fraction] = set()
        for i, j in itertools.permutations(range(len(items)), 2):
            a, b = items[i], items[j]
            rest = tuple(items[k] for k in range(len(items)) if k not in (i, j))
            for v in [a + b, a - b, a * b] + ([a / b] if b else []):
                out |= values(rest + (v,))
        return out

    return {int(v) for v in values(tuple(Fraction(n) for n in numbers)) if v.denominator == 1 and v > 0}


def generate(n: int, *, seed: int, sizes: tuple[int, ...] = (3, 4), max_number: int = 25,
             max_target: int = 100) -> list[Countdown]:
    """``n`` distinct solvable instances, deterministic in ``seed``; each checked by ``solve``."""
    rng = random.Random(seed)
    seen: set[Countdown] = set()
    out: list[Countdown] = []
    while len(out) < n:
        numbers = tuple(rng.randint(1, max_number) for _ in range(rng.choice(sizes)))
        targets = sorted(t for t in reachable_targets(numbers) if 10 <= t <= max_target and t not in numbers)
        if not targets:
            continue
        problem = Countdown(numbers, rng.choice(targets))
        if problem in seen or solve(problem.numbers, problem.target) is None:
            continue
        seen.add(problem)
        out.append(problem)
    return out


def train_test_split(problems: list[Countdown], test_fraction: float, *, seed: int
                     ) -> tuple[list[Countdown], list[Countdown]]:
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    shuffled = problems[:]
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * (1 - test_fraction))
    return shuffled[:cut], shuffled[cut:]
