"""Issue 42: inputs a run can trust. Each case is an input a user can get wrong (a dataset
changed under a run, a policy name taken, a broken JSONL line, adapter JSON or --config value);
each must end in one clear line naming the file (or run) and exit 2, never a traceback, and a
refused resume must leave the run exactly as it was: no stale records passed off as new. Two
controls (exit 0) show the check refuses no more than it should.

A case is (name, setup, expected exit code, message fragment): ``setup(tmp_path, tiny_dir)``
prepares the input (running a first tiny command where a resume is tested) and returns the
command line; the fragment is formatted with ``tmp`` (the test's directory). Every model is the
tiny randomly initialised one of ``conftest.py``, so each case runs in seconds.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from selfadapt.cli import app

runner = CliRunner()
TRAIN = ["--epochs", "1", "--dtype", "float32", "--device", "cpu"]
FAST = [*TRAIN, "--max-new-tokens", "8"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_passages(path: Path, n: int = 3, answer: str = "town") -> Path:
    """``n`` flat JSONL rows, one passage each; ``answer`` changes the first one's gold answer."""
    rows = [{"title": f"T{i}", "context": f"The town {i} was seized in 12{i}.", "question": f"Which town {i}?",
             "answer": answer if i == 0 else f"town {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def only_run(runs: Path) -> Path:
    (run,) = runs.iterdir()
    return run


def eval_first(tmp: Path, tiny: Path, *extra) -> tuple[Path, list]:
    """A finished tiny ``eval knowledge`` run (with ``extra`` options) on 1 passage of
    ``tmp/passages.jsonl``; returns it and the command line without ``extra``."""
    args = ["eval", "knowledge", "--model", tiny, "--dataset", write_passages(tmp / "passages.jsonl"),
            "--passages", 1, "--no-own", "--no-control", "--no-external", "--runs-dir", tmp / "runs", *FAST]
    res = invoke(*args, *extra)
    assert res.exit_code == 0, res.output
    return only_run(tmp / "runs"), args


def eval_resume_changed_dataset(tmp, tiny):
    run, args = eval_first(tmp, tiny)
    write_passages(tmp / "passages.jsonl", answer="city")  # same path, other gold answer for the passage used
    return [*args, "--resume", run]


def eval_resume_changed_outside_selection(tmp, tiny):
    """Only the passages a run uses count: an edit past ``--passages`` does not block the resume."""
    run, args = eval_first(tmp, tiny)
    with open(tmp / "passages.jsonl", "a") as f:
        f.write(json.dumps({"title": "New", "context": "Added later.", "question": "Q?", "answer": "A"}) + "\n")
    return [*args, "--resume", run]


def eval_resume_legacy_run(tmp, tiny):
    """A run made before datasets were hashed has none in its config: it still resumes."""
    run, args = eval_first(tmp, tiny)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.pop("dataset_hash")
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return [*args, "--resume", run]


def train_resume_changed_dataset(tmp, tiny):
    args = ["train", "knowledge", "--model", tiny, "--dataset", write_passages(tmp / "passages.jsonl"),
            "--rounds", 1, "-c", 1, "-k", 1, "--sft-epochs", 1, "--runs-dir", tmp / "runs", *FAST]
    assert invoke(*args).exit_code == 0
    write_passages(tmp / "passages.jsonl", answer="city")
    return [*args, "--resume", only_run(tmp / "runs")]


def continual_resume_changed_dataset(tmp, tiny):
    args = ["eval", "continual", "--model", tiny, "--dataset", write_passages(tmp / "passages.jsonl"),
            "--passages", 2, "--condition", "passage", "--runs-dir", tmp / "runs", *TRAIN]
    assert invoke(*args).exit_code == 0
    write_passages(tmp / "passages.jsonl", answer="city")
    return [*args, "--resume", only_run(tmp / "runs")]


def eval_resume_policy_name_taken(tmp, tiny):
    """``round2`` was evaluated as one model; a resume names another model ``round2``."""
    run, args = eval_first(tmp, tiny, "--policy", f"round2={tiny}")
    other = shutil.copytree(tiny, tmp / "moved-or-retrained")
    return [*args, "--policy", f"round2={other}", "--resume", run]


def bad_jsonl_line(tmp, tiny):
    data = write_passages(tmp / "bad.jsonl")
    lines = data.read_text().splitlines()
    lines[1] = lines[1].replace('", "question"', '" "question"')  # a comma missing
    data.write_text("\n".join(lines) + "\n")
    return ["eval", "knowledge", "--model", tiny, "--dataset", data, "--runs-dir", tmp / "runs"]


def adapter(tmp: Path, tiny: Path, meta: str, config: str) -> Path:
    """An adapter directory with the given ``selfadapt.json`` and ``adapter_config.json`` texts."""
    out = tmp / "adapter"
    out.mkdir()
    (out / "selfadapt.json").write_text(meta.replace("TINY", str(tiny)))
    (out / "adapter_config.json").write_text(config)
    save_file({}, out / "adapter_model.safetensors")
    return out


def ask_bad_selfadapt_json(tmp, tiny):
    return ["ask", "Which town?", "--adapter", adapter(tmp, tiny, '{"model": "TINY",', "{}")]


def ask_bad_adapter_config(tmp, tiny):
    return ["ask", "Which town?", "--adapter", adapter(tmp, tiny, '{"model": "TINY"}', '{"r": 4,, }'),
            "--dtype", "float32", "--device", "cpu"]


def config_file(text: str) -> Callable:
    def setup(tmp, tiny):
        (tmp / "c.yaml").write_text(text)
        return ["eval", "knowledge", "--config", tmp / "c.yaml", "--model", "/no/such/model",
                "--runs-dir", tmp / "runs"]

    return setup


@dataclass
class Case:
    name: str
    setup: Callable[[Path, Path], list]
    exit_code: int
    message: str


CASES = [
    Case("eval knowledge --resume on a changed dataset", eval_resume_changed_dataset, 2,
         "dataset '{tmp}/passages.jsonl' has changed since the run was made"),
    Case("eval knowledge --resume, a passage added past --passages", eval_resume_changed_outside_selection, 0,
         "Δ vs passage"),
    Case("eval knowledge --resume of a run made before dataset hashes", eval_resume_legacy_run, 0, "Δ vs passage"),
    Case("train knowledge --resume on a changed dataset", train_resume_changed_dataset, 2,
         "dataset '{tmp}/passages.jsonl' has changed since the run was made"),
    Case("eval continual --resume on a changed dataset", continual_resume_changed_dataset, 2,
         "dataset '{tmp}/passages.jsonl' has changed since the run was made"),
    Case("eval knowledge --resume --policy NAME=OTHER with NAME taken", eval_resume_policy_name_taken, 2,
         "this run evaluated 'round2' as"),
    Case("a bad JSONL line", bad_jsonl_line, 2, "{tmp}/bad.jsonl: line 2: invalid JSON at column"),
    Case("ask --adapter with invalid selfadapt.json", ask_bad_selfadapt_json, 2,
         "{tmp}/adapter/selfadapt.json: invalid JSON"),
    Case("ask --adapter with invalid adapter_config.json", ask_bad_adapter_config, 2,
         "{tmp}/adapter/adapter_config.json: invalid JSON"),
    Case("--config: an option's value of the wrong type", config_file("epochs: many\n"), 2,
         "{tmp}/c.yaml: key 'epochs'"),
    Case("--config: a section's value of the wrong type", config_file("lora: {dropout: lots}\n"), 2,
         "{tmp}/c.yaml: key 'lora.dropout'"),
    Case("--config: a value without a flag, of the wrong type", config_file("lora: {max_length: lots}\n"), 2,
         "{tmp}/c.yaml: key 'lora.max_length'"),
    Case("--config: an optional value without a flag, of the wrong type", config_file("lora: {max_steps: lots}\n"),
         2, "{tmp}/c.yaml: key 'lora.max_steps': expected int or None"),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.exists() else {}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path, tiny_dir, caplog):
    caplog.set_level(logging.INFO, logger="selfadapt")
    args = case.setup(tmp_path, tiny_dir)
    runs_before = snapshot(tmp_path / "runs")
    caplog.clear()
    res = invoke(*args)
    text = "".join(res.output.split())  # without rich's wrapping, which may break a long path anywhere
    assert res.exit_code == case.exit_code, res.output
    assert "".join(case.message.format(tmp=tmp_path).split()) in text, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    if case.exit_code:
        assert "error:" in text and "Usage:" not in text  # one line, not a usage box
        # refused before any work: no model loaded, every run as it was (no record reused or added)
        assert not [r for r in caplog.records if r.getMessage().startswith("loaded ")]
        assert snapshot(tmp_path / "runs") == runs_before


def test_a_resumed_legacy_run_records_its_dataset_hash(tmp_path, tiny_dir):
    """After one resume an old run is protected too: the hash it lacked is saved, and a later
    change of the dataset is refused."""
    args = eval_resume_legacy_run(tmp_path, tiny_dir)
    assert invoke(*args).exit_code == 0
    run = only_run(tmp_path / "runs")
    assert yaml.safe_load((run / "config.yaml").read_text()).get("dataset_hash")
    write_passages(tmp_path / "passages.jsonl", answer="city")
    res = invoke(*args)
    assert res.exit_code == 2 and "has changed since the run was made" in " ".join(res.output.split())
