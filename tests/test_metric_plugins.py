"""A metric by import path for knowledge and ARC (``--metric my.py:f``): a function as TRL writes
reward functions, ``f(prompts, completions, **kwargs) -> list[float]``, scores each question
(test) in place of exact match (the ARC checker), so it is ReST-EM's reward too. It travels to
workers as its spec and is imported only from the command line or the user's --config."""

import json
import pickle
import textwrap

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import selfadapt.models as models
import selfadapt.restem as restem
from selfadapt.arc.data import ArcTask
from selfadapt.arc.domain import ArcDomain
from selfadapt.arc.experiment import ArcSettings, run_arc_training
from selfadapt.cli import app
from selfadapt.knowledge.data import Passage, Question
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.knowledge.train import KnowledgeTrainConfig, run_knowledge_training
from selfadapt.lora import LoRAConfig
from selfadapt.metric import METRIC, load_metric
from selfadapt.restem import PolicySFTConfig, ReSTEMConfig
from selfadapt.runs import Run, RunError

runner = CliRunner()

METRICS = textwrap.dedent("""
    import json, os

    def one(prompts, completions, **kwargs):  # as TRL's docs write a reward function
        return [1.0 for _ in completions]

    def golds(prompts, completions, answers, **kwargs):  # every gold answer of each question
        return [float(len(a)) for a in answers]

    def length(prompts, completions, **kwargs):  # depends on what the model answered
        return [float(len(c)) for c in completions]

    def seen(prompts, completions, **kwargs):  # what it was called with, for the test to read
        with open(os.environ["METRIC_SEEN"], "a") as f:
            f.write(json.dumps({"prompts": prompts, "completions": completions,
                                "keys": sorted(kwargs), **{k: kwargs[k] for k in ("answers", "expected")
                                                          if k in kwargs}}) + "\\n")
        return [0.5 for _ in completions]

    NOT_A_FUNCTION = 3
""")
EVIL = ("open(__file__ + '.imported', 'w').write('x')\n\n"
        "def f(prompts, completions, **kwargs):\n    return [1.0] * len(completions)\n")


@pytest.fixture()
def metrics_file(tmp_path):
    path = tmp_path / "my_metrics.py"
    path.write_text(METRICS)
    return path


def test_a_trl_metric_scores_each_question_in_place_of_exact_match(tiny, passages, metrics_file, tmp_path,
                                                                   monkeypatch):
    plain = KnowledgeDomain(tiny.tokenizer).evaluate(tiny.model, tiny.tokenizer, passages[0])
    assert plain.score == 0.0 and METRIC not in plain.records[0]  # the tiny model never matches: EM is 0
    ev = KnowledgeDomain(tiny.tokenizer, metric=f"{metrics_file}:one").evaluate(tiny.model, tiny.tokenizer,
                                                                                 passages[0])
    assert ev.score == 1.0 and [r[METRIC] for r in ev.records] == [1.0, 1.0]
    assert [r["exact_match"] for r in ev.records] == [r["exact_match"] for r in plain.records]  # still reported
    multi = Passage(passages[0].title, passages[0].context, (Question("Which town?", "Otrar", ("the town of Otrar",)),),
                    index=0)
    ev = KnowledgeDomain(tiny.tokenizer, metric=f"{metrics_file}:golds").evaluate(tiny.model, tiny.tokenizer, multi)
    assert ev.score == 2.0
    monkeypatch.setenv("METRIC_SEEN", str(tmp_path / "seen.jsonl"))
    ev = KnowledgeDomain(tiny.tokenizer, metric=f"{metrics_file}:seen").evaluate(tiny.model, tiny.tokenizer,
                                                                                  passages[0])
    seen = json.loads((tmp_path / "seen.jsonl").read_text())
    assert seen["answers"] == [["Otrar"], ["fled"]] and {"question", "title"} <= set(seen["keys"])
    assert seen["completions"] == [r["response"] for r in ev.records]
    assert "Which town was seized?" in seen["prompts"][0] and "What did the Shah do?" in seen["prompts"][1]
    # the recital control is scored by the same metric
    recital = KnowledgeDomain(tiny.tokenizer, metric=f"{metrics_file}:one").recital(passages[0])
    assert recital.score == 1.0


def test_the_domain_carries_the_spec_not_the_function(tiny, metrics_file):
    domain = KnowledgeDomain(tiny.tokenizer, metric=f"{metrics_file}:one")
    domain.evaluate  # noqa: B018
    copy = pickle.loads(pickle.dumps(domain))  # as Ray ships it to a worker
    assert copy.metric == str(metrics_file.resolve()) + ":one"
    assert callable(load_metric(copy.metric))


def test_knowledge_training_rewards_by_the_metric(tiny_dir, passages_file, metrics_file, tmp_path, monkeypatch):
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [] for i in rewards})  # no SFT
    cfg = ReSTEMConfig(model=str(tiny_dir), rounds=1, items_per_round=1, k=2, seeds=1, max_new_tokens=12,
                       lora=LoRAConfig(r=4, epochs=1, lr=1e-2), sft=PolicySFTConfig(epochs=1, r=4, alpha=8),
                       dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))
    spec = f"{metrics_file}:length"
    run = run_knowledge_training(cfg, KnowledgeTrainConfig(dataset=str(passages_file), fmt="implications",
                                                           grounded=False, metric=spec,
                                                           form=False))  # the reward against base, SEAL's
    assert yaml.safe_load((run.path / "config.yaml").read_text())["domain"]["metric"] == spec
    evals = [r for r in run.records() if r["condition"] in ("base", "selfedit") and r["status"] == "ok"]
    assert evals
    for r in evals:  # each score is the metric's mean over the questions: the answers' lengths
        assert r["score"] == pytest.approx(np.mean([len(q["response"]) for q in r["records"]]))
        assert all(q[METRIC] == len(q["response"]) for q in r["records"])
    m = json.loads((run.path / "round-0" / "metrics.json").read_text())
    gains = [r["score"] - r["before"] for r in evals if r["condition"] == "selfedit"]
    assert m["mean_reward"] == pytest.approx(np.mean(gains))


def test_knowledge_eval_table_names_the_metric(tiny_dir, passages_file, metrics_file, tmp_path):
    cfg = KnowledgeEvalConfig(model=str(tiny_dir), dataset=str(passages_file), passages=1, own=False, external=[],
                              controls=[], answer_max_new_tokens=4, lora=LoRAConfig(r=4, epochs=1),
                              dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"),
                              metric=f"{metrics_file}:one")
    run, rows = run_knowledge_eval(cfg)
    assert {r["condition"]: r["score"] for r in rows} == {"base": 1.0, "recital": 1.0, "passage+form": 1.0}
    table = (run.path / "table.md").read_text()
    head = table.splitlines()[0]
    assert "metric one %" in head and "exact_match %" not in head and "EM %" in head  # EM kept, as a side column
    assert json.loads((run.path / "metrics.json").read_text())["reward_metric"] == f"{metrics_file}:one"


def _task():
    rng = np.random.default_rng(0)
    pairs = tuple((rng.integers(0, 3, (2, 2)), rng.integers(0, 3, (2, 2))) for _ in range(2))
    return ArcTask("t", pairs, ((rng.integers(0, 3, (2, 2)), rng.integers(0, 3, (2, 2))),))


def test_arc_takes_a_metric_for_each_test_output(tiny, metrics_file, tmp_path, monkeypatch):
    task = _task()
    assert ArcDomain(tiny.tokenizer, votes=1).evaluate(tiny.model, tiny.tokenizer, task).score == 0.0
    ev = ArcDomain(tiny.tokenizer, votes=1, metric=f"{metrics_file}:one").evaluate(tiny.model, tiny.tokenizer, task)
    assert ev.score == 1.0 and ev.records[0][METRIC] == 1.0 and ev.records[0]["correct"] is False
    monkeypatch.setenv("METRIC_SEEN", str(tmp_path / "seen.jsonl"))
    ArcDomain(tiny.tokenizer, votes=1, metric=f"{metrics_file}:seen").evaluate(tiny.model, tiny.tokenizer, task)
    seen = json.loads((tmp_path / "seen.jsonl").read_text())
    assert seen["expected"] == ["\n".join("".join(map(str, row)) for row in task.test[0][1])]
    assert len(seen["prompts"]) == len(seen["completions"]) == 1


def test_arc_settings_hand_the_metric_to_the_domain_and_the_run(tiny, metrics_file, monkeypatch):
    spec = f"{metrics_file}:one"
    arc = ArcSettings("training", max_cells=400, metric=spec)
    assert arc.domain(tiny.tokenizer).metric == str(metrics_file.resolve()) + ":one"
    seen = {}
    monkeypatch.setattr("selfadapt.arc.experiment.run_restem",
                        lambda cfg, pool, make_domain, **kw: seen.update(cfg=cfg, domain=make_domain(tiny.tokenizer)))
    monkeypatch.setattr("selfadapt.arc.experiment.plot_config_choices", lambda *a, **k: None)
    run_arc_training(ReSTEMConfig(rounds=1, items_per_round=1), arc)
    assert seen["cfg"].domain["metric"] == spec and seen["domain"].metric.endswith(":one")


COMMANDS = [["eval", "knowledge"], ["train", "knowledge"], ["eval", "arc"], ["train", "arc"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("bad, message", [
    ("missing.py:f", "no such file"),
    ("my_metrics.py:absent", "has no 'absent'"),
    ("my_metrics.py:NOT_A_FUNCTION", "f(prompts, completions, **kwargs)"),
    ("exact", "file.py:NAME or pkg.module:NAME"),
])
def test_a_bad_metric_fails_before_any_model_is_loaded(command, bad, message, metrics_file, monkeypatch):
    monkeypatch.chdir(metrics_file.parent)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    res = runner.invoke(app, [*command, "--metric", bad])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in " ".join(res.output.split()) and "Traceback" not in res.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_metric_from_the_users_config_file(command, metrics_file, tmp_path, monkeypatch):
    import selfadapt.arc.experiment as ax
    import selfadapt.knowledge.experiment as ke
    import selfadapt.knowledge.train as kt

    seen = []
    for module, fn in [(ke, "run_knowledge_eval"), (kt, "run_knowledge_training"), (ax, "run_arc_eval"),
                       (ax, "run_arc_training")]:
        monkeypatch.setattr(module, fn, lambda *args, **kw: seen.append(args) or (_ for _ in ()).throw(SystemExit))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"metric: {metrics_file}:one\n")
    runner.invoke(app, [*command, "--config", str(config)])
    specs = [getattr(a, "metric", None) or getattr(getattr(a, "arc", None), "metric", None) for a in seen[0]]
    assert f"{metrics_file}:one" in specs


def test_a_metric_named_in_a_data_file_is_never_imported(tiny_dir, passages_file, tmp_path):
    evil = tmp_path / "evil.py"
    evil.write_text(EVIL)
    marker = tmp_path / "evil.py.imported"
    # a dataset whose rows name a metric
    rows = json.loads(passages_file.read_text())
    data = tmp_path / "with_metric.json"
    data.write_text(json.dumps([{**r, "metric": f"{evil}:f"} for r in rows]))
    cfg = KnowledgeEvalConfig(model=str(tiny_dir), dataset=str(data), passages=1, own=False, external=[],
                              controls=[], answer_max_new_tokens=4, lora=LoRAConfig(r=4, epochs=1),
                              dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))
    run, rows_ = run_knowledge_eval(cfg)
    assert not marker.exists() and METRIC not in run.records()[0]["records"][0]
    # a run directory whose saved config names one: resuming it is refused, nothing imported
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    (run.path / "config.yaml").write_text(yaml.safe_dump({**saved, "metric": f"{evil}:f"}))
    with pytest.raises(RunError, match="metric"):
        Run.resume(run.path, cfg)
    # a trained policy's run config that names one: the policy is evaluated by the command's metric
    from selfadapt.knowledge.experiment import trained_format

    rdir = tmp_path / "train" / "round-0"
    rdir.mkdir(parents=True)
    (rdir / "policy.json").write_text("{}")
    (rdir.parent / "config.yaml").write_text(yaml.safe_dump({"domain": {"fmt": "rewrite", "metric": f"{evil}:f"}}))
    assert trained_format(str(rdir), "self-qa", "free") == ("rewrite", "free", None)
    assert not marker.exists()
