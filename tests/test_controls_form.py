"""Issue 46: the open-book ceilings and form equalization (every update adds the format control's pairs)."""

import json
from collections import defaultdict

import pytest

import selfadapt.knowledge.measure as measure_mod
import selfadapt.workers as workers_mod
from selfadapt.domain import InvalidSelfEdit
from selfadapt.evaluate import markdown_table, summarize
from selfadapt.knowledge.controls import (
    FORMAT_DONORS,
    OPEN_BOOK,
    OPEN_BOOK_FORM,
    QAControl,
    control_domain,
    format_donor,
    with_form,
)
from selfadapt.knowledge.data import load_passages
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.knowledge.measure import SHORT_ANSWER_SYSTEM, few_shot_turns, qa_examples
from selfadapt.lora import LoRAConfig
from selfadapt.models import load_tokenizer
from selfadapt.restem import PASSAGE_FORM, REWARD_BASELINES, ReSTEMConfig, self_edit_rewards


def form_pairs(tokenizer, passage):
    donors = load_passages("train", limit=len(FORMAT_DONORS), offset=FORMAT_DONORS.start)
    donor = format_donor(passage, donors)
    return qa_examples(tokenizer, donor.title, [(q.question, q.answer) for q in donor.questions])


def spy_prompts(monkeypatch):
    """The prompts the short answers are generated from, and those multiple choice scores options after."""
    seen = {"generate": [], "scores": []}
    real_generate, real_scores = measure_mod.generate, measure_mod.completion_scores

    def generate(model, tokenizer, prompts, *a, **k):
        seen["generate"] += prompts
        return real_generate(model, tokenizer, prompts, *a, **k)

    def scores(model, tokenizer, pairs, *a, **k):
        seen["scores"] += [p for p, _ in pairs]
        return real_scores(model, tokenizer, pairs, *a, **k)

    monkeypatch.setattr(measure_mod, "generate", generate)
    monkeypatch.setattr(measure_mod, "completion_scores", scores)
    return seen


def test_open_book_asks_the_measures_own_short_answer_prompt_with_the_passage_in_it(tiny, passages, monkeypatch):
    p = passages[0]
    seen = spy_prompts(monkeypatch)
    closed = KnowledgeDomain(tiny.tokenizer).evaluate(tiny.model, tiny.tokenizer, p)
    assert seen["generate"] and not any(p.context in x for x in seen["generate"] + seen["scores"])
    seen["generate"].clear(), seen["scores"].clear()
    dom = control_domain("open-book", KnowledgeDomain(tiny.tokenizer), passages)
    assert isinstance(dom, QAControl) and dom.open_book
    ev = dom.evaluate(tiny.model, tiny.tokenizer, p)
    assert len(seen["generate"]) == len(p.questions) and len(ev.records) == len(closed.records)
    for prompt, q in zip(seen["generate"], p.questions):
        # the few-shot short-answer prompt of the closed-book measure, the passage before the question
        assert SHORT_ANSWER_SYSTEM in prompt and few_shot_turns()[1]["content"] in prompt
        assert prompt.endswith(f"Topic: {p.title}\n{p.context}\nQuestion: {q.question}<|im_end|>\n"
                               "<|im_start|>assistant\n")
    assert seen["scores"] and all(p.context in x for x in seen["scores"])  # multiple choice reads it too
    assert {r["question"] for r in ev.records} == {q.question for q in p.questions}
    # the update of open-book (none) and of open-book+form (the format control's)
    assert dom.training_data(p, None).examples == [p.text]
    both = control_domain("open-book+form", KnowledgeDomain(tiny.tokenizer), passages)
    assert both.open_book
    fmt = control_domain("format", KnowledgeDomain(tiny.tokenizer), passages)
    assert not fmt.open_book
    assert both.training_data(p, None).examples == fmt.training_data(p, None).examples == [
        p.text, *form_pairs(tiny.tokenizer, p)]


def test_form_examples_are_the_format_controls_pairs_after_each_update_seed_free(tiny, passages):
    base = KnowledgeDomain(tiny.tokenizer, "self-qa", grounded=False)
    a, b = with_form(base), with_form(KnowledgeDomain(tiny.tokenizer, "self-qa", grounded=False))
    edit = "Q: Which town was seized?\nA: Otrar"
    for p in passages:
        own = base.training_data(p, edit).examples
        assert a.training_data(p, edit).examples == b.training_data(p, edit).examples == [
            *own, *form_pairs(tiny.tokenizer, p)]
        assert a.training_data(p, None).examples == [p.text, *form_pairs(tiny.tokenizer, p)]
    # the gold-QA control keeps its own pairs, then adds the form pairs
    gold = control_domain("gold-qa", with_form(base), passages)
    p = passages[0]
    own_pairs = qa_examples(tiny.tokenizer, p.title, [(q.question, q.answer) for q in p.questions])
    assert gold.training_data(p, None).examples == [p.text, *own_pairs, *form_pairs(tiny.tokenizer, p)]
    with pytest.raises(ValueError, match=r"is passage\+form itself"):
        control_domain("format", with_form(base), passages)  # it is passage+form


@pytest.fixture()
def cfg(tiny_dir, passages_file, passages, tmp_path):
    ext = tmp_path / "ext.json"
    ext.write_text(json.dumps([{"context": p.context, "format": "implications",
                                "completions": ["- Otrar was seized by the Mongol army."]} for p in passages]))
    return KnowledgeEvalConfig(
        model=str(tiny_dir), dataset=str(passages_file), passages=2, external=[str(ext)], selfedits_per_passage=1,
        max_new_tokens=12, answer_max_new_tokens=6, formats=["implications"], decodings=["free"],
        lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))


def spy_updates(monkeypatch):
    """(condition, item) → (training examples, LoRA seed) of every update a run makes."""
    updates = defaultdict(list)
    real = workers_mod.run_job

    def run_job(lora, job):
        if not job.base:
            try:
                examples = job.domain.training_data(job.item, job.selfedit).examples
            except InvalidSelfEdit:  # the tiny model's own self-edits are often unparsable
                examples = None
            updates[job.head["condition"], job.head["item"]].append((examples, job.head["seed"]))
        return real(lora, job)

    monkeypatch.setattr(workers_mod, "run_job", run_job)
    return updates


def test_ceilings_run_with_the_controls_and_closed_book_rows_report_a_share_of_the_ceiling(cfg, passages,
                                                                                             monkeypatch):
    assert KnowledgeEvalConfig().controls == ["format", "open-book", "open-book+form"]
    cfg.external, cfg.form = [], False  # SEAL's setting, where the format control runs beside the ceilings
    updates = spy_updates(monkeypatch)
    run, rows = run_knowledge_eval(cfg)
    names = [r["condition"] for r in rows]
    assert names == ["base", "recital", "passage", "format-control", OPEN_BOOK, OPEN_BOOK_FORM, "own-implications"]
    recs = {(r["condition"], r["item"]): r for r in run.records()}
    for p in passages:
        iid = f"p{p.index}"
        assert "train" not in recs[OPEN_BOOK, iid] and recs[OPEN_BOOK, iid]["key"] == f"open-book/{iid}"
        assert (OPEN_BOOK, iid) not in updates  # no update
        (ob,), (fc,) = updates[OPEN_BOOK_FORM, iid], updates["format-control", iid]
        assert ob == fc  # the format control's update, same seed
        assert recs[OPEN_BOOK_FORM, iid]["train"]["first_loss"] == recs["format-control", iid]["train"]["first_loss"]
    by = {r["condition"]: r for r in rows}
    assert by[OPEN_BOOK_FORM]["of_ceiling"] is None
    share = by["passage"]["of_ceiling"]
    assert share["ceiling"] == OPEN_BOOK_FORM and share["n"] == 2
    table = (run.path / "table.md").read_text()
    assert f"% of {OPEN_BOOK_FORM} (95% CI)" in table.splitlines()[0]


def test_share_of_the_ceiling_is_the_ratio_of_per_item_means():
    recs = [{"condition": c, "item": i, "j": 0, "status": "ok", "score": s}
            for c, scores in {"a": (0.2, 0.0, 0.1), "c": (0.4, 0.2, 0.0)}.items() for i, s in zip("xyz", scores)]
    rows = summarize(recs, ["a", "c"], ceiling="c")
    share = rows[0]["of_ceiling"]
    assert share["ratio"] == pytest.approx(0.3 / 0.6) and share["n"] == 3
    assert share["ci_low"] <= share["ratio"] <= share["ci_high"]
    assert rows[1]["of_ceiling"] is None
    line = markdown_table(rows, "score").splitlines()[2]
    assert "| 50 (" in line
    # a ceiling of 0 everywhere gives no share
    zero = [{**r, "score": 0.0} if r["condition"] == "c" else r for r in recs]
    assert summarize(zero, ["a", "c"], ceiling="c")[0]["of_ceiling"]["ratio"] is None


def test_form_equalized_run_adds_the_same_form_examples_to_every_update(cfg, passages, monkeypatch):
    assert cfg.form  # the default
    updates = spy_updates(monkeypatch)
    run, rows = run_knowledge_eval(cfg)
    names = [r["condition"] for r in rows]
    # the format control is passage+form by construction: not run twice
    assert names == ["base", "recital", "passage+form", OPEN_BOOK, OPEN_BOOK_FORM, "own-implications+form",
                     "ext+form"]
    by = {r["condition"]: r for r in rows}
    assert set(by["own-implications+form"]["vs"]) == {"passage+form", "recital"}
    tokenizer = load_tokenizer(cfg.model)
    for p in passages:
        iid = f"p{p.index}"
        pairs = form_pairs(tokenizer, p)
        trained = {c: u for (c, i), u in updates.items() if i == iid}
        assert set(trained) == {"passage+form", OPEN_BOOK_FORM, "own-implications+form", "ext+form"}
        seeds = {seed for u in trained.values() for _, seed in u}
        assert len(seeds) == 1  # one LoRA seed for every condition of a passage
        for c, u in trained.items():
            for examples, _ in u:
                if examples is not None:
                    assert examples[-len(pairs):] == pairs, c  # the same text, in the same order
                    assert examples[0] == p.text
        assert trained["passage+form"][0][0] == trained[OPEN_BOOK_FORM][0][0] == [p.text, *pairs]
        assert len(trained["ext+form"][0][0]) == len(pairs) + 2  # the self-edit's item between
    assert not any(r["condition"] == "format-control" for r in run.records())


def test_the_form_equalized_reward_subtracts_passage_plus_form():
    assert REWARD_BASELINES[PASSAGE_FORM] == "passage+form"
    recs = [{"condition": "passage", "item": "p0", "j": 0, "seed": 0, "score": 0.0},
            {"condition": "passage", "item": "p0", "j": 0, "seed": 1000, "score": 0.2},
            {"condition": PASSAGE_FORM, "item": "p0", "j": 0, "seed": 0, "score": 0.4},
            {"condition": PASSAGE_FORM, "item": "p0", "j": 0, "seed": 1000, "score": 0.2},
            {"condition": "selfedit", "item": "p0", "j": 0, "seed": 0, "score": 0.6, "gain": 0.6},
            {"condition": "selfedit", "item": "p0", "j": 0, "seed": 1000, "score": 0.2, "gain": 0.2}]
    assert self_edit_rewards(recs, PASSAGE_FORM) == {"p0": {0: pytest.approx(0.1)}}  # (0.2 + 0.0) / 2
    assert self_edit_rewards(recs, "passage") == {"p0": {0: pytest.approx(0.3)}}


def test_train_knowledge_form_equalized_trains_every_update_with_form_and_rewards_against_passage_form(
        tiny_dir, passages_file, passages, tmp_path, monkeypatch):
    import selfadapt.knowledge.train as train_mod
    from selfadapt.knowledge.train import KnowledgeTrainConfig, run_knowledge_training

    seen = {}
    monkeypatch.setattr(train_mod, "run_restem", lambda cfg, pool, make_domain, **kw: seen.update(
        cfg=cfg, pool=pool, make_domain=make_domain))
    cfg = ReSTEMConfig(model=str(tiny_dir), runs_dir=str(tmp_path / "runs"), items_per_round=2)
    run_knowledge_training(cfg, KnowledgeTrainConfig(dataset=str(passages_file), fmt="implications"))  # default
    assert seen["cfg"].reward_baseline == PASSAGE_FORM and seen["cfg"].domain["form"] is True
    tok = load_tokenizer(str(tiny_dir))
    dom = seen["make_domain"](tok)
    for p in passages:
        assert dom.training_data(p, None).examples == [p.text, *form_pairs(tok, p)]
        assert dom.training_data(p, "- Otrar fell in the war.").examples == [
            p.text, f"{p.title}\nOtrar fell in the war.", *form_pairs(tok, p)]
    # without form (SEAL's) the domain adds nothing, and a passage+form baseline is refused
    cfg = ReSTEMConfig(model=str(tiny_dir), runs_dir=str(tmp_path / "runs"), items_per_round=2,
                       reward_baseline=PASSAGE_FORM)
    with pytest.raises(ValueError, match="needs form equalization"):
        run_knowledge_training(cfg, KnowledgeTrainConfig(dataset=str(passages_file), form=False))
    cfg = ReSTEMConfig(model=str(tiny_dir), runs_dir=str(tmp_path / "runs"), items_per_round=2)
    run_knowledge_training(cfg, KnowledgeTrainConfig(dataset=str(passages_file), form=False))
    assert seen["cfg"].reward_baseline == "base" and seen["make_domain"](tok).training_data(
        passages[0], None).examples == [passages[0].text]


def test_a_passage_form_round_evaluates_passage_plus_form(tiny_dir, passages, tmp_path, monkeypatch):
    from selfadapt.restem import run_restem

    cfg = ReSTEMConfig(model=str(tiny_dir), rounds=1, items_per_round=2, k=1, max_new_tokens=8,
                       lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu",
                       runs_dir=str(tmp_path / "runs"), reward_baseline=PASSAGE_FORM)
    with pytest.raises(ValueError, match="form"):
        run_restem(cfg, passages, lambda tok: KnowledgeDomain(tok, "implications"))  # a domain without form
    cfg.domain = {"name": "knowledge", "form": True}
    updates = spy_updates(monkeypatch)
    monkeypatch.setattr("selfadapt.restem.sft_policy", lambda *a, **k: pytest.fail("no winner expected"))
    monkeypatch.setattr("selfadapt.restem.select_winners", lambda rewards, rule: {})
    run = run_restem(cfg, passages, lambda tok: with_form(KnowledgeDomain(tok, "implications")))
    conds = {r["condition"] for r in run.records()}
    assert PASSAGE_FORM in conds and "passage" not in conds
    for (c, _), u in updates.items():
        assert c in (PASSAGE_FORM, "selfedit")

