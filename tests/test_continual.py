"""Continual self-adaptation on the tiny model: merged updates accumulate, the matrix is filled
row by row, replay draws only from earlier updates, and a killed sequence resumes."""

import json
import random
from pathlib import Path

import pytest
import torch

from selfadapt.knowledge.continual import ContinualConfig, replay_examples, run_continual_eval
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.runs import Run

TEXTS = ["The Mongol army seized the town of Otrar in 1219.", "Molten silver was poured into the ears of Inalchuq.",
         "Genghis Khan ordered Subutai and Jebe to hunt the Shah.", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture()
def three_passages(tmp_path):
    path = tmp_path / "three.json"
    path.write_text(json.dumps([{"title": f"T{i}", "context": t, "questions": [{"question": "What happened?",
                                                                                "answer": t.split()[1]}]}
                                for i, t in enumerate(TEXTS[:3])]))
    return path


@pytest.fixture()
def cfg(tiny_dir, three_passages, tmp_path):
    return ContinualConfig(model=str(tiny_dir), dataset=str(three_passages), passages=3,
                           conditions=["passage", "passage+replay"], replay=2, general=1,
                           lora=LoRAConfig(r=4, epochs=2, lr=1e-2), dtype="float32", device="cpu",
                           runs_dir=str(tmp_path / "runs"))


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_merged_updates_change_the_weights_and_accumulate(tiny):
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=2, lr=1e-2))
    w0 = weights(lora.model)
    lora.train(TEXTS[:1], seed=0)
    first = lora.update()
    lora.merge()
    w1 = weights(lora.model)
    assert any(not torch.equal(w0[n], w1[n]) for n in w0)
    assert all(float(p.detach().abs().sum()) == 0 for n, p in lora.model.named_parameters() if "lora_B" in n)
    lora.reset()  # a reset zeroes the adapter; the merged update stays
    assert all(torch.equal(w1[n], v) for n, v in weights(lora.model).items())
    lora.train(TEXTS[1:2], seed=1)
    lora.merge()
    w2 = weights(lora.model)
    assert any(not torch.equal(w1[n], w2[n]) for n in w1)

    # Replaying a saved update on a fresh base reproduces the merged weights (how a run resumes).
    fresh = ResidentLoRA(type(tiny.model)(tiny.model.config), tiny.tokenizer, LoRAConfig(r=4))
    fresh.model.load_state_dict(w0, strict=False)
    fresh.merge(first)
    for n, v in weights(fresh.model).items():
        assert torch.allclose(v, w1[n], atol=1e-6), n


def test_replay_draws_only_from_the_history_it_is_given():
    history = [[f"u{i}-{k}" for k in range(3)] for i in range(4)]
    rng = random.Random(0)
    for i in range(5):
        got = replay_examples(history[:i], 2, rng)
        assert len(got) == min(2, 3 * i)
        assert all(int(ex.split("-")[0][1:]) < i for ex in got)


def test_matrix_is_filled_row_by_row_and_replay_comes_from_earlier_updates(cfg):
    run, summary = run_continual_eval(cfg)
    keys = [r["key"] for r in run.records() if r["key"].startswith("passage/")]
    assert keys == ["passage/update-0", "passage/after-0/p0",
                    "passage/update-1", "passage/after-1/p0", "passage/after-1/p1",
                    "passage/update-2", "passage/after-2/p0", "passage/after-2/p1", "passage/after-2/p2"]
    for cond in cfg.conditions:
        s = summary["conditions"][cond]
        assert s["complete"]
        m = s["matrix"]
        assert len(m) == 3 and all(len(row) == 3 for row in m)
        assert all((m[i][j] is None) == (j > i) for i in range(3) for j in range(3))
    updates = [r for r in run.records() if r["condition"] == "passage+replay" and r["key"].endswith(tuple("012"))
               and "/update-" in r["key"]]
    assert [len(u["extra"]) for u in updates] == [1, 2, 3]  # general example + what earlier updates can give
    for i, u in enumerate(updates):
        earlier = {json.dumps(ex) for e in updates[:i] for ex in e["examples"]}
        replayed = [ex for ex in u["extra"] if isinstance(ex, str)]  # general examples are (prompt, answer) pairs
        assert len(replayed) == min(2, len(earlier)) and {json.dumps(ex) for ex in replayed} <= earlier
    for name in ("table.md", "metrics.json", "matrices.png", "config.yaml"):
        assert (run.path / name).is_file(), name
    assert (run.path / "updates" / "passage" / "update-2.safetensors").is_file()


def test_a_killed_sequence_resumes_without_redoing_anything(cfg, monkeypatch):
    cfg.conditions = ["passage"]
    real_append, real_train, appended = Run.append, ResidentLoRA.train, []

    def dies_after_five(self, key, record):
        if len(appended) == 3 + 5:  # 3 base records, then update-0, after-0, update-1, after-1 ×2
            raise KeyboardInterrupt
        appended.append(key)
        real_append(self, key, record)

    monkeypatch.setattr(Run, "append", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        run_continual_eval(cfg)
    monkeypatch.setattr(Run, "append", real_append)
    trained = []
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, *a, **k: trained.append(1) or real_train(self, *a, **k))
    (path,) = Path(cfg.runs_dir).iterdir()
    run, summary = run_continual_eval(cfg, resume=path)
    keys = [r["key"] for r in run.records()]
    assert keys[: len(appended)] == appended and len(keys) == len(set(keys)) == 3 + 3 + 6
    assert len(trained) == 1  # only update 2 was left
    assert summary["conditions"]["passage"]["complete"]


def test_a_run_whose_update_files_are_gone_retrains_them_from_its_records(cfg, monkeypatch):
    """Update weights are not kept in git: a clone resumes an unfinished sequence by training each
    finished update again on the examples (replay included) its record holds, with the same seed;
    no score is redone."""
    from selfadapt.knowledge.continual import _examples

    cfg.conditions = ["passage+replay"]
    run, _ = run_continual_eval(cfg)
    lines = (run.path / "records.jsonl").read_text().splitlines(keepends=True)
    (run.path / "records.jsonl").write_text("".join(lines[:-1]))  # killed before the last evaluation
    before = Run.resume(run.path, cfg).records()
    for f in (run.path / "updates").rglob("*.safetensors"):
        f.unlink()
    trained = []
    real_train = ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **k: trained.append(ex) or real_train(self, ex, **k))
    import selfadapt.knowledge.continual as continual

    monkeypatch.setattr(continual, "replay_examples", lambda *a, **k: pytest.fail("drew the replay again"))
    again, _ = run_continual_eval(cfg, resume=run.path)
    recorded = [r for r in before if r["key"].startswith("passage+replay/update-")]
    assert any(r["extra"] for r in recorded)
    assert trained == [_examples(r["examples"]) + _examples(r["extra"]) for r in recorded]
    assert again.records()[:-1] == before and again.records()[-1]["key"] == json.loads(lines[-1])["key"]
    assert len(list((run.path / "updates").rglob("*.safetensors"))) == len(recorded)


def test_a_finished_run_resumes_without_loading_or_training_anything(cfg, monkeypatch):
    """A finished sequence cloned without its update weights redoes nothing (no model state is needed)."""
    import selfadapt.knowledge.continual as continual

    cfg.conditions = ["passage"]
    run, summary = run_continual_eval(cfg)
    for f in (run.path / "updates").rglob("*.safetensors"):
        f.unlink()
    monkeypatch.setattr(continual, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    again, summary_again = run_continual_eval(cfg, resume=run.path)
    assert again.records() == run.records() and summary_again == summary
