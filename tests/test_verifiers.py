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
                    lambda inner: (st.tuples(inner, st.sampled_from("+-*/"), inner)
                                   .map(lambda t: f"({t[0]}{t[1]}{t[2]})")),
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
    ('```python\ncalculate_triangle_area(base=10, height=5)\n```', True, "correct"),
    ('calculate_triangle_area(base=10.0, height=5)', False, "not of type integer"),  # BFCL: exact declared type
    ('{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}', True, "correct"),
    ('[{"name": "calculate_triangle_area", "arguments": "{\\"base\\": 10, \\"height\\": 5}"}]', True, "correct"),
    ('{"calculate_triangle_area": {"base": 10, "height": 5}}', True, "correct"),
    ('calculate_triangle_area(base=10)', False, "missing required argument 'height'"),
    ('calculate_triangle_area(base=11, height=5)', False, "not among the accepted values"),
    ('calculate_triangle_area(base=10, height=5, color="red")', False, "unexpected argument"),
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


@pytest.fixture(scope="module")
def all_tasks():
    return {t.id: t for name in ("simple_python", "multiple") for t in fc.load_tasks(name)}


def test_every_shipped_gold_call_is_accepted(all_tasks):
    """Including the 5 + 3 tasks with dict or list-of-dict parameters, which the old verifier
    could never accept (BFCL's accepted dict maps each key to a list of accepted values)."""
    rejected = {i: fc.check_call(fc.gold_call(t), t).reason for i, t in all_tasks.items()
                if not fc.check_call(fc.gold_call(t), t).correct}
    assert rejected == {}


# Cases derived from the rules of BFCL's ast_checker (Python), one class per line group.
@pytest.mark.parametrize("task,call,correct", [
    # strings: only spaces and , . / - _ * ^ are dropped, and case
    ("multiple_29", 'functions.intersect(function1="3x - 2", function2="2x + 3")', False),
    ("multiple_29", 'functions.intersect(function1="3X+2", function2="2x + 3")', True),
    ("simple_python_14", 'calculate_derivative(function="3x**2 - 2x - 1")', False),
    ("simple_python_14", 'calculate_derivative(function="3x^2 + 2x - 1")', True),  # ^ and * both dropped: 3x2
    ("simple_python_211", 'send_email(to="john.doe.example.com", subject="Meeting", '
                          'body="Let\'s meet at 10 AM tomorrow")', False),
    ("simple_python_211", 'send_email(to="John.Doe@Example.com", subject="meeting", '
                          'body="Lets meet at 10 AM tomorrow")', False),            # the apostrophe is kept
    # list of dicts: each dict's keys and values, in order
    ("simple_python_96", 'database.query(table="user", conditions=[{"field": "age", "operation": ">", "value": "25"}, '
                         '{"field": "job", "operation": "=", "value": "engineer"}])', True),
    ("simple_python_96", 'database.query(table="user", conditions=[{"field": "age", "operation": "=", "value": "25"}, '
                         '{"field": "job", "operation": "=", "value": "engineer"}])', False),
    ("simple_python_96", 'database.query(table="user", conditions=[{"field": "job", "operation": "=", "value": '
                         '"engineer"}, {"field": "age", "operation": ">", "value": "25"}])', False),
    # dicts: accepted values per key, no unknown key, no missing required key
    ("multiple_8", 'realestate.find_properties(location="San Diego, CA", propertyType="villa", bedrooms=3, '
                   'budget={"min": 300000, "max": 400000})', True),
    ("multiple_8", 'realestate.find_properties(location="SD", propertyType="villa", bedrooms=3, '
                   'budget={"min": 300000})', False),
    ("multiple_8", 'realestate.find_properties(location="SD", propertyType="villa", bedrooms=3, '
                   'budget={"min": 300000, "max": 400000, "currency": "USD"})', False),
    ("simple_python_89", 'db_fetch_records(database_name="StudentDB", table_name="students", '
                         'conditions={"department": "science", "school": "Bluebird HS"})', True),
    # declared types are exact; int is accepted for float; bool is not an int
    ("simple_python_0", 'calculate_triangle_area(base=10.0, height=5)', False),
    ("simple_python_14", 'calculate_derivative(function="3x**2 + 2x - 1", x_value=0)', True),
    ("simple_python_55", None, None),
])
def test_bfcl_rules(all_tasks, task, call, correct):
    if call is None:  # a boolean parameter: 1 is not True
        t = all_tasks[task]
        gold = fc.gold_call(t)
        (flag,) = [k for k, v in gold.arguments.items() if v is True]
        assert fc.check_call(gold, t).correct
        assert not fc.check_call(fc.FunctionCall(gold.name, {**gold.arguments, flag: 1}), t).correct
        assert "not of type boolean" in fc.check_call(fc.FunctionCall(gold.name, {**gold.arguments, flag: 1}), t).reason
        return
    assert fc.verify(all_tasks[task], call).correct is correct


def test_an_integer_given_as_a_whole_float_is_refused(all_tasks):
    t = all_tasks["simple_python_94"]  # user_id: integer, accepted [43523]
    gold = fc.gold_call(t)
    assert fc.check_call(gold, t).correct
    assert not fc.check_call(fc.FunctionCall(gold.name, {**gold.arguments, "user_id": 43523.0}), t).correct


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_string_leniency_is_exactly_bfcls(all_tasks, data):
    """Inserting a character BFCL drops keeps a correct string correct; inserting a character it
    keeps makes it wrong (unless an accepted value happens to contain it)."""
    with_strings = [(t, k) for t in all_tasks.values() for k, v in fc.gold_call(t).arguments.items()
                    if isinstance(v, str) and v]
    task, arg = data.draw(st.sampled_from(with_strings))
    gold = fc.gold_call(task)
    value = gold.arguments[arg]
    at = data.draw(st.integers(0, len(value)))
    dropped = data.draw(st.sampled_from(list(" ,./-_*^")))
    lenient = fc.FunctionCall(gold.name, {**gold.arguments, arg: value[:at] + dropped + value[at:]})
    assert fc.check_call(lenient, task).correct
    kept = data.draw(st.sampled_from(list("+@>=#!?;:()")))
    strict = fc.FunctionCall(gold.name, {**gold.arguments, arg: value[:at] + kept + value[at:]})
    ((_, accepted),) = task.ground_truth[0].items()
    if not any(kept in a for a in accepted[arg] if isinstance(a, str)):
        assert not fc.check_call(strict, task).correct
