import json

import pytest

from selfadapt.domain import InvalidSelfEdit
from selfadapt.knowledge.domain import CPTDomain, KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.lora import LoRAConfig


def test_cpt_joins_all_passages_data(tiny, passages):
    cpt = CPTDomain(KnowledgeDomain(tiny.tokenizer, "implications"))  # its self-edits are implications
    items = tuple(passages)
    assert cpt.item_id(items) == "cpt2"
    assert cpt.training_examples(items, None) == [p.text for p in passages]
    texts = cpt.training_examples(items, ["1. The Shah fled from the Mongols.", ""])
    assert texts == [passages[0].text, "Genghis Khan\nThe Shah fled from the Mongols.", passages[1].text]
    with pytest.raises(InvalidSelfEdit, match="every self-edit is invalid"):
        cpt.training_examples(items, ["", "nope"])


def test_cpt_evaluates_all_questions_after_one_update(tiny_dir, passages_file, passages, tmp_path):
    ext = tmp_path / "ext.json"
    ext.write_text(json.dumps([{"context": p.context, "completions": [f"1. {p.context}"], "format": "implications"}
                               for p in passages]))
    cfg = KnowledgeEvalConfig(model=str(tiny_dir), dataset=str(passages_file), passages=2, external=[str(ext)],
                              cpt=True, max_new_tokens=8, answer_max_new_tokens=4, lora=LoRAConfig(r=4, epochs=1),
                              dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"),
                              form=False)  # the paper's CPT setting, with the format control beside it
    run, rows = run_knowledge_eval(cfg)
    evals = [r for r in run.records() if r["condition"] == "ext"]
    assert len(evals) == 1 and evals[0]["item"] == "cpt2"
    assert len(evals[0]["records"]) == 3  # every question of both passages
    assert evals[0]["train"]["sequences"] == 4  # two passages + one implication each
    assert [r["condition"] for r in rows] == ["base", "recital", "passage", "format-control", "open-book",
                                              "open-book+form", "own-self-qa-grounded", "ext"]
    (book,) = [r for r in run.records() if r["condition"] == "open-book"]
    assert book["item"] == "cpt2" and len(book["records"]) == 3  # no update, every question read in its passage
    assert all(r["items"] == 1 for r in rows)
    (fmt,) = [r for r in run.records() if r["condition"] == "format-control"]
    assert fmt["train"]["sequences"] > 2  # both passages, plus the pairs of another passage for each
    (recital,) = [r for r in run.records() if r["condition"] == "recital"]
    assert recital["item"] == "cpt2" and len(recital["records"]) == 3
