import json

import pytest
from typer.testing import CliRunner

from selfadapt.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_knowledge_end_to_end(tiny_dir, passages_file, tmp_path):
    res = invoke("eval", "knowledge", "--model", tiny_dir, "--dataset", passages_file, "--passages", 2,
                 "--no-external", "--epochs", 1, "--max-new-tokens", 8, "--dtype", "float32",
                 "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 0, res.output
    assert "| passage |" in res.output and "| own-implications |" in res.output
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "table.md").is_file()


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
    res = invoke("ask", "Which town was seized?", "What metal?", "--adapter", out, "--max-new-tokens", 4)
    assert res.exit_code == 0, res.output
    assert res.output.count("Q:") == 2 and res.output.count("A:") == 2
    again = invoke("learn", doc, "--out", out, "--model", tiny_dir)  # never overwrite an adapter
    assert again.exit_code == 2 and "not empty" in again.output


def test_learn_missing_document(tmp_path):
    res = invoke("learn", tmp_path / "none.txt", "--out", tmp_path / "a")
    assert res.exit_code == 2 and "document not found" in res.output


def test_chunking():
    from selfadapt.teach import chunk_document

    text = "a b c\n\nd e\n\n" + " ".join(["w"] * 25)
    chunks = chunk_document(text, "T", max_words=10)
    assert [len(c.context.split()) for c in chunks] == [5, 10, 10, 5]
    assert [c.index for c in chunks] == [0, 1, 2, 3] and chunks[0].title == "T"
