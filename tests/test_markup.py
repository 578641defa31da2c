"""Issue 45, item 6: rich markup never eats text of ours or of the user. "selfadapt[documents]" in a
message, "selfadapt[vllm]" in an option's help and a file name with brackets print as they are."""

import shutil
import sys

import typer
from typer.testing import CliRunner

from selfadapt.cli import app

runner = CliRunner()


def test_the_install_hint_keeps_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "markitdown", None)  # MarkItDown not installed
    doc = tmp_path / "report[final].pdf"
    doc.write_bytes(b"%PDF-1.4\n")
    res = runner.invoke(app, ["learn", str(doc), "--out", str(tmp_path / "out")], terminal_width=200)
    assert res.exit_code == 2, res.output
    joined = "".join(res.output.split())  # the console may wrap a long path
    assert f"{doc}:reading.pdffilesneedsMarkItDown:pipinstall'selfadapt[documents]'" in joined


def test_every_help_text_shows_its_brackets():
    """Each option's help and each command's docstring, as --help renders it: every "[...]" in the
    source text is on the screen (rich would read "[vllm]" as a style and drop it)."""
    command = typer.main.get_command(app)
    checked = 0

    def walk(cmd, path):
        nonlocal checked
        texts = [p.help for p in getattr(cmd, "params", []) if getattr(p, "help", None)]
        texts += [cmd.help] if cmd.help else []
        if any("[" in t for t in texts):
            out = "".join(runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output.split())
            for t in texts:
                for part in t.replace("\\[", "[").split("[")[1:]:
                    bracketed = "".join(("[" + part.split("]")[0] + "]").split())  # wrapping aside
                    assert bracketed in out, (path, bracketed)
                    checked += 1
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(command, [])
    assert checked >= 5  # --backend of eval/train knowledge and arc, rrr train


def test_the_backend_help_names_the_vllm_extra():
    out = "".join(runner.invoke(app, ["eval", "knowledge", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "(theextraselfadapt[vllm];" in out


def test_a_path_with_brackets_prints_as_it_is(tiny_dir, tmp_path):
    model = tmp_path / "model[v2]"
    shutil.copytree(tiny_dir, model)
    res = runner.invoke(app, ["model", str(model), "--dtype", "float32", "--device", "cpu"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    joined = "".join(res.output.split())
    assert f"path:{model}" in joined and f"{model}:llama" in joined


def test_a_progress_description_keeps_its_brackets():
    from selfadapt.evaluate import progress_bar

    bar = progress_bar()
    bar.add_task("report[final].txt: training", total=2)
    assert str(bar.columns[0].render(bar.tasks[0])) == "report[final].txt: training"
