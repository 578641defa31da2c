import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import selfadapt.workers as workers_mod
from selfadapt.evaluate import markdown_table, mean_ci, summarize
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.lora import LoRAConfig
from selfadapt.runs import Run, RunError, read_jsonl


@pytest.fixture()
def cfg(tiny_dir, passages_file, passages, tmp_path):
    ext = tmp_path / "ext.json"
    ext.write_text(json.dumps([{"context": p.context, "format": "implications",
                                "completions": [f"1. {p.context}\n2. Otrar is a town in Asia.",
                                                "- Otrar was seized by the Mongol army."]} for p in passages]))
    return KnowledgeEvalConfig(
        model=str(tiny_dir), dataset=str(passages_file), passages=2, external=[str(ext)], selfedits_per_passage=2,
        max_new_tokens=12, answer_max_new_tokens=6, formats=["implications"], decodings=["free"],
        lora=LoRAConfig(r=4, epochs=1), dtype="float32", controls=["format"],  # the ceilings: test_controls_form.py
        form=False,  # SEAL's setting, the format control beside passage-only; the default: test_controls_form.py
        device="cpu", runs_dir=str(tmp_path / "runs"))


def keys(run):
    return [r["key"] for r in run.records()]


def test_full_table(cfg):
    run, rows = run_knowledge_eval(cfg)
    assert [r["condition"] for r in rows] == ["base", "recital", "passage", "format-control", "own-implications",
                                              "ext"]
    own = rows[4]
    assert own["items"] == 2 and own["evaluations"] == 4
    assert own["invalid"] + own["nan_loss"] <= own["evaluations"]
    assert all(0 <= r["ci_low"] <= r["score"] <= r["ci_high"] <= 1 for r in rows)
    assert rows[5]["invalid"] == 0 and rows[5]["seconds"]["train"] > 0
    assert set(own["vs"]) == {"passage", "recital", "format-control"} and own["vs"]["passage"]["n"] == 2
    assert set(rows[2]["vs"]) == {"recital", "format-control"}  # never compared with itself
    for name in ("config.yaml", "records.jsonl", "metrics.json", "table.md", "accuracy.png", "paired.png"):
        assert (run.path / name).is_file(), name
    # base ×2, recital ×2, passage ×2, own: write ×2 + 2×2, external 2×2
    assert Counter(k.split("/")[0] for k in keys(run)) == {"base": 2, "recital": 2, "passage": 2,
                                                          "format-control": 2, "own-implications": 6, "ext": 4}
    table = (run.path / "table.md").read_text()
    assert table.startswith("| condition | exact_match % (95% CI) | Δ vs passage (95% CI) | W/T/L vs passage |")
    assert "| own-implications |" in table


def test_killed_run_resumes_without_redoing_anything(cfg, monkeypatch):
    calls = []
    real = workers_mod.evaluate_selfedit

    def dies_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # what a kill between two evaluations looks like
        calls.append(args[2].index)
        return real(*args, **kwargs)

    monkeypatch.setattr(workers_mod, "evaluate_selfedit", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_knowledge_eval(cfg)
    (path,) = Path(cfg.runs_dir).iterdir()
    first = keys(Run.resume(path, cfg))
    assert len(first) == 2 + 2 + 2 + 3  # base, recital, write, three evaluations

    resumed_calls = []
    monkeypatch.setattr(workers_mod, "evaluate_selfedit",
                        lambda *a, **k: resumed_calls.append(1) or real(*a, **k))
    run, rows = run_knowledge_eval(cfg, resume=path)
    final = keys(run)
    assert len(final) == len(set(final)) == 2 + 2 + 2 + 2 + 2 + 4 + 4  # + format control
    assert final[: len(first)] == first
    assert len(resumed_calls) == 12 - 3


def test_record_cut_short_by_a_kill_is_redone(cfg):
    run, _ = run_knowledge_eval(cfg)
    data = run.records_path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    run.records_path.write_bytes(data[: last_start + 20])  # half of the last line
    run2, _ = run_knowledge_eval(cfg, resume=run.path)
    final = keys(run2)
    assert len(final) == len(set(final)) == 18
    assert all(json.loads(line) for line in run2.records_path.read_text().splitlines())


def test_a_moved_run_resumes(cfg, tmp_path):
    run, _ = run_knowledge_eval(cfg)
    moved = tmp_path / "elsewhere" / run.path.name
    moved.parent.mkdir()
    run.path.rename(moved)
    cfg.runs_dir = str(moved.parent)
    again, _ = run_knowledge_eval(cfg, resume=moved)
    assert len(again.records()) == len(run.records())


def test_resume_refuses_a_different_config(cfg):
    run, _ = run_knowledge_eval(cfg)
    cfg.lora.lr = 5e-4
    with pytest.raises(RunError, match="config differs.*lora"):
        run_knowledge_eval(cfg, resume=run.path)


def test_a_policy_can_be_added_to_a_finished_evaluation(cfg, tiny_dir):
    """A ReST-EM round trained later joins the same table, paired with the same passage-only runs."""
    run, _ = run_knowledge_eval(cfg)
    before = run.records()
    cfg.policies = [str(tiny_dir)]
    again, rows = run_knowledge_eval(cfg, resume=run.path)
    assert again.records()[: len(before)] == before
    name = f"policy-{tiny_dir.name}"
    assert {name, f"{name}-base"} <= {r["condition"] for r in rows}
    assert next(r for r in rows if r["condition"] == name)["vs"]["passage"]["n"] == 2
    assert Run.resume(run.path, cfg).config["policies"] == [str(tiny_dir)]
    # A later policy alone on the command line: it is evaluated, and the earlier one stays in the table.
    cfg.policies = [f"later={tiny_dir}"]
    third, rows = run_knowledge_eval(cfg, resume=run.path)
    assert {name, "later", "later-base"} <= {r["condition"] for r in rows}
    assert third.records()[: len(again.records())] == again.records()
    assert third.config["policies"] == [str(tiny_dir), f"later={tiny_dir}"]


def test_a_setting_added_later_and_off_does_not_block_resume(tmp_path):
    run = Run.create(tmp_path, "x", {"a": 1, "domain": {"fmt": "self-qa"}})
    assert Run.resume(run.path, {"a": 1, "domain": {"fmt": "self-qa", "prior_prompt": None}, "new": None})
    with pytest.raises(RunError, match="config differs.*domain"):
        Run.resume(run.path, {"a": 1, "domain": {"fmt": "self-qa", "prior_prompt": "planning"}})


def test_two_runs_never_share_a_directory(tmp_path):
    a = Run.create(tmp_path, "x", {"a": 1})
    b = Run.create(tmp_path, "x", {"a": 1})
    assert a.path != b.path
    a.append("k", {"v": 1})
    with pytest.raises(RunError, match="already written"):
        a.append("k", {"v": 2})
    assert b.records() == []


def test_item_error_is_recorded_and_other_items_go_on(cfg, tmp_path, passages):
    p = passages[0]
    good = {"title": p.title, "context": p.context,
            "questions": [{"question": q.question, "answer": q.answer} for q in p.questions]}
    bad = tmp_path / "with_empty.json"
    bad.write_text(json.dumps([{"title": "Empty", "context": "No questions here.", "questions": []}, good]))
    cfg.dataset, cfg.external, cfg.own = str(bad), [], False
    run, rows = run_knowledge_eval(cfg)
    errors = [r for r in run.records() if r["status"] == "item_error"]
    assert {r["condition"] for r in errors} == {"base", "passage", "format-control"}
    assert all("passage 0 ('Empty') has no questions" in r["reason"] for r in errors)
    assert rows[2]["condition"] == "passage" and rows[2]["items"] == 1 and rows[2]["item_errors"] == 1
    assert rows[1]["condition"] == "recital" and rows[1]["items"] == 1


def test_records_with_unicode_line_separators_read_back_whole(tmp_path):
    """Model output can hold U+2028/U+0085, which json.dumps(ensure_ascii=False) leaves raw and
    str.splitlines would break a record at; every JSONL reader splits at "\\n" only."""
    text = "Q: where?\u2028A: here\x85\x1c end"
    run = Run.create(tmp_path, "x", {"a": 1})
    run.append("k", {"selfedit": text})
    run.append("k2", {"selfedit": "plain"})
    assert Run.resume(run.path, {"a": 1}).get("k")["selfedit"] == text
    assert [r["selfedit"] for _, r in read_jsonl(run.records_path)] == [text, "plain"]
    with open(run.records_path, "a", encoding="utf-8") as f:
        f.write('{"key": "k3", "self')  # a running job is writing its next line
    assert [n for n, _ in read_jsonl(run.records_path, partial_last=True)] == [1, 2]
    with pytest.raises(ValueError, match=r"records.jsonl: line 3: invalid JSON"):
        read_jsonl(run.records_path)


def test_a_run_stored_gzipped_reads_back_and_resumes(tmp_path):
    """Finished runs' records are kept gzipped in the repository (the tree travels to a GPU machine
    under a size limit): readers open ``records.jsonl.gz`` where ``records.jsonl`` is absent; a run
    opened to read leaves it packed, and the first new record unpacks it and appends as before."""
    run = Run.create(tmp_path, "x", {"a": 1})
    run.append("k", {"selfedit": "one\u2028two"})
    subprocess.run(["gzip", str(run.records_path)], check=True)
    packed = run.path / "records.jsonl.gz"
    assert not run.records_path.exists()
    assert [r["key"] for _, r in read_jsonl(run.records_path)] == ["k"]
    again = Run.resume(run.path, {"a": 1})
    assert again.done("k") and again.get("k")["selfedit"] == "one\u2028two"
    assert packed.exists() and not run.records_path.exists()  # opened to read: the tracked file stays
    again.append("k2", {"selfedit": "three"})
    assert [r["key"] for _, r in read_jsonl(run.records_path)] == ["k", "k2"]
    assert not packed.exists()  # one copy of the records, the one appended to


def test_a_damaged_or_doubled_gzipped_run_is_one_clear_error(tmp_path):
    run = Run.create(tmp_path, "x", {"a": 1})
    for i in range(50):
        run.append(f"k{i}", {"selfedit": "text " * 20})
    subprocess.run(["gzip", "-k", str(run.records_path)], check=True)
    packed = run.path / "records.jsonl.gz"
    Run.resume(run.path, {"a": 1}).append("more", {"selfedit": "x"})  # killed after unpacking, then resumed
    assert not packed.exists() and len(read_jsonl(run.records_path)) == 51  # the plain copy holds them all
    subprocess.run(["gzip", "-k", str(run.records_path)], check=True)
    run.records_path.write_text(run.records_path.read_text().split("\n", 1)[1])  # a copy without the first
    with pytest.raises(RunError, match="both records.jsonl and records.jsonl.gz, with different records"):
        Run.resume(run.path, {"a": 1})
    run.records_path.unlink()
    packed.write_bytes(packed.read_bytes()[: len(packed.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"records.jsonl.gz: not a complete gzip file"):
        read_jsonl(run.records_path)
    with pytest.raises(RunError, match=r"records.jsonl.gz: not a complete gzip file"):
        Run.resume(run.path, {"a": 1})


def test_mean_ci_and_summary():
    assert mean_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)
    m, lo, hi = mean_ci([0.0, 1.0] * 10)
    assert m == 0.5 and 0.2 < lo < 0.5 < hi < 0.8
    records = [{"condition": "c", "item": "p0", "status": "ok", "score": 1.0, "seconds": {"train": 2.0}},
               {"condition": "c", "item": "p0", "status": "invalid_selfedit", "score": 0.0, "seconds": {}},
               {"condition": "c", "item": "p1", "status": "ok", "score": 0.5, "seconds": {"train": 1.0}}]
    (row,) = summarize(records, ["c"])
    assert row["score"] == pytest.approx((0.5 + 0.5) / 2)  # self-edits of an item are averaged first
    assert (row["items"], row["evaluations"], row["invalid"], row["seconds"]["train"]) == (2, 3, 1, 3.0)
    assert "| c | 50.0" in markdown_table([row])


def test_a_run_made_before_amp_resumes_only_without_it(tmp_path):
    """Runs made before ``lora.amp`` existed computed adapters in fp32: resuming one with amp on
    would change its numbers mid-run, so it must be asked for with --no-amp."""
    run = Run.create(tmp_path, "x", {"lora": {"r": 8}})
    assert Run.resume(run.path, {"lora": {"r": 8, "amp": False}})
    with pytest.raises(RunError, match=r"lora\.amp: not in the saved config \(a run made before it used False\)"):
        Run.resume(run.path, {"lora": {"r": 8, "amp": True}})


def test_every_selfedit_of_an_item_shares_the_reference_lora_seed(tiny, passages, tmp_path):
    """Self-edit j used to train with seed + j, its passage-only reference with seed: with k
    identical self-edits the rewards then differed by initialisation noise alone."""
    from selfadapt.evaluate import Condition, run_conditions
    from selfadapt.generation import SamplingConfig
    from selfadapt.knowledge.domain import KnowledgeDomain
    from selfadapt.lora import ResidentLoRA

    domain = KnowledgeDomain(tiny.tokenizer, "implications", answer=SamplingConfig(4, 0.0))
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=2))
    edit = "1. The Mongol army seized Otrar.\n2. The Shah fled."
    conds = [Condition("passage"), Condition("own", {"p0": [edit, edit, edit]})]
    run = Run.create(tmp_path, "pairing", {})
    records = run_conditions(run, lora, domain, passages[:1], conds, seed=5, seeds=2)
    for s in range(2):
        ref = [r for r in records if r["condition"] == "passage" and r["seed"] == 5 + 1000 * s]
        own = [r for r in records if r["condition"] == "own" and r["seed"] == 5 + 1000 * s]
        assert len(ref) == 1 and len(own) == 3
        assert len({r["score"] for r in own}) == 1  # identical data, identical initialisation
    assert {r["seed"] for r in records if r["condition"] == "own"} == {5, 1005}


def test_a_self_qa_external_file_trains_qa_pairs(cfg, passages, tmp_path, monkeypatch):
    """External files were always parsed as implications: a self-QA file trained its "Q:" lines
    as loose sentences and dropped answers under four words."""
    from selfadapt.lora import ResidentLoRA

    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([{"context": p.context, "format": "self-qa",
                               "completions": ["Q: Which town was seized?\nA: Otrar"]} for p in passages]))
    seen, real = [], ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train",
                        lambda self, examples, **kw: seen.append(examples) or real(self, examples, **kw))
    cfg.external, cfg.own, cfg.selfedits_per_passage, cfg.controls = [str(qa)], False, 1, []
    run_knowledge_eval(cfg)
    pairs = [ex for examples in seen for ex in examples if isinstance(ex, tuple)]
    assert len(pairs) == 2 and all(a == "Otrar<|im_end|>" for _, a in pairs)  # one per passage


def test_an_invalid_selfedit_counts_as_zero_under_a_per_question_measure():
    """The table's measure is averaged from per-question values; an evaluation without any
    (an invalid self-edit) still counts with its reward, 0, not as a missing item."""
    recs = [{"condition": "own", "item": "p0", "status": "ok", "score": 0.9, "records": [{"m": 0.5}, {"m": 0.7}]},
            {"condition": "own", "item": "p1", "status": "invalid_selfedit", "score": 0.0, "records": []}]
    (row,) = summarize(recs, ["own"], metric="m")
    assert row["items"] == 2 and row["score"] == pytest.approx((0.6 + 0.0) / 2)
