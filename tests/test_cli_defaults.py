"""One declaration per setting: every command's options take their default (and help) from its
config dataclass, so the CLI, a ``--config`` file and the Python API cannot drift apart. The
runners are replaced by a capture: no model is loaded."""

import inspect

import pytest
from typer.testing import CliRunner

from selfadapt.answering import AskConfig
from selfadapt.arc.experiment import ArcEvalConfig, ArcSettings, ArcTrainConfig
from selfadapt.cli import app
from selfadapt.knowledge.continual import ContinualConfig
from selfadapt.knowledge.experiment import KnowledgeEvalConfig
from selfadapt.knowledge.train import KnowledgeTrainConfig
from selfadapt.restem import ReSTEMConfig
from selfadapt.rrr.experiment import FailuresConfig, ProbeConfig, RRREvalConfig, RRRTrainConfig
from selfadapt.teaching import LearnConfig
from selfadapt.workers import Parallel

runner = CliRunner()


class Captured(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """What each runner is called with, instead of running it."""
    import selfadapt.answering as an
    import selfadapt.arc.experiment as ax
    import selfadapt.knowledge.continual as kc
    import selfadapt.knowledge.experiment as ke
    import selfadapt.knowledge.train as kt
    import selfadapt.rrr.experiment as rx
    import selfadapt.teaching as te

    seen = {}

    def capture(name):
        def runner_(*args, **kwargs):
            seen[name] = (*args, *kwargs.values())
            raise Captured

        return runner_

    for module, fn, name in [(ke, "run_knowledge_eval", "eval knowledge"),
                             (kt, "run_knowledge_training", "train knowledge"),
                             (kc, "run_continual_eval", "eval continual"), (ax, "run_arc_eval", "eval arc"),
                             (ax, "run_arc_training", "train arc"), (rx, "run_build_failures", "rrr build-failures"),
                             (rx, "run_rrr_probe", "rrr probe"), (rx, "run_rrr_train", "rrr train"),
                             (rx, "run_rrr_eval", "rrr eval"), (te, "learn", "learn"), (an, "ask", "ask")]:
        monkeypatch.setattr(module, fn, capture(name))
    return seen


EXPECTED = {
    "eval knowledge": (KnowledgeEvalConfig(),),
    "train knowledge": (ReSTEMConfig(), KnowledgeTrainConfig()),
    "eval continual": (ContinualConfig(),),
    "eval arc": (ArcEvalConfig(),),
    "train arc": (ArcTrainConfig(), ArcSettings(subset="training")),
    "rrr build-failures": (FailuresConfig(),),
    "rrr probe": (ProbeConfig(),),
    "rrr train": (RRRTrainConfig(failures=["f.jsonl"]),),
    "rrr eval": (RRREvalConfig(),),
    "learn": (LearnConfig(),),
    "ask": (AskConfig(),),
}
ARGS = {"rrr train": ["f.jsonl"], "learn": ["doc.txt", "-o", "out"], "ask": ["Who?"]}


@pytest.mark.parametrize("command", list(EXPECTED))
def test_a_command_without_flags_runs_its_configs_defaults(command, captured):
    args = command.split() + ARGS.get(command, [])
    res = runner.invoke(app, args)
    assert command in captured, res.output
    got = [a for a in captured[command] if hasattr(a, "__dataclass_fields__") and not isinstance(a, Parallel)]
    assert got == list(EXPECTED[command])


def _commands(group, prefix=()):
    import typer.main

    for name, cmd in typer.main.get_command(group).commands.items():
        if hasattr(cmd, "commands"):
            for sub_name, sub in cmd.commands.items():
                yield " ".join((*prefix, name, sub_name)), sub
        else:
            yield " ".join((*prefix, name)), cmd


# Options that are no setting of an experiment: where it runs and writes, what it resumes or reads, the
# file of settings.
RUN_OPTIONS = {"config", "set_", "out", "adapter", "resume", "workers", "ray_address", "gpus_per_worker", "no_control",
               "no_external"}


@pytest.mark.parametrize("name, command", list(_commands(app)), ids=[n for n, _ in _commands(app)])
def test_every_option_is_a_config_field(name, command):
    """An option is made from its config field (``configfile.opt``), or it is about the run, not the
    experiment; arguments (files, questions) are the input, not a setting."""
    params = inspect.signature(inspect.unwrap(command.callback)).parameters
    loose = [p for p, spec in params.items() if type(spec.default).__name__ == "OptionInfo"
             and not getattr(spec.default, "field", None) and p not in RUN_OPTIONS]
    assert not loose, f"{name}: options not declared in a config dataclass: {loose}"


def test_an_option_shows_its_fields_help(captured):
    res = runner.invoke(app, ["train", "arc", "--help"], env={"COLUMNS": "200"})
    assert "every self-edit that solved its task" in res.output  # ArcTrainConfig.keep's help
    assert "[default: positive]" in res.output

