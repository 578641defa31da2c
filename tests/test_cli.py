import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from selfadapt.arc.selfedit import parse_selfedit
from selfadapt.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_knowledge_end_to_end(tiny_dir, passages_file, tmp_path):
    res = invoke("eval", "knowledge", "--model", tiny_dir, "--dataset", passages_file, "--passages", 2,
                 "--no-external", "--epochs", 1, "--max-new-tokens", 8, "--dtype", "float32",
                 "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    table = (run / "table.md").read_text()  # every column; the terminal gets the key ones
    # the default self-edit, form equalized by default
    assert "| passage+form |" in table and "| own-self-qa-grounded+form |" in table
    out = "".join(res.output.split())
    assert "Δvs" in out and "passage+form" in out and "mc_prob" not in out and f"everycolumn:{run / 'table.md'}" in out


@pytest.mark.parametrize("args,message", [
    (["--model", "/no/such/model"], "model path does not exist: /no/such/model"),
    (["--format", "poem"], "unknown self-edit format 'poem'"),
    (["--external", "nope.json"], "nope.json: file not found"),
])
def test_eval_bad_input_is_one_clear_error(tmp_path, args, message):
    res = invoke("eval", "knowledge", "--passages", 1, "--runs-dir", tmp_path / "runs", *args)
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()  # no empty run directory left behind


def test_malformed_dataset_names_file_and_record(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"title": "A", "context": "c", "questions": [{"question": "q"}]}]))
    res = invoke("eval", "knowledge", "--dataset", bad, "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 2
    assert f"{bad}: record 0: field 'answer'" in " ".join(res.output.split())
    assert not (tmp_path / "runs").exists()  # nothing started on bad data


def test_learn_then_ask(tiny_dir, tmp_path):
    doc = tmp_path / "otrar_notes.txt"
    doc.write_text("The Mongol army seized the town of Otrar.\n\nMolten silver was used in the execution.\n")
    out = tmp_path / "adapter"
    res = invoke("learn", doc, "--out", out, "--model", tiny_dir, "-k", 1, "--epochs", 2, "--dtype", "float32")
    assert res.exit_code == 0, res.output
    assert (out / "adapter_model.safetensors").is_file()
    meta = json.loads((out / "selfadapt.json").read_text())
    assert meta["title"] == "otrar notes" and meta["chunks"] == 1 and meta["steps"] >= 2
    assert meta["documents"][0]["replayed"] == 0
    res = invoke("ask", "Which town was seized?", "What metal?", "--adapter", out, "--max-new-tokens", 4,
                 "--model", tiny_dir)  # learned on a local model: `ask` loads a path only when given
    assert res.exit_code == 0, res.output
    assert res.output.count("Q:") == 2 and res.output.count("A:") == 2
    again = invoke("learn", doc, "--out", out, "--model", tiny_dir)  # never overwrite an adapter
    assert again.exit_code == 2 and "not empty" in again.output


def test_learn_several_documents_in_sequence_with_replay_and_checks(tiny_dir, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_otrar.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    (docs / "b_metal.md").write_text("Molten silver was poured into the ears of Inalchuq.\n")
    (docs / "ignored.json").write_text("{}")
    out = tmp_path / "adapter"
    res = invoke("learn", docs, "--out", out, "--model", tiny_dir, "-k", 1, "--epochs", 1, "--replay", 2,
                 "--format", "implications", "--no-grounded", "--seed", 0,
                 "--dtype", "float32")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "selfadapt.json").read_text())
    assert [d["document"].rsplit("/", 1)[-1] for d in meta["documents"]] == ["a_otrar.txt", "b_metal.md"]
    assert [d["replayed"] for d in meta["documents"]] == [0, min(2, meta["documents"][0]["sequences"])]
    checks = json.loads((out / "checks.json").read_text())
    assert meta["checks"] == len(checks)
    assert all({"question", "expected", "before", "after", "f1_before", "f1_after"} <= set(c) for c in checks)


def test_learn_missing_document(tmp_path):
    res = invoke("learn", tmp_path / "none.txt", "--out", tmp_path / "a")
    assert res.exit_code == 2 and "document not found" in res.output




def test_rrr_build_train_eval_end_to_end(tiny_dir, tmp_path):
    runs = tmp_path / "runs"
    common = ["--model", tiny_dir, "--dtype", "float32", "--runs-dir", runs]
    res = invoke("rrr", "build-failures", "--queries", 3, "--attempts", 2, "--max-new-tokens", 6, *common)
    assert res.exit_code == 0, res.output
    (failures_run,) = runs.glob("rrr-failures-*")
    assert len((failures_run / "failures.jsonl").read_text().splitlines()) == 3  # a random model solves nothing
    res = invoke("rrr", "train", failures_run, "--steps", 1, "-G", 2, "--queries-per-step", 1,
                 "--reflection-tokens", 6, "--retry-tokens", 6, "--lora-r", 2, *common)
    assert res.exit_code == 0, res.output
    (train_run,) = runs.glob("rrr-train-*")
    assert (train_run / "policy" / "adapter_model.safetensors").is_file()
    assert len((train_run / "rollouts.jsonl").read_text().splitlines()) == 2
    assert json.loads((train_run / "metrics.json").read_text())["step_times"]
    res = invoke("rrr", "eval", "--queries", 2, "--general", 2, "--answer-tokens", 6, "--reflection-tokens", 6,
                 "--policy", train_run, *common)
    assert res.exit_code == 0, res.output
    (eval_run,) = runs.glob("rrr-eval-*")
    summary = (eval_run / "summary.md").read_text()
    assert "| base |" in summary and f"| {train_run.name} |" in summary and "reference answer log p" in summary
    assert "2nd attempt %" in res.output and f"everycolumn:{eval_run / 'summary.md'}" in "".join(res.output.split())
    recs = [json.loads(line) for line in (eval_run / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * (2 + 2) and (eval_run / "accuracy.png").is_file()
    assert all(r["reference_logprob"] < 0 for r in recs if r["kind"] == "task" and not r["first_correct"])
    res = invoke("rrr", "eval", "--queries", 2, "--general", 2, "--answer-tokens", 6, "--reflection-tokens", 6,
                 "--policy", train_run, "--resume", eval_run, *common)
    assert res.exit_code == 0, res.output
    assert len((eval_run / "records.jsonl").read_text().splitlines()) == len(recs)  # nothing redone


@pytest.mark.parametrize("args,message", [
    (["build-failures", "--task", "chess"], "unknown task 'chess'"),
    (["train", "/no/failures.jsonl"], "no failure dataset here"),
    (["eval", "--policy", "/no/run"], "policy /no/run: no such directory"),
    (["eval", "--model", "/no/such/model"], "model path does not exist"),
])
def test_rrr_bad_input_is_one_clear_error(tmp_path, args, message):
    res = invoke("rrr", *args, "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not (tmp_path / "runs").exists()


def test_arc_train_then_eval_end_to_end(tiny_dir, tmp_path):
    runs = tmp_path / "runs"
    small = ["--model", tiny_dir, "--dtype", "float32", "--runs-dir", runs, "--cap", 2, "--budget", 4, "--votes", 2]
    res = invoke("train", "arc", "--task-id", "6150a2bd", "-c", 1, "-k", 2, *small)
    assert res.exit_code == 0, res.output
    (train_run,) = runs.glob("train-arc-*")
    recs = [json.loads(line) for line in (train_run / "records.jsonl").read_text().splitlines()]
    scored = [r for r in recs if r["condition"] == "selfedit"]
    assert len(scored) == 2 and all(r["item"] == "6150a2bd" for r in scored)
    # Under the grammar even a random model writes valid self-edits: each one really configures a TTT run.
    assert all(r["status"] == "ok" and r["train"]["steps"] >= 1 and parse_selfedit(r["selfedit"]) for r in scored)
    (write,) = [r for r in recs if r["condition"] == "write"]
    assert len(write["logprobs"]) == 2 and all(lp < 0 for lp in write["logprobs"])
    policy = json.loads((train_run / "round-0" / "policy.json").read_text())["policy"]
    assert policy == (str(tiny_dir) if all(r["score"] == 0 for r in scored) else str(train_run / "round-0" / "policy"))
    configs = json.loads((train_run / "configs.json").read_text())  # what the policy chose, per round
    assert list(configs) == ["round 0"] and configs["round 0"]["valid"] == {"yes": 2}
    assert sum(configs["round 0"]["learning rate"].values()) == 2 and (train_run / "configs.png").is_file()

    # Without the grammar a random model writes no valid JSON: invalid with its reason, reward 0.
    res = invoke("train", "arc", "--task-id", "6150a2bd", "-c", 1, "-k", 2, "--no-constrain", *small)
    assert res.exit_code == 0, res.output
    free_run = next(r for r in runs.glob("train-arc-*") if r != train_run)
    free = [json.loads(line) for line in (free_run / "records.jsonl").read_text().splitlines()]
    assert all(r["status"] == "invalid_selfedit" and r["reason"] and r["score"] == 0
               for r in free if r["condition"] == "selfedit")

    res = invoke("eval", "arc", "--task", "66e6c45b", "-k", 1, "--policy", train_run / "round-0", *small)
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    (eval_run,) = runs.glob("eval-arc-*")
    table = (eval_run / "table.md").read_text()
    head = "| condition | success % (95% CI) | Δ vs ttt-plain (95% CI) | W/T/L vs ttt-plain | items |"
    assert head in table  # no EM/F1
    for row in ["icl", "ttt-plain", "own", "round-0-icl", "round-0"]:
        assert f"| {row} |" in table and f" {row} " in out
    assert "success %" in out and "W/T/L vs ttt-plain" in out and "items" not in out
    assert "oracle (best of 12 configurations per task)" in out
    recs = [json.loads(line) for line in (eval_run / "records.jsonl").read_text().splitlines()]
    assert Counter(r["condition"] for r in recs) == {"write": 2, "icl": 1, "ttt-plain": 1, "own": 1, "oracle": 12,
                                                     "round-0-icl": 1, "round-0": 1}
    oracle = [r for r in recs if r["condition"] == "oracle"]
    assert all(r["status"] == "ok" and r["train"]["steps"] >= 1 for r in oracle)  # every grid point trained
    assert (eval_run / "accuracy.png").is_file()
    res = invoke("eval", "arc", "--task", "66e6c45b", "-k", 1, "--policy", train_run / "round-0", "--resume",
                 eval_run, *small)
    assert res.exit_code == 0, res.output
    assert len((eval_run / "records.jsonl").read_text().splitlines()) == len(recs)  # nothing redone


@pytest.mark.parametrize("args,message", [
    (["eval", "arc", "--votes", 9], "--votes must be between 1 and 8"),
    (["eval", "arc", "--task", "nope"], "no task nope"),
    (["eval", "arc", "--subset", "kaggle"], "unknown ARC subset 'kaggle'"),
    (["eval", "arc", "--max-cells", 4], "no evaluation task has all grids within 4 cells"),
    (["train", "arc", "--task-id", "66e6c45b"], "no task 66e6c45b"),  # evaluation tasks stay held out
    (["train", "arc", "--task-id", "6150a2bd", "-c", 2], "the pool has only 1 items"),
])
def test_arc_bad_input_is_one_clear_error(tmp_path, args, message):
    res = invoke(*args, "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()
