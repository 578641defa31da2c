"""Your own RRR task and reward, from a file path and from an installed plug-in (entry points),
and reasoning-gym's generators behind the same Task interface."""

import json
from pathlib import Path

import pytest

from selfadapt.rewards import parse_reward_specs, reward_class
from selfadapt.rrr.tasks import get_task, task_spec

EXAMPLE = Path(__file__).parents[1] / "examples" / "parity_task.py"
REWARD = '''
class Brevity:
    __name__ = "brevity"
    def __init__(self, ctx): self.ctx = ctx
    def __call__(self, prompts, completions, **columns):
        return [-len(c[-1]["content"]) / 500 for c in completions]
'''


def test_a_task_from_a_file_path_round_trips_through_its_spec():
    spec = f"{EXAMPLE}:Parity"
    task = get_task(spec)
    q = task.queries("train", 2)[0]
    assert task.verify(q, task.reference(q)).correct and not task.verify(q, "<answer>maybe</answer>").correct
    assert task_spec(task) == spec and get_task(task_spec(task)).queries("train", 2)[0] == q
    with pytest.raises(ValueError, match="has no 'Nope'"):
        get_task(f"{EXAMPLE}:Nope")
    with pytest.raises(ValueError, match="not a task, it lacks"):
        get_task(f"{EXAMPLE}:Verdict")


def test_a_reward_from_a_file_path(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARD)
    assert parse_reward_specs(["retry=1", f"{path}:Brevity=0.2"]) == {"retry": 1.0, f"{path}:Brevity": 0.2}
    reward = reward_class(f"{path}:Brevity")(None)
    assert reward([], [[{"content": "x" * 50}]]) == [-0.1]
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        parse_reward_specs(["nope=1"])


def test_an_installed_plugin_task_and_reward(tmp_path, monkeypatch):
    """Entry points ``selfadapt.tasks`` / ``selfadapt.rewards`` of an installed package."""
    (tmp_path / "myplug.py").write_text(EXAMPLE.read_text() + REWARD)
    dist = tmp_path / "myplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[selfadapt.tasks]\nparity = myplug:Parity\n\n"
                                           "[selfadapt.rewards]\nbrevity = myplug:Brevity\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = get_task("parity")
    assert task.name == "parity" and task_spec(task) == "parity"
    assert reward_class("brevity").__name__ == "Brevity"


def test_reasoning_gym_verifier_agrees_with_its_own_score_answer():
    rg = pytest.importorskip("reasoning_gym", reason="reasoning-gym is installed with --no-deps (see README)")
    task = get_task("reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2")
    assert task_spec(task) == "reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2"
    train, test = task.queries("train", 50), task.queries("test", 50)
    assert not {q["question"] for q in train} & {q["question"] for q in test}
    assert len(task.queries("test")) > 90  # not emptied by the overlap (seeds that shift the train split)
    data = rg.create_dataset("basic_arithmetic", size=300, seed=0, min_terms=2, max_terms=2)
    letters = get_task("reasoning-gym:letter_counting:min_words=3,max_words=5")
    assert len(letters.queries("test")) > 90
    for q in train[:20]:
        entry = data[q["index"]]
        for answer in (entry["answer"], str(int(entry["answer"]) + 1), "seven", f" {entry['answer']} "):
            ours = task.verify(q, f"So the result is <answer>{answer}</answer>").correct
            assert ours == (data.score_answer(answer.strip(), entry) >= 1.0)
        assert task.verify(q, task.reference(q)).correct and not task.verify(q, entry["answer"]).correct
        task.check(q)
    with pytest.raises(ValueError, match="not an instance"):
        task.check({**train[0], "question": "What is 1 + 1?"})
    with pytest.raises(ValueError, match="reasoning-gym:no_such_task"):
        get_task("reasoning-gym:no_such_task")
    # prefill is selfadapt's knob (the generator never sees it): every answer starts with <answer>
    pre = get_task("reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2,prefill=1")
    assert pre.config == task.config and pre.prefix(train[0]) == "<answer>" and task.prefix(train[0]) == ""
    assert task_spec(pre) == "reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2,prefill=1"
    assert [q["question"] for q in pre.queries("train", 5)] == [q["question"] for q in train[:5]]
    shot = get_task("reasoning-gym:basic_arithmetic:min_terms=2,max_terms=2,shots=2")
    turns = shot.messages(shot.queries("train", 1)[0])
    assert [t["role"] for t in turns] == ["user", "assistant"] * 2 + ["user"] and shot.config == task.config
    demos = {t["content"] for t in turns[:-1] if t["role"] == "user"}
    assert not demos & {shot.messages(q)[-1]["content"] for q in shot.queries("train") + shot.queries("test")}


def test_reasoning_gym_constrain_allows_an_answer_not_an_equation_or_prose(tiny_tokenizer):
    pytest.importorskip("reasoning_gym", reason="reasoning-gym is installed with --no-deps (see README)")
    from selfadapt.constrained import GrammarConstraint

    task = get_task("reasoning-gym:chain_sum:min_terms=2,max_terms=2,prefill=1,constrain=1")
    q = task.queries("train", 1)[0]
    assert task.config == {"min_terms": 2, "max_terms": 2} and task.grammar(q)
    assert task.answer_kind == "integer"  # chain_sum's answers are all integers: only digits are allowed
    for text, ok in [("5</answer>", True), ("-12</answer>", True), (" 12 </answer>", False), ("= 5</answer>", False),
                     ("5\n</answer>", False), ("5", False), ("The answer is 5.", False)]:
        c = GrammarConstraint(tiny_tokenizer, task.grammar(q), prefix="<answer>")
        assert c.accepts(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) is ok, text
    assert get_task("reasoning-gym:chain_sum").grammar(q) is None
    words = get_task("reasoning-gym:spell_backward:constrain=1")
    assert words.answer_kind == "line"
    c = GrammarConstraint(tiny_tokenizer, words.grammar(words.queries("train", 1)[0]))
    assert c.accepts(tiny_tokenizer("<answer>tac</answer>", add_special_tokens=False)["input_ids"])


def test_rrr_probe_runs_a_user_task_from_the_command_line(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from selfadapt.cli import app

    res = CliRunner().invoke(app, ["rrr", "probe", "--task", f"{EXAMPLE}:Parity", "--model", str(tiny_dir),
                                   "--queries", "2", "--answer-tokens", "4", "--reflection-tokens", "4",
                                   "--dtype", "float32", "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "parity_task.py:Parity" in res.output


EVIL = '''
from pathlib import Path
Path(__file__).with_name("ran").write_text("imported")
from parity_task import Parity as T
'''


def _write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record) + "\n")
    return path


def test_a_failure_dataset_never_imports_the_code_its_task_names(tmp_path, monkeypatch):
    """`rrr train` on someone else's failures.jsonl naming `evil.py:T` must not import evil.py;
    the same spec given on the command line (`--task`) is the user's choice and loads."""
    from typer.testing import CliRunner

    from selfadapt.cli import app
    from selfadapt.rrr.failures import load_failures

    (tmp_path / "parity_task.py").write_text(EXAMPLE.read_text())
    (tmp_path / "evil.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"{tmp_path / 'evil.py'}:T"
    q = get_task(f"{EXAMPLE}:Parity").queries("train", 1)[0]
    data = _write(tmp_path / "failures.jsonl", {"task": spec, "id": q["id"], "query": q,
                                                "attempt": "<answer>odd</answer>", "reason": "wrong"})
    with pytest.raises(ValueError, match=r"line 1: .*cannot choose code to run.*--task ") as e:
        load_failures(data)
    assert str(data) in str(e.value)
    res = CliRunner().invoke(app, ["rrr", "train", str(data), "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code != 0 and "cannot choose code to run" in res.output, res.output
    assert not (tmp_path / "ran").exists()  # evil.py never ran
    builtin = {"task": "countdown", "id": "a", "query": {"id": "a", "numbers": [1, 2, 3], "target": 6},
               "attempt": "<answer>1</answer>", "reason": "x"}
    assert load_failures(_write(tmp_path / "builtin.jsonl", builtin))[0].name == "countdown"  # needs no flag
    task, records = load_failures(data, trusted=[spec])
    assert (tmp_path / "ran").exists() and task.spec == spec and len(records) == 1
