"""`--config FILE.yaml`: file < flag, unknown keys name the key and the file, a run's own
config.yaml re-runs it. The runners are replaced by a capture: only the resolved config is
checked, no model is loaded."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfadapt.cli import app
from selfadapt.runs import plain

runner = CliRunner()


@pytest.fixture
def captured(monkeypatch):
    """The config each runner is called with, instead of running it."""
    seen = {}

    class Captured(Exception):
        pass

    def capture(name):
        def runner_(cfg, *args, **kwargs):
            seen[name] = (cfg, args)
            raise Captured

        return runner_

    import selfadapt.arc.experiment as ax
    import selfadapt.knowledge.experiment as ke
    import selfadapt.knowledge.train as kt
    import selfadapt.rrr.experiment as rx

    monkeypatch.setattr(ke, "run_knowledge_eval", capture("eval knowledge"))
    monkeypatch.setattr(kt, "run_restem", capture("train knowledge"))
    monkeypatch.setattr(rx, "run_rrr_probe", capture("rrr probe"))
    monkeypatch.setattr(ax, "run_arc_training", capture("train arc"))
    monkeypatch.setattr(rx, "run_rrr_train", capture("rrr train"))
    return seen


def invoke(args):
    res = runner.invoke(app, args)
    res.text = " ".join(res.output.replace("│", " ").split())  # without rich's box and wrapping
    return res


def test_file_sets_settings_and_flags_override_it(tmp_path, captured):
    f = tmp_path / "k.yaml"
    f.write_text("dataset: train\npassages: 3\nlr: 3e-4\nepochs: 2\nformat: implications\ncontrol: [format, gold-qa]\n"
                 "columns: {context: passage}\nlora: {max_length: 256}\n")
    invoke(["eval", "knowledge", "--config", str(f), "--epochs", "5", "--no-external"])
    cfg, _ = captured["eval knowledge"]
    assert cfg.passages == 3 and cfg.formats == ["implications"] and cfg.controls == ["format", "gold-qa"]
    assert cfg.lora.lr == 3e-4 and isinstance(cfg.lora.lr, float)
    assert cfg.lora.epochs == 5  # the flag wins over the file
    assert cfg.lora.max_length == 256  # a field without a flag
    assert cfg.columns == {"context": "passage"} and cfg.external == []
    # a flag equal to the built-in default still beats the file
    invoke(["eval", "knowledge", "--config", str(f), "--lr", "0.001"])
    assert captured["eval knowledge"][0].lora.lr == 0.001


@pytest.mark.parametrize("text, key", [("passages: 3\nrounds: 2\n", "rounds"), ("lora: {rank: 4}\n", "lora.rank")])
def test_unknown_key_names_the_key_and_the_file(tmp_path, captured, text, key):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    res = invoke(["eval", "knowledge", "--config", str(f)])
    assert res.exit_code == 2
    assert f"bad.yaml: unknown key '{key}'" in res.text
    assert "eval knowledge" not in captured


def test_missing_or_malformed_file(tmp_path, captured):
    res = invoke(["eval", "knowledge", "--config", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "none.yaml: no such file" in res.text
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    res = invoke(["eval", "knowledge", "--config", str(tmp_path / "list.yaml")])
    assert res.exit_code == 2 and "mapping" in res.text


@pytest.mark.parametrize("command, args", [
    ("eval knowledge", ["eval", "knowledge", "--passages", "4", "--offset", "7", "--lr", "0.0003", "--epochs", "3",
                        "--format", "self-qa", "--format", "implications", "--control", "gold-qa", "--dataset", "train",
                        "--no-external", "--targets", "q_proj,v_proj", "--selfedits", "2", "--seed", "3"]),
    ("train knowledge", ["train", "knowledge", "--rounds", "3", "-c", "4", "-k", "2", "--no-form-equalized",
                         "--reward-baseline", "passage",
                         "--format", "implications", "--no-grounded", "--sft-r", "8", "--lr", "0.0003",
                         "--continue-policy", "--columns", "context=passage,question=q"]),
    ("rrr probe", ["rrr", "probe", "--task", "countdown:numbers=2", "--task", "countdown", "--queries", "9",
                   "--retry-temperature", "0.5"]),
    ("rrr train", ["rrr", "train", "a/failures.jsonl", "b/failures.jsonl", "--steps", "3", "-G", "6",
                   "--reward", "retry=1", "--reward", "laser=0.5", "--lora-r", "0", "--beta", "0"]),
])
def test_a_runs_saved_config_reruns_it(tmp_path, captured, command, args):
    if command == "train knowledge":  # the pool is read before the run starts: a tiny file of our own
        import json

        (tmp_path / "pool.json").write_text(json.dumps([{"title": f"t{i}", "passage": f"Text {i}.",
                                                          "questions": [{"q": "Q?", "answer": "A"}]}
                                                         for i in range(6)]))
        args = [*args, "--dataset", str(tmp_path / "pool.json")]
    invoke(args)
    saved = plain(captured.pop(command)[0])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    res = invoke([*args[:2], "--config", str(tmp_path / "config.yaml")] if command != "rrr train"
                 else ["rrr", "train", "--config", str(tmp_path / "config.yaml")])
    assert command in captured, res.text
    assert plain(captured[command][0]) == saved


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_loads_for_its_command(path, captured):
    """Each example names its command on a first-line comment and resolves without unknown keys."""
    words = path.read_text().splitlines()[0].lstrip("# ").split()
    assert words[0] == "selfadapt"
    command = " ".join(words[1:3])
    args = [*words[1:3], *(["runs/failures.jsonl"] if command == "rrr train" else []), "--config", str(path)]
    res = invoke(args)
    assert command in captured, res.text
    cfg = captured[command][0]
    settings = yaml.safe_load(path.read_text())
    if "model" in settings:
        assert cfg.model == settings["model"]


def test_set_reaches_a_nested_setting_and_is_checked(tmp_path, captured):
    """``--set KEY=VALUE``: any field, dotted for a nested config, typed as its field, checked as
    the constructor checks it; a wrong key or value is one line naming it."""
    invoke(["eval", "knowledge", "--set", "lora.max_length=256", "--set", "lora.lr=3e-4", "--set", "passages=3",
            "--no-external"])
    cfg, _ = captured.pop("eval knowledge")
    assert (cfg.lora.max_length, cfg.lora.lr, cfg.passages) == (256, 3e-4, 3)
    for bad, says in [("lora.rank=4", "--set: unknown key 'lora.rank' for `selfadapt eval knowledge`"),
                      ("lora.epochs=many", "--set: key 'lora.epochs': expected int"),
                      ("lora.max_batch_tokens=16", "max_batch_tokens must be >= max_length"),
                      ("passages", "expected KEY=VALUE")]:
        res = invoke(["eval", "knowledge", "--set", bad])
        assert res.exit_code == 2 and says in res.text, (bad, res.text)
        assert "eval knowledge" not in captured


def test_a_nested_key_sets_its_own_section_not_a_namesake(tmp_path, captured):
    """``train arc`` has --sft-lr but no --lr: a file's ``lora: {lr: ...}`` is the inner loop's
    learning rate, never the policy SFT's, and a top-level ``lr`` is not a setting of it."""
    f = tmp_path / "arc.yaml"
    f.write_text("lora: {lr: 0.005, epochs: 7, r: 8}\nsft: {epochs: 2}\n")
    invoke(["train", "arc", "--config", str(f)])
    cfg, _ = captured.pop("train arc")
    assert (cfg.lora.lr, cfg.lora.epochs, cfg.lora.r) == (0.005, 7, 8)
    assert (cfg.sft.lr, cfg.sft.epochs, cfg.sft.r) == (3e-4, 2, 16)
    f.write_text("lr: 0.005\n")
    res = invoke(["train", "arc", "--config", str(f)])
    assert res.exit_code == 2 and "unknown key 'lr'" in res.text


def test_form_equalized_by_default_and_off_from_flags_and_files(tmp_path, passages_file, captured):
    """Form equalization (issue 46) is on by default in eval knowledge and train knowledge, where the reward
    subtracts passage+form; ``--no-form-equalized`` or a file's ``form: false`` gives SEAL's setting, and a
    reward baseline that contradicts the choice is refused."""
    invoke(["eval", "knowledge", "--control", "open-book"])
    cfg, _ = captured.pop("eval knowledge")
    assert cfg.form is True and cfg.controls == ["open-book"]
    invoke(["eval", "knowledge", "--no-form-equalized"])
    assert captured.pop("eval knowledge")[0].form is False
    invoke(["train", "knowledge", "--dataset", str(passages_file)])
    cfg, _ = captured.pop("train knowledge")
    assert cfg.reward_baseline == "passage+form" and cfg.domain["form"] is True
    f = tmp_path / "train.yaml"
    f.write_text("form: false\nreward_baseline: passage\n")
    invoke(["train", "knowledge", "--config", str(f), "--dataset", str(passages_file)])
    cfg, _ = captured.pop("train knowledge")
    assert cfg.reward_baseline == "passage" and cfg.domain["form"] is False
    res = invoke(["train", "knowledge", "--reward-baseline", "passage", "--dataset", str(passages_file)])
    assert res.exit_code == 2 and "--reward-baseline passage needs --no-form-equalized" in res.text
    res = invoke(["train", "knowledge", "--no-form-equalized", "--reward-baseline", "passage+form"])
    assert res.exit_code == 2 and "needs form equalization" in res.text
