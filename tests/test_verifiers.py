from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfadapt.rrr import countdown as cd
from selfadapt.rrr import function_calling as fc

P = cd.Countdown((3, 5, 7), 22)


@pytest.mark.parametrize("answer,correct,reason", [
    ("<answer>3 * 5 + 7</answer>", True, "correct"),
    ("thinking... <answer>(7 + 3) * 5 / 5</answer>", False, "must use each of"),
    ("<answer>3*5+7 = 22</answer>", True, "correct"),              # a trailing '= target' is fine
    ("<answer>5 * 3 + 7</answer> <answer>3+5+7</answer>", False, "equals 15"),  # the last tag counts
    ("3 * 5 + 7", False, "no <answer>"),
    ("<answer>3 * 5 + 8</answer>", False, "must use each of"),
    ("<answer>3 * 5 + 7 + 0</answer>", False, "must use each of"),
    ("<answer>7 / (5 - 5) + 3</answer>", False, "division by zero"),
    ("<answer>-3 + 5 * 5</answer>", False, "UnaryOp is not allowed"),
    ("<answer>3 ** 5 + 7</answer>", False, "BinOp is not allowed"),
    ("<answer>__import__('os')</answer>", False, "not allowed"),
    ("<answer>3.0 * 5 + 7</answer>", False, "Constant is not allowed"),
    ("<answer>True * 5 + 7</answer>", False, "not allowed"),
    ("<answer>3 * 5 + 7)</answer>", False, "not an arithmetic expression"),
    ("<answer>" + "(" * 100 + "3*5+7" + ")" * 100 + "</answer>", False, "longer than"),
    ("<answer>３ * 5 + 7</answer>", False, "not an arithmetic expression"),
])
def test_countdown_truth_table(answer, correct, reason):
    verdict = cd.verify(P, answer)
    assert verdict.correct is correct and reason in verdict.reason


def test_exact_rational_arithmetic():
    assert cd.verify(cd.Countdown((7, 2, 2), 7), "<answer>7 / 2 * 2</answer>").correct
    assert cd.evaluate("1/3 + 1/3 + 1/3") == (Fraction(1), [1, 3, 1, 3, 1, 3])


def test_nesting_and_length():
    assert cd.evaluate("(" * 99 + "1" + ")" * 99) == (Fraction(1), [1])  # deep but within the cap
    with pytest.raises(ValueError, match="longer than"):
        cd.evaluate("(" * 500 + "1" + ")" * 500)
    assert cd.evaluate("9" * 150 + "*" + "9" * 40)[0] == int("9" * 150) * int("9" * 40)  # huge, exact


def test_solver_and_generator():
    assert cd.solve((3, 5, 7), 22) is not None
    assert cd.solve((1, 1), 5) is None
    problems = cd.generate(20, seed=0)
    assert len(set(problems)) == 20 and problems == cd.generate(20, seed=0)
    for p in problems:
        solution = cd.solve(p.numbers, p.target)
        assert cd.verify(p, f"<answer>{solution}</answer>").correct
    train, test = cd.train_test_split(problems, 0.25, seed=0)
    assert len(test) == 5 and not set(train) & set(test)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_countdown_verifier_survives_garbage(text):
    for response in (text, f"<answer>{text}</answer>"):
        verdict = cd.verify(P, response)
        assert isinstance(verdict.correct, bool) and verdict.reason


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.integers(min_value=-10**30, max_value=10**30).map(str),
                    lambda inner: st.tuples(inner, st.sampled_from("+-*/"), inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
                    max_leaves=20))
def test_countdown_verifier_on_random_arithmetic(expr):
    verdict = cd.verify(P, f"<answer>{expr}</answer>")
    assert verdict.correct is False or sorted(cd.evaluate(expr)[1]) == [3, 5, 7]


@pytest.fixture(scope="module")
def tasks():
    return {t.id: t for t in fc.load_tasks("simple_python")}


def test_shipped_bfcl_sets():
    assert len(fc.load_tasks("simple_python")) == 400
    assert len(fc.load_tasks("multiple")) == 200
    with pytest.raises(ValueError, match="unknown BFCL set"):
        fc.load_tasks("parallel")


@pytest.mark.parametrize("response,correct,reason", [
    ('calculate_triangle_area(base=10, height=5)', True, "correct"),
    ('calculate_triangle_area(base=10, height=5, unit="Units")', True, "correct"),
    ('```python\ncalculate_triangle_area(base=10.0, height=5)\n```', True, "correct"),
    ('{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}', True, "correct"),
    ('[{"name": "calculate_triangle_area", "arguments": "{\\"base\\": 10, \\"height\\": 5}"}]', True, "correct"),
    ('{"calculate_triangle_area": {"base": 10, "height": 5}}', True, "correct"),
    ('calculate_triangle_area(base=10)', False, "missing required argument 'height'"),
    ('calculate_triangle_area(base=11, height=5)', False, "not among the accepted values"),
    ('calculate_triangle_area(base=10, height=5, color="red")', False, "unknown argument"),
    ('calculate_triangle_area(10, 5)', False, "positional arguments"),
    ('area(base=10, height=5)', False, "expected calculate_triangle_area"),
    ('calculate_triangle_area(base=__import__("os").system("x"), height=5)', False, "not a literal"),
    ('calculate_triangle_area(**{"base": 10})', False, "**kwargs"),
    ('(lambda: 1)()', False, "callee"),
    ('', False, "empty response"),
    ('The area is 25.', False, "neither JSON nor a Python call"),
    ('{"name": 3, "arguments": {}}', False, "string 'name'"),
])
def test_function_call_truth_table(tasks, response, correct, reason):
    verdict = fc.verify(tasks["simple_python_0"], response)
    assert verdict.correct is correct and reason in verdict.reason


def test_negative_and_optional_values(tasks):
    assert fc.verify(tasks["simple_python_3"], "algebra.quadratic_roots(a=1, b=-3, c=2)").correct
    assert fc.verify(tasks["simple_python_2"], "math.hypot(x=4, y=5)").correct
    assert fc.verify(tasks["simple_python_2"], "math.hypot(x=4, y=5, z=0)").correct


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=500),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                 max_leaves=30).map(lambda v: __import__("json").dumps({"name": "calculate_triangle_area",
                                                                         "arguments": {"base": v}}))))
def test_function_call_verifier_survives_garbage(tasks, response):
    verdict = fc.verify(tasks["simple_python_0"], response)
    assert isinstance(verdict.correct, bool) and verdict.reason


def test_deeply_nested_calls_are_rejected(tasks):
    for text in ["[" * 3000 + "]" * 3000, "f(x=" + "[" * 3000 + "]" * 3000 + ")", "{" * 5000]:
        assert not fc.verify(tasks["simple_python_0"], text).correct


def test_malformed_bfcl_file_names_file_and_line(tmp_path):
    (tmp_path / "BFCL_v4_simple_python.json").write_text('{"id": "a"}\n{oops\n')
    (tmp_path / "BFCL_v4_simple_python.answer.json").write_text("")
    with pytest.raises(ValueError, match="BFCL_v4_simple_python.json: line 2: invalid JSON"):
        fc.load_tasks("simple_python", tmp_path)
