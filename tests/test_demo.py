"""`selfadapt demo`: learn's code path on the document shipped with the package, its answers
before and after as a table; a second demo into the same directory (an earlier demo's adapter is
cleared, nothing else is); learn's advice after a step cap; the product modules import no
experiment runner."""

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfadapt.answering import META
from selfadapt.cli import app
from selfadapt.teaching import (
    DEMO_DOCUMENT,
    DEMO_QUESTION,
    LEARN_FILES,
    clear_demo,
    demo_config,
    demo_document,
    is_demo_adapter,
    learn,
    report_lines,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "selfadapt"


def test_the_demo_document_ships_with_the_package():
    doc = resources.files("selfadapt").joinpath(DEMO_DOCUMENT)
    assert doc.is_file() and 120 <= len(doc.read_text().split()) <= 170
    # pyproject's package-data globs take it into a wheel (an editable install would find it without them)
    globs = re.search(r"\[tool\.setuptools\.package-data\]\s*selfadapt\s*=\s*\[([^\]]*)\]",
                      (SRC.parents[1] / "pyproject.toml").read_text()).group(1)
    shipped = {p for g in re.findall(r'"([^"]+)"', globs) for p in SRC.glob(g)}
    assert SRC / DEMO_DOCUMENT in shipped
    assert "Varnholt Lighthouse" in DEMO_QUESTION and "Varnholt Lighthouse" in doc.read_text()


def test_demo_teaches_the_document_and_prints_answers_before_and_after(tiny_dir, tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "-o", str(out), "--model", str(tiny_dir), "--dtype", "float32",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert re.search(r"question \(taught\)\s+before\s+after\s+expected", res.output), res.output
    assert "Questions the document taught" in text
    assert (out / "adapter_config.json").is_file() and (out / "checks.json").is_file()
    checks = json.loads((out / "checks.json").read_text())
    assert 0 < len(checks) <= demo_config(str(tiny_dir)).checks and all(c["trained"] for c in checks)
    assert re.search(rf"Taught questions answered: \d+ of {len(checks)} before, \d+ after", text), text
    assert re.search(r"\d+ training steps", text) and "loss" in text
    assert f'selfadapt ask "{DEMO_QUESTION}" --adapter {out}' in text
    assert "selfadapt learn YOUR_FILE -o" in text
    again = CliRunner().invoke(app, ["demo", "-o", str(out), "--model", str(tiny_dir), "--dtype", "float32",
                                     "--device", "cpu"])
    assert again.exit_code == 0, again.output  # README command (a) may be run twice
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a demo's")
    refused = CliRunner().invoke(app, ["demo", "-o", str(mine), "--model", str(tiny_dir)])
    assert refused.exit_code == 2 and "not empty" in refused.output  # refused before the model loads
    assert (mine / "notes.txt").read_text() == "not a demo's"


def _learn_demo(tiny_dir: Path, out: Path) -> dict:
    """The demo's code path: clear an earlier demo's adapter, then learn the shipped document."""
    clear_demo(out)
    with resources.as_file(demo_document()) as doc:
        return learn([doc], out, demo_config(str(tiny_dir), "float32", "cpu"))


def test_the_demo_runs_again_into_the_directory_of_an_earlier_demo(tiny_dir, tmp_path):
    out = tmp_path / "selfadapt-demo"
    first = _learn_demo(tiny_dir, out)
    assert is_demo_adapter(out) and {p.name for p in out.iterdir()} == LEARN_FILES
    second = _learn_demo(tiny_dir, out)  # without clear_demo: "exists and is not empty"
    assert second["documents"][0]["document"] == first["documents"][0]["document"]
    assert (out / "adapter_model.safetensors").is_file() and is_demo_adapter(out)


def _fake_adapter(out: Path, document: str) -> None:
    out.mkdir()
    for name in LEARN_FILES:
        (out / name).write_text("{}")
    (out / META).write_text(json.dumps({"documents": [{"document": document}]}))


@pytest.mark.parametrize("case", ["user file", "another document", "demo plus a user file", "no metadata",
                                  "bad metadata", "a file"])
def test_anything_but_an_earlier_demo_is_left_for_learn_to_refuse(tiny_dir, tmp_path, case):
    out = tmp_path / "out"
    if case == "user file":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "another document":
        _fake_adapter(out, str(tmp_path / "notes.txt"))
    elif case == "demo plus a user file":
        _fake_adapter(out, str(SRC / DEMO_DOCUMENT))
        assert is_demo_adapter(out)
        (out / "notes.txt").write_text("mine")
    elif case == "no metadata":
        _fake_adapter(out, str(SRC / DEMO_DOCUMENT))
        (out / META).unlink()
    elif case == "bad metadata":
        _fake_adapter(out, str(SRC / DEMO_DOCUMENT))
        (out / META).write_text("[not json")
    else:
        out.write_text("mine")
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()
    assert not is_demo_adapter(out) and clear_demo(out) is False
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()) == before
    with pytest.raises((FileExistsError, ValueError), match="not empty|is a file"):
        _learn_demo(tiny_dir, out)
    assert not is_demo_adapter(tmp_path / "absent") and clear_demo(tmp_path / "absent") is False


def _meta(capped: bool) -> dict:
    return {"check": "cloze", "checks_right": [0, 1], "check_f1_before": 0.0, "check_f1_after": 0.1,
            "documents": [{"document": "page.txt", "capped": capped}], "seconds": {}}


def test_learn_says_raise_max_steps_when_the_step_cap_stopped_training():
    checks = [{"question": f"q{i}?", "expected": "a", "before": "", "after": ""} for i in range(4)]
    capped = " ".join(report_lines(_meta(True), checks))
    assert "answers only 1 of 4" in capped and "raise --max-steps" in capped and "more --epochs" not in capped
    assert "step cap stopped training on page.txt" in capped
    free = " ".join(report_lines(_meta(False), checks))
    assert "learn with more --epochs" in free and "--max-steps" not in free


def test_the_product_modules_import_no_experiment_runner():
    runners = ("selfadapt.knowledge.experiment", "selfadapt.knowledge.continual")
    code = f"import sys, selfadapt.teaching, selfadapt.answering; print([m for m in {runners} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
