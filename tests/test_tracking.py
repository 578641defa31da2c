"""Experiment trackers, read back from their own stores: TensorBoard's event files, W&B's offline
run file and trackio's SQLite store hold the same numbers, at the same steps of the same axes, as
the run's records and metrics: for `eval knowledge`, `train knowledge`, `rrr train` and `learn`,
each run from the command line with ``--report-to`` after the subcommand."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfadapt.cli import app

pytest.importorskip("tensorboard")
pytest.importorskip("wandb", reason="wandb is an optional tracker (pip install 'selfadapt[trackers]')")
pytest.importorskip("trackio", reason="trackio is an optional tracker (pip install 'selfadapt[trackers]')")

PROJECT = "selfadapt-tests"
REPORT = ["--report-to", "tensorboard", "--report-to", "wandb", "--report-to", "trackio", "--project", PROJECT]
AXES = ("item", "round", "policy_sft_step", "grpo_step", "learn_step", "document", "table")


def wandb_history(run_dir: Path) -> list[dict]:
    """The history rows of a W&B offline run: its ``.wandb`` file is a LevelDB-style log (32 KiB
    blocks of CRC, length and type headers) of ``Record`` protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, block, rows, pending = path.read_bytes(), 7, 32768, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7 or data[pos:pos + 7] == bytes(7):  # a block's zero-filled tail
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or a record's last part
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def stores(run_dir: Path, name: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per tracker: each tag's (step, value) points, in the order logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from trackio.sqlite_storage import SQLiteStorage

    out: dict[str, dict[str, list[tuple[int, float]]]] = {"tensorboard": {}, "wandb": {}, "trackio": {}}
    events = EventAccumulator(str(run_dir / "tensorboard" / name))
    events.Reload()
    for tag in events.Tags()["scalars"]:
        out["tensorboard"][tag] = [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)]
    for row in wandb_history(run_dir):
        (axis,) = [a for a in AXES if a in row]
        for tag, value in row.items():
            if tag not in AXES and not tag.startswith("_"):
                out["wandb"].setdefault(tag, []).append((row[axis], value))
    for entry in SQLiteStorage.get_logs(PROJECT, name):
        for tag, value in entry.items():
            if tag not in ("step", "timestamp"):
                out["trackio"].setdefault(tag, []).append((entry["step"], value))
    return out


def read_back(run_dir: Path, name: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """The points every one of the three trackers holds, checked to be the same in each."""
    held = stores(run_dir, name or run_dir.name)
    assert held["tensorboard"], "nothing reached TensorBoard"
    assert held["wandb"] == held["tensorboard"]
    assert held["trackio"] == held["tensorboard"]
    return held["wandb"]


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def invoke(args: list[str]) -> None:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)


def only_run(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def test_eval_knowledge_mirrors_each_record_and_its_table(tiny_dir, passages_file, tmp_path):
    invoke(["eval", "knowledge", "--model", str(tiny_dir), "--dataset", str(passages_file), "--passages", "2",
            "--no-control", "--no-external", "--no-own", "--runs-dir", str(tmp_path / "runs"), "--device", "cpu",
            "--dtype", "float32", "--epochs", "1", "--r", "4", "--set", "answer_max_new_tokens=6", *REPORT])
    run = only_run(tmp_path / "runs")
    held = read_back(run)
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    passage_form = "passage+form"  # form equalized by default
    for condition in ("base", passage_form):  # named by what they measure: exact match, not "score"
        scores = [r["score"] for r in records if r["condition"] == condition]
        assert held[f"{condition}/exact_match"] == [(n, pytest.approx(s)) for n, s in enumerate(scores)]
    passage = [r for r in records if r["condition"] == passage_form]
    assert held[f"{passage_form}/exact_match_gain"] == [(n, pytest.approx(r["gain"])) for n, r in enumerate(passage)]
    rows = json.loads((run / "metrics.json").read_text())["rows"]
    row = next(r for r in rows if r["condition"] == passage_form)
    assert held[f"table/{passage_form}/exact_match"] == [(0, pytest.approx(row["score"]))]
    assert not any("/score" in tag or "history" in tag for tag in held)


def test_train_knowledge_logs_each_round_and_its_policy_sft(tiny_dir, passages_file, tmp_path, monkeypatch):
    import selfadapt.restem as restem

    # every self-edit a winner: the tiny model earns no reward, and the SFT must run to be logged
    monkeypatch.setattr(restem, "select_winners", lambda rewards, keep: {i: sorted(r) for i, r in rewards.items()})
    invoke(["train", "knowledge", "--model", str(tiny_dir), "--dataset", str(passages_file), "--format",
            "implications", "--no-grounded", "--rounds", "2", "--passages", "2", "--selfedits", "2", "--seeds", "1",
            "--max-new-tokens", "12", "--r", "4", "--epochs", "1", "--sft-epochs", "1", "--sft-r", "4",
            "--dtype", "float32", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), *REPORT])
    run = only_run(tmp_path / "runs")
    held = read_back(run)
    rounds = [json.loads((run / f"round-{r}" / "metrics.json").read_text()) for r in (0, 1)]
    assert held["restem/mean_reward"] == [(r, pytest.approx(m["mean_reward"])) for r, m in enumerate(rounds)]
    assert held["restem/mean_adapted_exact_match"] == [(r, pytest.approx(m["mean_adapted_score"]))
                                                       for r, m in enumerate(rounds)]
    for r, m in enumerate(rounds):
        losses = m["sft"]["losses"]
        assert losses and held[f"round{r}/policy_sft/loss"] == [(n, pytest.approx(v)) for n, v in
                                                                  enumerate(losses, 1)]
    assert "round1/selfedit/exact_match" in held


def test_rrr_train_logs_every_grpo_step_into_the_runs_tracker(tiny_dir, tmp_path):
    from selfadapt.rrr.tasks import CountdownTask

    failures = tmp_path / "failures.jsonl"
    failures.write_text("".join(json.dumps({"task": "countdown", "id": q["id"], "query": q, "attempt": "no"}) + "\n"
                                for q in CountdownTask(pool=40).queries("train", 2)))
    invoke(["rrr", "train", str(failures), "--model", str(tiny_dir), "--generations", "2", "--queries-per-step", "1",
            "--steps", "2", "--reflection-tokens", "4", "--retry-tokens", "4", "--lora-r", "2", "--dtype",
            "float32", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), *REPORT])
    run = only_run(tmp_path / "runs")
    held = read_back(run)
    history = json.loads((run / "metrics.json").read_text())["history"]
    steps = [h for h in history if "reward" in h]
    assert [s for s, _ in held["grpo/reward"]] == [1, 2]
    assert held["grpo/reward"] == [(n, pytest.approx(h["reward"])) for n, h in enumerate(steps, 1)]
    assert "grpo/loss" in held and not (run / "checkpoints" / "runs").exists()  # TRL opened no tracker of its own


def test_learn_logs_its_loss_per_step_and_each_document(tiny_dir, tmp_path):
    doc = tmp_path / "otrar.txt"
    doc.write_text("The Mongol army seized the town of Otrar in 1219. Genghis Khan ordered Subutai and Jebe to "
                   "hunt the Shah, who fled to an island in the Caspian Sea in 1220.")
    out = tmp_path / "adapter"
    invoke(["learn", str(doc), "--out", str(out), "--model", str(tiny_dir), "--no-probe", "--distill", "0",
            "--reading", "0", "--r", "4", "--epochs", "2", "--dtype", "float32", "--device", "cpu", *REPORT])
    (name,) = [p.name for p in (out / "tensorboard").iterdir()]  # learn-adapter-<time>
    held = read_back(out, name)
    meta = json.loads((out / "selfadapt.json").read_text())
    (document,) = meta["documents"]
    assert [s for s, _ in held["learn/loss"]] == list(range(1, document["steps"] + 1))
    last_epoch = [loss for _, loss in held["learn/loss"][document["steps"] // 2:]]  # 2 epochs, no step cap
    assert document["final_loss"] == pytest.approx(sum(last_epoch) / len(last_epoch), rel=1e-5)
    assert held["learn/document/final_loss"] == [(0, pytest.approx(document["final_loss"]))]
    assert held["learn/checks_right_after"] == [(0, meta["checks_right"][1])]


def test_a_tracker_is_named_from_accelerates_list_and_must_be_installed(tmp_path):
    from selfadapt import tracking

    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'; choose from none, .*tensorboard"):
        tracking.configure(["tensorbord"])
    if "mlflow" not in {str(t) for t in __import__("accelerate.tracking").tracking.get_available_trackers()}:
        with pytest.raises(ValueError, match="'mlflow' is not installed: pip install mlflow"):
            tracking.configure(["mlflow"])
    tracking.configure(["none"])
    assert tracking.report_to() == []
    (tmp_path / "doc.txt").write_text("Otrar fell in 1219.")
    res = CliRunner().invoke(app, ["learn", str(tmp_path / "doc.txt"), "--out", str(tmp_path / "out"),
                                   "--report-to", "tensorbord"])
    assert res.exit_code == 2 and "unknown tracker" in res.output and "Traceback" not in res.output


def test_a_resumed_run_continues_each_conditions_axis_and_a_failing_tracker_never_stops_it(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from selfadapt import tracking
    from selfadapt.runs import Run

    tracking.configure(["tensorboard"])
    try:
        run = Run.create(tmp_path, "t", {"a": 1})
        run.append("k0", {"condition": "passage", "score": 0.5})
        run.tracker.close()
        again = Run.resume(run.path, {"a": 1})
        again.append("k1", {"condition": "passage", "score": 1.0})
        (board,) = again.tracker.trackers
        board.log = lambda *a, **kw: 1 / 0
        again.append("k2", {"condition": "passage", "score": 0.0})  # logged nowhere, recorded all the same
        again.tracker.close()
    finally:
        tracking.configure([])
    assert [r["key"] for r in Run.resume(run.path, {"a": 1}).records()] == ["k0", "k1", "k2"]
    assert "could not log passage/score (division by zero); the run goes on" in caplog.text
    events = EventAccumulator(str(run.path / "tensorboard" / run.path.name))
    events.Reload()
    assert sorted((e.step, e.value) for e in events.Scalars("passage/score")) == [(0, 0.5), (1, 1.0)]
