"""`learn` on the tiny model: what the model knew is probed before and after, its own general
answers are replayed into the update, check questions are questions, and every step reports."""

import json

import pytest

from selfadapt.knowledge.general import general_questions
from selfadapt.knowledge.measure import qa_prompt
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import load_tokenizer
from selfadapt.teaching import LearnConfig, check_questions, learn


def test_learn_probes_general_knowledge_replays_its_own_answers_and_reports_each_step(tiny_dir, tmp_path,
                                                                                       monkeypatch):
    doc = tmp_path / "otrar.txt"  # "Hamlet" and "Spain" route two general questions to the adapter
    doc.write_text("The Mongol army seized the town of Otrar in 1219. Molten silver was poured into the ears. "
                   "A merchant from Spain later wrote Hamlet there.\n")
    trained, events = [], []
    real = ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    import selfadapt.teaching as teaching
    writes, write = [], teaching.write_selfedits
    monkeypatch.setattr(teaching, "write_selfedits", lambda *a, **kw: writes.append(a[4]) or write(*a, **kw))
    asked, distil = [], teaching.distillation
    monkeypatch.setattr(teaching, "distillation", lambda *a: asked.append(len(a[3])) or distil(*a))
    cfg = LearnConfig(model=str(tiny_dir), selfedits_per_chunk=1, check="model", distill=5, reading=2,
                      lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    meta = learn([doc], tmp_path / "adapter", cfg, progress=lambda step, done, total: events.append(step))
    probe, distill = general_questions()
    g = meta["general"]
    # only what `ask` answers with the adapter is asked: the rest it answers as the model did before
    from selfadapt.routing import about
    routed = [q.question for q in probe if about(q.question, meta["vocabulary"])]
    assert len(routed) >= 2 and [b["question"] for b in g["before"]] == [a["question"] for a in g["after"]] == routed
    assert g["questions"] == len(routed) and g["probe_questions"] == len(probe)
    assert 0 <= g["kept"] <= g["known_before"] == sum(r["correct"] for r in g["before"])
    assert json.loads((tmp_path / "adapter" / "selfadapt.json").read_text())["general"]["kept"] == g["kept"]
    assert meta["general_adapter"] is None  # --probe-adapter: every question, to the adapter
    (examples,) = trained
    prompts = {ex[0] for ex in examples if isinstance(ex, tuple)}
    assert sum(any(q in p for p in prompts) for q in distill) == 5  # five of the model's own general answers,
    tok = load_tokenizer(str(tiny_dir))  # in the zero-shot prompt the document's Q→A pairs train in
    assert sum(qa_prompt(tok, "otrar", q) in prompts for q in distill) == 5
    assert asked == [5]  # only the answers the update replays are generated
    assert sum("Question:" in p and "\n\nQuestion:" in p for p in prompts) == 2  # reading comprehension
    steps = set(events)
    assert {"loading the model", "cutting the documents into chunks", "writing self-edits and check questions",
            "general questions (before)", "the model's own general answers, to replay", "otrar.txt: training",
            "general questions (after)"} <= steps
    assert writes == [2]  # one generation pass: the self-edit and the check draft are samples of one batch
    assert len(json.loads((tmp_path / "adapter" / "selfedits.json").read_text())[0][0]) == 1
    assert set(meta["seconds"]) == steps  # every step is timed
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert f"General questions: {len(routed)} of {len(probe)} name a word of the documents" in card and "Time:" in card
    assert meta["check"] == "model" and all(not c["trained"] for c in json.loads(
        (tmp_path / "adapter" / "checks.json").read_text()))


def test_learn_checks_by_default_a_spread_of_the_cloze_pairs_it_teaches(tiny_dir, tmp_path, monkeypatch):
    """They take no generation to write, and after learning they say whether the facts went in."""
    from selfadapt.knowledge.cloze import cloze_pairs

    text = ("The Mongol army seized the town of Otrar in 1219. Molten silver was poured into the ears of Inalchuq. "
            "Genghis Khan sent 450 merchants to Otrar in 1218. The governor Inalchuq killed them. "
            "The siege lasted five months, until Otrar fell in 1220. "
            "A caravan arrived in 1218, when the governor was away.")
    doc = tmp_path / "otrar.txt"
    doc.write_text(text)
    trained = []
    real = ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    import selfadapt.teaching as teaching
    monkeypatch.setattr(teaching, "write_selfedits", lambda *a, **kw: pytest.fail("a cloze check needs no generation"))
    meta = learn([doc], tmp_path / "adapter", LearnConfig(model=str(tiny_dir), checks=3, probe=False, distill=0,
                                                          reading=0, lora=LoRAConfig(r=4, epochs=1), dtype="float32",
                                                          device="cpu"), progress=lambda *a: None)
    pairs = cloze_pairs(text, "otrar")
    checks = json.loads((tmp_path / "adapter" / "checks.json").read_text())
    asked = [(c["question"], c["expected"]) for c in checks]
    assert len(pairs) > 3 and len(asked) == 3 and asked[0] == pairs[0] and asked[-1] == pairs[-1]  # spread out
    assert asked[1] in pairs[1:-1]
    prompts = {ex[0] for ex in trained[0] if isinstance(ex, tuple)}
    assert all(c["trained"] and any(c["question"] in p for p in prompts) for c in checks)  # taught, so a fit check
    assert any("Question: A caravan arrived in what year?<" in p for p in prompts)  # and reworded (``reword``)
    assert meta["check"] == "cloze" and meta["checks_right"][1] == sum(c["right_after"] for c in checks)
    assert "taught to the adapter: did the fact go in?" in (tmp_path / "adapter" / "README.md").read_text()
    with pytest.raises(ValueError, match="check must be one of"):
        LearnConfig(check="sometimes")


def test_a_taught_question_is_asked_in_the_prompt_it_was_trained_in(tiny_dir, tmp_path, monkeypatch):
    """Issue 46: the Q→A pairs train in the zero-shot prompt, but the checks after learning and `ask` asked the
    adapter in the few-shot one, where it missed taught facts it answers in its own ("In what year was the line
    electrified?" → 1999, taught 1954). The adapter is asked in its training prompt, the model before in ask's."""
    import selfadapt.knowledge.general as general
    from selfadapt.answering import ask

    asked, real = [], general.generate
    monkeypatch.setattr(general, "generate", lambda m, t, prompts, *a, **kw: asked.extend(prompts) or real(
        m, t, prompts, *a, **kw))
    doc = tmp_path / "kessel_line.txt"
    doc.write_text("Construction began in 1887. In 1954 the line was electrified. In 1999 the line was sold.\n")
    out = tmp_path / "adapter"
    learn([doc], out, LearnConfig(model=str(tiny_dir), checks=3, probe=False, distill=0, reading=0,
                                  lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu"),
          progress=lambda *a: None)
    trained = {r["prompt"] for r in map(json.loads, (out / "train.jsonl").read_text().splitlines())
               if r["source"] == "document"}
    tok = load_tokenizer(str(tiny_dir))
    checks = json.loads((out / "checks.json").read_text())
    taught = [qa_prompt(tok, c["title"], c["question"]) for c in checks]
    assert len(checks) == 3 and set(taught) <= trained
    before, after = asked[:3], asked[3:]
    assert not set(before) & trained and sorted(after) == sorted(taught)  # the model before: ask's few-shot prompt
    asked.clear()
    ask([checks[0]["question"], "What is the capital of France?"], out, model=str(tiny_dir), max_new_tokens=4,
        dtype="float32", device="cpu")
    assert asked[0] == taught[0] and asked[1] not in trained  # routed to the adapter; the other to the model as it was


def test_a_check_question_that_is_not_a_question_is_dropped(tiny):
    from selfadapt.knowledge.data import Passage
    from selfadapt.knowledge.domain import KnowledgeDomain

    chunk = Passage("Otrar", "The Mongol army seized the town of Otrar in 1219.", ())
    checker = KnowledgeDomain(tiny.tokenizer, "self-qa", grounded=True)
    text = ("Q: Read the following article and answer the question.\nA: The Mongol army\n"
            "Q: When was Otrar seized?\nA: 1219")
    assert check_questions(checker, chunk, text) == [("When was Otrar seized?", "1219")]


def test_an_adapter_from_learn_loads_with_peft_alone_and_gives_asks_logits(tiny_dir, tmp_path):
    """It names its base model as a user would find it, so PEFT's AutoPeftModelForCausalLM loads it."""
    import torch
    from peft import AutoPeftModelForCausalLM

    from selfadapt.lora import load_adapter, name_base_model
    from selfadapt.models import load_model

    doc = tmp_path / "otrar.txt"
    doc.write_text("The Mongol army seized the town of Otrar in 1219.\n")
    cfg = LearnConfig(model=str(tiny_dir), selfedits_per_chunk=1, check="none", probe=False, distill=0, reading=0,
                      lora=LoRAConfig(r=4, epochs=2), dtype="float32", device="cpu")
    out = tmp_path / "adapter"
    learn([doc], out, cfg, progress=lambda *a: None)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dir.resolve())
    peft_model = AutoPeftModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ours = load_adapter(load_model(str(tiny_dir), dtype="float32", device="cpu").model, out)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-5)
    name_base_model(out, "smollm2", "/root/.cache/selfadapt/models/x")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_ask_with_several_adapters_answers_with_each_and_with_their_sum(tiny_dir, tmp_path):
    import torch
    from peft import PeftModel

    from selfadapt.answering import ask
    from selfadapt.lora import load_adapter
    from selfadapt.models import load_model

    outs = []
    for n, text in enumerate(["The Mongol army seized the town of Otrar in 1219.", "Molten silver was poured."]):
        (tmp_path / f"doc{n}.txt").write_text(text + "\n")
        outs.append(tmp_path / f"adapter{n}")
        learn([tmp_path / f"doc{n}.txt"], outs[-1], LearnConfig(
            model=str(tiny_dir), selfedits_per_chunk=1, check="none", probe=False, distill=0, reading=0,
            lora=LoRAConfig(r=4, epochs=2, lr=1e-2), seed=n, dtype="float32", device="cpu"), progress=lambda *a: None)
    q = ["Which town was seized?"]
    kw = dict(model=str(tiny_dir), max_new_tokens=4, dtype="float32", device="cpu")
    each = ask(q, outs, **kw)
    assert list(each) == [str(o) for o in outs]
    assert [each[str(o)] for o in outs] == [ask(q, o, **kw)[str(o)] for o in outs]  # as if asked alone
    assert list(ask(q, outs, combine=True, **kw)) == [f"{outs[0]} + {outs[1]}"]
    # combined: both LoRA updates summed, as merging one and then the other
    net = load_model(str(tiny_dir), dtype="float32", device="cpu").model
    for n, o in enumerate(outs):
        net = load_adapter(net, o, name=f"a{n}")
    net.base_model.set_adapter(["a0", "a1"])
    merged = load_model(str(tiny_dir), dtype="float32", device="cpu").model
    for o in outs:
        merged = PeftModel.from_pretrained(merged, str(o)).merge_and_unload()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(net(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)
        net.base_model.set_adapter("a0")
        assert not torch.allclose(net(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def test_learn_takes_your_model_object_and_hands_it_back_as_it_came(tiny, tmp_path, monkeypatch):
    """A loaded (quantised, sharded, your own) model is used as it is: never loaded from disk,
    recorded by its name, and left without the LoRA layers the run put into it."""
    import torch
    import transformers

    from selfadapt import LoadedModel

    def no_loading(*a, **kw):
        raise AssertionError("a model object must not be loaded again")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    weights = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    (tmp_path / "doc.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    obj = LoadedModel.of(tiny.model, tiny.tokenizer, name="my-tiny-llama")
    meta = learn([tmp_path / "doc.txt"], tmp_path / "adapter", LearnConfig(
        model=obj, selfedits_per_chunk=1, check="none", probe=False, distill=0, reading=0,
        lora=LoRAConfig(r=4, epochs=2, lr=1e-2)), progress=lambda *a: None)
    assert meta["model"] == "my-tiny-llama" and meta["config"]["model"] == "my-tiny-llama"
    assert not any("lora" in name for name, _ in tiny.model.named_modules())
    assert tiny.model.state_dict().keys() == weights.keys()
    assert all(torch.equal(weights[k], v) for k, v in tiny.model.state_dict().items())
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_runners_that_reload_or_spread_the_model_refuse_an_object(tiny):
    from selfadapt import LoadedModel
    from selfadapt.restem import ReSTEMConfig, run_restem
    from selfadapt.workers import Parallel, workers_for

    obj = LoadedModel.of(tiny.model, tiny.tokenizer)
    with pytest.raises(ValueError, match="ReST-EM reloads its policy"):
        run_restem(ReSTEMConfig(model=obj), [], lambda tok: None)
    with pytest.raises(ValueError, match="runs in this process only"):
        with workers_for(Parallel(2, None), None, obj, LoRAConfig()):
            pass


def test_cloze_pairs_ask_for_each_name_and_number_of_the_sentences():
    from selfadapt.knowledge.cloze import cloze_pairs

    text = ("The Harlow Point Lighthouse was built in 1871 by the engineer Tomas Brenner.\n"
            "The tower is 38 metres tall. Since 1998 it has housed a museum run by the Kessel Maritime Society. "
            "It was founded by Anselm and Piet Vellmar. Its crew of 12 keepers lived on the rock.")
    pairs = cloze_pairs(text, "harlow lighthouse")
    assert pairs == [
        ("What was built in 1871 by the engineer Tomas Brenner?", "Harlow Point Lighthouse"),  # the subject
        ("In what year was the Harlow Point Lighthouse built by the engineer Tomas Brenner?", "1871"),  # fronted
        ("Who built the Harlow Point Lighthouse in 1871?", "Tomas Brenner"),  # "was built by": who built
        ("The tower is what tall?", "38 metres"),  # no pattern parses it: the wh-phrase stays in place
        ("Since what year it has housed a museum run by the Kessel Maritime Society?", "1998"),
        ("Since 1998 it has housed a museum run by whom?", "Kessel Maritime Society"),  # a person after "by"
        ("Who founded Harlow lighthouse?", "Anselm and Piet Vellmar"),  # "It": the title; one name
        ("Harlow lighthouse's crew of how many keepers lived on the rock?", "12"),  # a count: how many
    ]
    assert cloze_pairs(text)[6] == ("Who founded it?", "Anselm and Piet Vellmar")  # no title given
    # the title is in the prompt: a pair answered by it would teach the adapter to copy the topic
    assert "Harlow Point Lighthouse" not in dict(map(reversed, cloze_pairs(text, "harlow point lighthouse")))
    assert pairs[0][1] == "Harlow Point Lighthouse"  # another name than the title is asked for
    assert cloze_pairs(text, limit=2) == cloze_pairs(text)[:2] and cloze_pairs("Too short.") == []


def test_a_cloze_question_reworded_as_a_reader_would_rather_ask_it():
    from selfadapt.knowledge.cloze import reworded

    text = "The Orsk Valley Railway climbs to Dray Head. The railway opened in 1879. The Orsk Valley Railway Trust ..."
    title = "orsk valley railway"
    assert reworded("Steam arrived in what year, when the company bought two engines?", title, text) == \
        "Steam arrived in what year?"  # cut at the first comma after the wh-phrase
    assert reworded("In what year was the Orsk Valley Railway opened by the company?", title, text) == \
        "When was the railway opened by the company?"  # "When", and the short name the document uses
    assert reworded("In what year the council bought the line?", title, text) is None  # not fronted: no "When"
    assert reworded("Who led the Orsk Valley Railway Trust?", title, text) is None  # a longer name keeps its words
    assert reworded("Who planned the line?", title, text) is None
    assert reworded("The Orsk Valley Railway climbs to what?", title, "No short name here.") is None


def test_a_contrast_question_offers_its_answer_and_the_nearest_other_fact_of_its_kind():
    """Issue 46: the adapter answered "When was the line completed?" with the year construction began."""
    import random

    from selfadapt.knowledge.cloze import cloze_pairs, contrasted

    text = ("Construction began in 1887 under the chief engineer Tobias Renwick, and the line was completed in 1893. "
            "The Halden Works built 40 bridges. The first train ran in 1893 and carried 320 people. "
            "In 1954 the line was electrified. Its longest tunnel, 900 metres long, was dug in 1890.")
    pairs = cloze_pairs(text, "kessel line")
    contrast = contrasted(pairs, text, random.Random(0), "kessel line")
    # every fact has a neighbour of its kind here but the one measure (a number with its unit)
    assert [a for _, a in pairs if a not in {ca for _, ca in contrast}] == ["900 metres"]
    offered = {}
    for (q, a), (cq, ca) in zip([p for p in pairs if p[1] != "900 metres"], contrast):
        assert ca == a and cq.startswith(q.rstrip("?") + ", ")  # the question as taught, two answers offered
        first, second = cq[len(q) + 1:].rstrip("?").split(" or ")
        offered.setdefault(a, []).append({first, second} - {a})
    assert offered == {
        "1887": [{"1893"}], "1893": [{"1887"}, {"1954"}],  # same sentence first; never its own answer twice
        "Tobias Renwick": [{"Halden Works"}], "Halden Works": [{"Tobias Renwick"}],  # a name for a name
        "40": [{"320"}], "320": [{"40"}],  # a count for a count, never a year or a measure
        "1954": [{"1893"}],  # 1893 and 1890 a sentence away each: the earlier
        "1890": [{"1954"}]}
    assert contrasted(pairs, text, random.Random(0), "kessel line") == contrast  # seeded
    firsts = {cq.rsplit(", ", 1)[1].startswith(a) for cq, a in contrast}
    assert firsts == {True, False}  # the answer is offered first or second, as the seed draws
    one_of_each = "The mill was built in 1850 by the merchant Ada Voss. It had 12 workers."
    assert contrasted(cloze_pairs(one_of_each), one_of_each, random.Random(0)) == []  # nothing to contrast
    twice = "The mill opened in 1850. The bakery opened in 1850. The school opened in 1901."
    assert [a for q, a in contrasted(cloze_pairs(twice), twice, random.Random(0))] == ["1850", "1850", "1901"]
    assert all("1850 or 1850" not in q for q, _ in contrasted(cloze_pairs(twice), twice, random.Random(0)))


def test_cloze_questions_front_the_wh_phrase_as_a_reader_asks():
    from selfadapt.knowledge.cloze import cloze_pairs

    def asked(sentence):
        return cloze_pairs(sentence)

    assert asked("The money came from the merchant Ada Voss, who paid for the roof.") == [
        ("Who paid for the roof?", "Ada Voss")]  # a relative clause names what the person did
    # "which" after a place in a prepositional phrase belongs to the head noun, not to the place
    assert asked("Its best plant is a lily from the Amazon, which flowers for two nights.") == [
        ("Its best plant is a lily from the what, which flowers for two nights?", "Amazon"),
        ("Its best plant is a lily from the Amazon, which flowers for how many nights?", "two")]  # a count in words
    # a by-phrase beyond the predicate "is the Palm House" is not that clause's agent
    assert asked("The best building is the Palm House, a hall designed by the engineer Walter Brisk.")[1] == (
        "The best building is the Palm House, a hall designed by whom?", "Walter Brisk")
    assert asked("His pupil, Emil Sand, built the first organ.") == [("Who built the first organ?", "Emil Sand")]
    assert asked("In 1912 the hall was rebuilt by the Orra Trust.") == [
        ("In what year was the hall rebuilt by the Orra Trust?", "1912"),
        ("Who rebuilt the hall in 1912?", "Orra Trust")]
    assert asked("The bells were hidden in a cellar at Dunholm.") == [
        ("Where were the bells hidden in a cellar?", "Dunholm")]
    assert asked("The mill closed in 1931, and the workers moved to Tarn.") == [
        ("The mill closed in what year?", "1931"), ("The workers moved to what?", "Tarn")]  # one clause each
    assert asked("The shop sold bread and cheese, and fish from Lisk.") == [
        ("The shop sold bread and cheese, and fish from what?", "Lisk")]  # a list, not a second clause
    assert asked("But Cameron congratulated the SNP on the result. Later the SNP thanked Cameron.")[0] == (
        "Who congratulated the SNP on the result?", "Cameron")  # a sentence-initial name (capitalised elsewhere)
    assert [a for _, a in asked("Bills passed by the council go to the mayor, who signs them.")] == []  # not a name


def test_learn_with_cloze_trains_on_the_documents_own_questions(tiny_dir, tmp_path, monkeypatch):
    seen, real = [], ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train",
                        lambda self, examples, **kw: seen.append(examples) or real(self, examples, **kw))
    (tmp_path / "invasion.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    learn([tmp_path / "invasion.txt"], tmp_path / "adapter", LearnConfig(
        model=str(tiny_dir), selfedits_per_chunk=0, cloze=True, check="none", probe=False, distill=0, reading=0,
        lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu"), progress=lambda *a: None)
    (examples,) = seen
    pairs = [ex for ex in examples if isinstance(ex, tuple)]
    assert [a for _, a in pairs] == ["Mongol<|im_end|>", "Otrar<|im_end|>", "1219<|im_end|>"]  # loss on the answer
    assert "The Mongol army seized the town of what in 1219?" in pairs[1][0]
    assert "The Mongol army seized the town of Otrar in what year?" in pairs[2][0]


def learn_cli_config(tmp_path, monkeypatch, *flags: str) -> LearnConfig:
    """The config `selfadapt learn doc.txt -o OUT FLAGS` hands to ``learn`` (no model loads)."""
    from typer.testing import CliRunner

    import selfadapt.teaching as teaching
    from selfadapt.cli import app

    seen = []
    with monkeypatch.context() as m:
        m.setattr(teaching, "learn", lambda files, out, cfg: seen.append(cfg) or {})
        CliRunner().invoke(app, ["learn", "doc.txt", "-o", str(tmp_path / "out"), *flags])
    return seen[0]


def test_learn_contrast_from_the_cli_to_the_update_and_the_adapters_meta(tiny_dir, tmp_path, monkeypatch):
    import random
    from dataclasses import replace

    from selfadapt.knowledge.cloze import cloze_pairs, contrasted
    from selfadapt.lora import Distilled

    assert learn_cli_config(tmp_path, monkeypatch, "--contrast").contrast
    assert not LearnConfig().contrast  # off by default: measured, it did not help

    text = "Construction began in 1887. In 1893 the line was completed. In 1954 the line was electrified."
    doc = tmp_path / "kessel_line.txt"
    doc.write_text(text)
    trained, real = [], ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    cfg = LearnConfig(model=str(tiny_dir), contrast=True, check="none", probe=False, distill=0, reading=0,
                      lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    meta = learn([doc], tmp_path / "adapter", cfg, progress=lambda *a: None)
    # learn draws the answers' order from a stream of its own, seeded seed + 1
    versus = contrasted(cloze_pairs(text, "kessel line"), text, random.Random(cfg.seed + 1), "kessel line")
    prompts = [ex[0] for ex in trained[0] if isinstance(ex, tuple)]
    assert len(versus) == 3 and all(any(f"Question: {q}<" in p for p in prompts) for q, _ in versus)
    assert any(" or " in q and "1893" in q and "1954" in q for q, _ in versus)  # the nearest year
    saved = json.loads((tmp_path / "adapter" / "selfadapt.json").read_text())
    assert saved["config"]["contrast"] is True is meta["config"]["contrast"]
    trained.clear()  # with context distillation, the reading model is their teacher too, as for every taught pair
    learn([doc], tmp_path / "distilled", replace(cfg, context_distill=0.5), progress=lambda *a: None)
    soft = [ex.prompt for ex in trained[0] if isinstance(ex, Distilled)]
    assert all(any(f"Question: {q}<" in p for p in soft) for q, _ in versus)


def test_learn_caps_a_documents_steps_and_says_so(tiny_dir, tmp_path):
    """A dense page has many cloze pairs: the step cap, not the epochs, bounds its time (RESULTS.md)."""
    (tmp_path / "invasion.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    assert LearnConfig().lora.max_steps == 80
    events = []
    meta = learn([tmp_path / "invasion.txt"], tmp_path / "adapter", LearnConfig(
        model=str(tiny_dir), check="none", probe=False, distill=0, reading=0,
        lora=LoRAConfig(r=4, epochs=5, batch_size=1, max_steps=3), dtype="float32", device="cpu"),
        progress=lambda step, done, total: events.append((step, done, total)))
    (doc,) = meta["documents"]
    assert doc["sequences"] > 3 and doc["steps"] == 3 and doc["capped"]
    training = [(done, total) for step, done, total in events if step.endswith("training")]
    assert training == [(0, 3), (1, 3), (2, 3), (3, 3), (3, 3)]  # the bar knows its end: an ETA from the start


def test_routing_sends_only_questions_that_name_the_documents_to_the_adapter():
    from selfadapt.routing import about, content_words

    vocab = content_words("harlow lighthouse The Harlow Point Lighthouse was built in 1871 by Tomas Brenner. "
                          "The museums are run by the Kessel Maritime Society.")
    assert about("Who built the Harlow Point Lighthouse?", vocab)
    assert about("What happened in 1871?", vocab) and about("Who runs the museum?", vocab)  # numbers, plurals
    assert not about("What is the capital of France?", vocab)
    assert not about("Who wrote the play Hamlet?", vocab)
    assert not about("Which is the largest planet?", vocab)  # question and function words name nothing
    glass = content_words("In 1889 the works began to make window glass in the main hall.")
    assert about("What did the works make in 1889?", glass) and about("What glass did the works make?", glass)
    assert not about("What do bees make?", glass)  # words common in the train passages name nothing
    assert not about("What is the main language spoken in Brazil?", glass)


def test_ask_answers_a_question_about_nothing_learned_without_the_adapter(tiny_dir, tmp_path):
    """The update rewrites answers to unrelated questions; `ask` routes those to the model as it
    was, under the same prompt, and learn's report gives both the routed and the adapter's probe."""
    from selfadapt.answering import ask
    from selfadapt.knowledge.general import short_answers
    from selfadapt.models import load_model

    (tmp_path / "otrar.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    out = tmp_path / "adapter"
    meta = learn([tmp_path / "otrar.txt"], out, LearnConfig(
        model=str(tiny_dir), selfedits_per_chunk=1, check="none", distill=0, reading=0, probe_adapter=True,
        lora=LoRAConfig(r=4, epochs=3, lr=3e-2), dtype="float32", device="cpu"), progress=lambda *a: None)
    assert "otrar" in meta["vocabulary"] and meta["general_adapter"]["questions"] == meta["general"]["questions"]
    general, about_doc = "What is the capital of France?", "Which town did the Mongol army seize?"
    kw = dict(model=str(tiny_dir), max_new_tokens=6, dtype="float32", device="cpu")
    routed, unrouted = ask([general, about_doc], out, **kw)[str(out)], ask([general, about_doc], out, route=False,
                                                                          **kw)[str(out)]
    base = load_model(str(tiny_dir), dtype="float32", device="cpu")
    before = short_answers(base.model, base.tokenizer, [(meta["title"], general), (meta["title"], about_doc)], 6)
    assert routed[0] == before[0]  # the model as it was
    assert routed[1] == unrouted[1]  # the adapter
    assert unrouted != before  # the adapter did change the answers (the test can fail)
    # the routed probe keeps every answer of a question that names nothing of the document
    for b, a in zip(meta["general"]["before"], meta["general"]["after"]):
        if not set(b["question"].lower().split()) & {"town", "otrar", "mongol", "army", "seized", "1219"}:
            assert a["response"] == b["response"]


def test_ask_hands_your_model_object_back_as_it_came(tiny_dir, tiny, tmp_path):
    """ask(model=obj) loads the adapters into your model: afterwards a plain forward pass gives
    bit-identical logits, no LoRA layer is left, requires_grad and train mode are as they were;
    a PeftModel of yours keeps its own adapters, active as before."""
    import torch

    from selfadapt import LoadedModel, ask
    from selfadapt.lora import load_adapter
    from selfadapt.models import load_model

    (tmp_path / "doc.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    out = tmp_path / "adapter"
    learn([tmp_path / "doc.txt"], out, LearnConfig(
        model=str(tiny_dir), selfedits_per_chunk=1, check="none", probe=False, distill=0, reading=0,
        lora=LoRAConfig(r=4, epochs=2, lr=1e-2), dtype="float32", device="cpu"), progress=lambda *a: None)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    q, kw = ["Which town was seized?"], dict(max_new_tokens=4, route=False)

    def state(model):
        model_mode = model.training
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids).logits.clone()
        model.train(model_mode)
        return logits, {k: (v.clone(), v.requires_grad) for k, v in model.named_parameters()}

    adapted = load_adapter(load_model(str(tiny_dir), dtype="float32", device="cpu").model, out)
    with torch.no_grad():
        assert not torch.allclose(adapted(input_ids=ids).logits, state(tiny.model)[0])  # the adapter moves them
    tiny.model.train()
    logits, params = state(tiny.model)
    answers = ask(q, out, model=LoadedModel.of(tiny.model, tiny.tokenizer), **kw)
    assert answers == ask(q, out, model=str(tiny_dir), dtype="float32", device="cpu", **kw)  # the adapter answered
    assert tiny.model.training  # as it came
    after, params_after = state(tiny.model)
    assert torch.equal(logits, after)
    assert not any("lora" in name for name, _ in tiny.model.named_modules())
    assert params.keys() == params_after.keys()
    assert all(torch.equal(v, params_after[k][0]) and g == params_after[k][1] for k, (v, g) in params.items())

    # a PeftModel of yours, its adapter named as ask names its own: kept, active, as it was
    peft = load_adapter(load_model(str(tiny_dir), dtype="float32", device="cpu").model, out, name="a0")
    logits, params = state(peft)
    assert ask(q, [out], model=LoadedModel.of(peft, tiny.tokenizer), **kw) == answers
    assert list(peft.peft_config) == ["a0"] and peft.active_adapters == ["a0"] and not peft.training
    after, params_after = state(peft)
    assert torch.equal(logits, after) and params.keys() == params_after.keys()
    assert all(torch.equal(v, params_after[k][0]) and g == params_after[k][1] for k, (v, g) in params.items())

    # a model the adapter does not fit: PEFT puts its layers in, then fails on the weights; they come out
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=len(tiny.tokenizer), hidden_size=48, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    logits, params = state(other)
    with pytest.raises(ValueError, match="this adapter was trained on"):
        ask(q, out, model=LoadedModel.of(other, tiny.tokenizer), **kw)
    after, params_after = state(other)
    assert torch.equal(logits, after) and params.keys() == params_after.keys() and not hasattr(other, "peft_config")
    assert not any("lora" in name for name, _ in other.named_modules())


def test_learn_needs_no_config_and_the_runners_are_exported_at_top_level(tmp_path, monkeypatch):
    import subprocess
    import sys

    import selfadapt
    import selfadapt.teaching as teaching
    from selfadapt.models import EMBEDDED

    class Loaded(Exception):
        pass

    def load_model(spec, **kw):
        raise Loaded(spec)

    monkeypatch.setattr(teaching, "load_model", load_model)
    (tmp_path / "doc.txt").write_text("The Mongol army seized the town of Otrar in 1219.\n")
    with pytest.raises(Loaded, match=EMBEDDED):  # no config: LearnConfig()'s, up to loading its model
        learn([tmp_path / "doc.txt"], tmp_path / "adapter", progress=lambda *a: None)
    runners = ["run_knowledge_eval", "run_knowledge_training", "run_continual_eval", "run_arc_eval", "run_arc_training",
               "run_rrr_probe", "run_build_failures", "run_rrr_train", "run_rrr_eval", "learn", "ask"]
    configs = ["KnowledgeEvalConfig", "ReSTEMConfig", "KnowledgeTrainConfig", "ContinualConfig", "ArcEvalConfig",
               "ArcTrainConfig", "ArcSettings", "ProbeConfig", "FailuresConfig", "RRRTrainConfig", "RRRGRPOConfig",
               "RRREvalConfig", "LearnConfig", "AskConfig"]
    for name in runners + configs:
        assert name in selfadapt.__all__ and name in dir(selfadapt) and f"{name}(" in selfadapt.__doc__
        assert getattr(selfadapt, name).__doc__
    # imported on first use: `import selfadapt` does not import the GRPO trainer or the experiments
    code = ("import sys, selfadapt; print(sorted(m for m in ('selfadapt.rrr.grpo', 'selfadapt.rrr.experiment', "
            "'selfadapt.knowledge.experiment', 'selfadapt.arc.experiment') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_a_question_is_asked_under_the_title_of_the_document_it_names(tiny_dir, tmp_path, monkeypatch):
    """Each document's pairs train under its own title, and a taught question asked under another prompt
    is answered less often (RESULTS.md, "A taught question asked in the prompt it was trained in"): an
    adapter of several documents, or several adapters combined, ask each question under the title of the
    document it names, not under "your documents"."""
    import selfadapt.answering as answering
    from selfadapt.answering import ask

    docs = {"otrar": "The Mongol army seized the town of Otrar in 1219.", "silver": "Molten silver was poured."}
    for name, text in docs.items():
        (tmp_path / f"{name}.txt").write_text(text + "\n")
    cfg = LearnConfig(model=str(tiny_dir), selfedits_per_chunk=0, check="none", probe=False, distill=0, reading=0,
                      lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    both = tmp_path / "both"
    meta = learn([tmp_path / "otrar.txt", tmp_path / "silver.txt"], both, cfg, progress=lambda *a: None)
    assert meta["title"] == "your documents"
    assert [d["title"] for d in meta["documents"]] == ["otrar", "silver"]
    assert "otrar" in meta["documents"][0]["vocabulary"] and "silver" in meta["documents"][1]["vocabulary"]
    alone = []
    for name in docs:
        alone.append(tmp_path / f"{name}-adapter")
        learn([tmp_path / f"{name}.txt"], alone[-1], cfg, progress=lambda *a: None)

    asked, real = [], answering.short_answers
    monkeypatch.setattr(answering, "short_answers", lambda net, tok, pairs, *a, **k: asked.extend(pairs)
                        or real(net, tok, pairs, *a, **k))
    q = ["Who seized Otrar?", "What was poured as molten silver?"]
    kw = dict(model=str(tiny_dir), max_new_tokens=4, dtype="float32", device="cpu")
    ask(q, both, **kw)
    assert sorted(asked) == [("otrar", q[0]), ("silver", q[1])]
    asked.clear()
    ask(q, alone, combine=True, **kw)
    assert sorted(asked) == [("otrar", q[0]), ("silver", q[1])]


def test_a_number_with_a_thousands_comma_stays_whole_in_a_cloze_question():
    """Issue 46: "who caught 77 passes for 1,104 yards" was cut at the comma inside the number ("Who caught a
    career-high 77 passes for 1?"), so the pair taught a question no reader asks."""
    from selfadapt.knowledge.cloze import cloze_pairs, reworded

    pairs = cloze_pairs("His best receiver was tight end Greg Olsen, who caught 77 passes for 1,104 yards in 2015.")
    assert ("Who caught 77 passes for 1,104 yards in 2015?", "Greg Olsen") in pairs
    assert ("His best receiver was tight end Greg Olsen, who caught 77 passes for how many yards in 2015?",
            "1,104") in pairs
    assert reworded("Olsen caught how many passes for 1,104 yards, a record?", None, "") == \
        "Olsen caught how many passes for 1,104 yards?"  # cut at the first comma that is not the number's


def test_cloze_pairs_ask_for_number_words_modified_counts_and_whole_dates():
    """Issue 46: of the reader questions `learn` could not answer on 20 train documents, many asked for a count
    in words ("six Pro Bowl selections"), a count whose noun has a modifier ("45 total touchdowns") or a whole
    date ("20 December 1914", "April 1970"), which the cloze pairs never asked for whole."""
    from selfadapt.knowledge.cloze import cloze_pairs, reworded

    def answers(sentence):
        return {a: q for q, a in cloze_pairs(sentence)}

    got = answers("The offense had six Pro Bowl selections and scored 45 total touchdowns.")
    assert got["six"] == "The offense had how many Pro Bowl selections and scored 45 total touchdowns?"
    assert got["45"] == "The offense had six Pro Bowl selections and scored how many total touchdowns?"
    assert answers("The party lost five seats.") == {"five": "The party lost how many seats?"}
    assert answers("Two of the bridges were rebuilt.") == {}  # a number in words that counts nothing
    assert answers("The tower has forty-two floors.") == {}  # never a piece of a compound
    assert "Five" not in answers("The Five Nations teams met.")  # nor of a name
    got = answers("The article was published on 20 December 1914 in the Tribune.")
    assert got["20 December 1914"] == "On what date was the article published in the Tribune?"
    assert "1914" not in got and "December" not in got  # the date is one fact, not three
    got = answers("The merger was cancelled on January 1, 1968, by the board.")
    assert got["January 1, 1968"] == "On what date was the merger cancelled?"
    assert "January" not in got and "1968" not in got
    got = answers("The company was founded on March 3, 1999 in Chicago by Bob Smith.")
    assert got["Bob Smith"] == "Who founded the company on March 3, 1999 in Chicago?"  # a date's comma cuts nothing
    got = answers("On 5 May 1955, the treaty was signed in Vienna.")
    assert reworded(got["5 May 1955"], None, "") is None  # not cut to "On what date?"
    got = answers("The mission was launched in April 1970 by the Apollo Office.")
    assert got["April 1970"] == "In what month and year was the mission launched by the Apollo Office?"
    assert reworded(got["April 1970"], None, "") == "When was the mission launched by the Apollo Office?"
    assert reworded("On what date was the article published?", None, "") == "When was the article published?"


def test_cloze_pairs_keep_names_scales_possessives_and_signs_whole():
    """Issue 46, reader questions `learn` missed on train documents: a sentence-initial two-word name was cut to
    its surname ("Michael what criticized …?"), a scale word left out of its number ("reach what million
    households?"), a year asked inside a word ("by mid-what year?"), a possessive kept in the answer ("on what
    satellites? Astra's" where a reader's gold is "Astra"), a temperature's sign left in the question, a typographic
    apostrophe left in it ("The what’s official ledgers"), the ends of a range asked alone ("6/what-13/14 years")
    and "Where are There …?"."""
    from selfadapt.knowledge.cloze import cloze_pairs

    def answers(sentence):
        return {a: q for q, a in cloze_pairs(sentence)}

    got = answers("Michael Grade criticized the operations in front of the Select Committee.")
    assert got["Michael Grade"] == "Who criticized the operations in front of the Select Committee?"
    assert "Grade" not in got
    assert "Throughout the Middle Ages" not in answers("Throughout the Middle Ages the town was ruled by Kiev.")
    assert "Many Kenyans" not in answers("Many Kenyans moved to Nairobi in 1960.")  # a quantifier, not a first name
    got = answers("Within two months BSkyB reached 3.5 million households by mid-1994.")
    assert got["3.5 million"] == "Within two months BSkyB reached how many households by mid-1994?"
    assert "3.5" not in got and "1994" not in got  # "mid-1994" is one word
    assert answers("The station has two hundred trains.") == {"two hundred": "The station has how many trains?"}
    got = answers("The new package included four channels broadcasting on Astra's satellites.")
    assert got["Astra"] == "The new package included four channels broadcasting on whose satellites?"
    assert "Astra's" not in got
    got = answers("The lowest temperature recorded in Victoria was −11.7 °C at Omeo.")
    assert got["−11.7 °C"] == "The lowest temperature recorded in Victoria was what at Omeo?"
    got = answers("Revenue was reported in Bainbridge’s official ledgers.")  # a typographic apostrophe
    assert got["Bainbridge"] == "Revenue was reported in whose official ledgers?"
    got = answers("The first department store in Newcastle was Bainbridge's, opened in 1838.")
    assert got["Bainbridge's"].startswith("The first department store in Newcastle was what")  # no noun: not whose
    got = answers("Primary school age is 6/7-13/14 years and Emerson Bainbridge (1817–1892) founded it.")
    assert not {"6", "7", "13", "14", "1817", "1892"} & set(got)  # the ends of a range are no facts alone
    got = answers("There are several major shopping areas in Newcastle City Centre.")
    assert got["Newcastle City Centre"] == "Where are there several major shopping areas?"


def test_cloze_pairs_keep_initials_decades_compounds_and_numbered_names_whole():
    """Issue 46, more questions no reader asks, from train documents: a name cut at its middle initial ("Donald
    F" ended a sentence), a name inside a hyphenated word ("a post-what I environment"), a decade asked as a
    year ("In the what years"), a compound ("a what-minute abridgement"), a name's own number asked alone
    ("The Scotland Act what year", "Apollo what launched"), a name cut at "of the" ("passed by whom of the United
    Kingdom"), a day-month date cut to its month ("the previous day (what 20)") and a possessive after "the"."""
    from selfadapt.knowledge.cloze import cloze_pairs, sentences

    def answers(sentence):
        return {a: q for q, a in cloze_pairs(sentence)}

    assert len(sentences("However, the regulator Donald F. Turner expressed doubts. ABC then waited a year.")) == 2
    got = answers("However, the previous day (December 20), antitrust regulator Donald F. Turner expressed doubts.")
    assert "Donald F. Turner" in got and "Donald" not in got
    assert got["December 20"].endswith("the previous day (what date), antitrust regulator Donald F. Turner "
                                       "expressed doubts?")
    got = answers("Tesla made predictions about a post-World War I environment in 1914.")
    assert "World War" not in got and "World War I" not in got
    got = answers("In the 1960s, a series of discoveries showed that the Earth's lithosphere moves.")
    assert got["1960s"] == "In what decade, a series of discoveries showed that the Earth's lithosphere moves?"
    assert got["Earth"] == "In the 1960s, a series of discoveries showed that whose lithosphere moves?"
    assert "21" not in answers("The release was a 21-minute abridgement of the story The Chase.")
    got = answers("The law was amended by the Scotland Act 2012 and by the Parliament of the United Kingdom.")
    assert "Scotland Act 2012" in got and "2012" not in got  # a name's own number is no fact of its own
    assert "Parliament of the United Kingdom" in got and "United Kingdom" not in got
    assert "Another NASA" not in answers("Another NASA review board was convened in 1970.")
    assert "13" not in answers("Apollo 13 launched Lovell and Jack Swigert in April 1970.")  # not "Apollo what"
    assert answers("The literacy level stands at 85% of the population.")["85%"] == \
        "The literacy level stands at what of the population?"


def test_cloze_names_and_numbers_stop_where_they_should():
    """A review over every train and eval200 passage found these made wrong by the fixes above: a name that took
    the number after it ("Carolina Panthers 24"), a sentence-opening preposition or adverb taken for a first name
    ("Between 1990", "Later Apple"), a sentence joined to the next after "World War I.", a decimal cut at its
    point ("£what.3bn"), a day-month date that kept its comma, a name after "post-" asked in part ("post-World
    what"), a decade fronted as a person ("By whom was the craze fading?"), and "whose" that lost its "by"."""
    from selfadapt.knowledge.cloze import cloze_pairs, sentences

    def answers(sentence):
        return {a: q for q, a in cloze_pairs(sentence)}

    got = answers("Denver beat the champion Carolina Panthers 24–10 and Manning passed to Demaryius Thomas 12 times.")
    assert "Carolina Panthers" in got and "Demaryius Thomas" in got and "12" in got
    assert not any(a[-1].isdigit() and " " in a for a in got)  # no name with a number stuck to it
    for opener in ("Between 1990 and 2000 the city grew rapidly.", "Later Apple released the iPod in 2001.",
                   "Nearly 500 people died in the fire of 1906.", "Following World War II the city was rebuilt."):
        assert not any(a.split()[0] == opener.split()[0] for a in answers(opener)), opener
    assert len(sentences("Tesla served in Austria during World War I. He then moved to New York in 1919.")) == 2
    got = answers("The company reported a loss of £1.3bn and 2.4m customers in 2010.")
    assert "1" not in got and "2" not in got
    got = answers("On April 16, the commander allowed the garrison to leave the fort.")
    assert "April 16" in got and "April 16," not in got
    got = answers("Tesla wrote about the post-World War I environment of Europe.")
    assert not {"War I", "World War", "War"} & set(got)
    got = answers("This mandolin craze was fading by the 1930s in America.")
    assert "By whom" not in got["1930s"]
    got = answers("Newton was limited by Denver's defense in the final game.")
    assert got["Denver"] == "Newton was limited by whose defense in the final game?"


def test_cloze_subjects_particles_numbered_names_and_possessive_runs():
    """Issue 46, SQuAD golds no cloze answer matched on 50 train documents, each a span cut wrong: a sentence's
    one-word subject never asked ("Cameron congratulated …", gold "Cameron"), a name run on past its possessive
    ("Robert R. Gilruth's Space Task Group", gold "Robert R. Gilruth"), two people joined by "and" ("Sam Chisholm
    and Rupert Murdoch", gold "Sam Chisholm"), a name cut at "von", a name's own number left out ("Scotland Act
    1998", "Apollo 11"), a count of a capitalised noun never asked ("fourteen Vice Presidents"), "So" taken for a
    first name, an "It" of "It became clear that …" replaced by the title, and a sentence run into the next after
    a closing quote."""
    from selfadapt.knowledge.cloze import cloze_pairs, sentences

    def answers(sentence, title=None):
        return {a: q for q, a in cloze_pairs(sentence, title)}

    got = answers("Cameron congratulated the SNP on their victory.")
    assert got["Cameron"] == "Who congratulated the SNP on their victory?"
    assert answers("Montpellier was among the most important towns.")["Montpellier"] == \
        "What was among the most important towns?"
    got = answers("So Gilruth was given authority to grow his organization.")
    assert "Gilruth" in got and "So Gilruth" not in got
    for sentence in ("Here lived the old keeper.", "Meanwhile stood the tower.", "Still remained the city walls."):
        assert not any(a.split()[0] == sentence.split()[0] for a in answers(sentence)), sentence
    got = answers("The program exceeded the capabilities of Robert R. Gilruth's Space Task Group.")
    assert got["Robert R. Gilruth"] == "The program exceeded the capabilities of whose Space Task Group?"
    assert {"Space Task Group", "Robert R. Gilruth's Space Task Group"} <= set(got)  # a reader's gold may be either
    got = answers("The idea came from Sam Chisholm and Rupert Murdoch in 1993.")
    assert {"Sam Chisholm", "Rupert Murdoch", "Sam Chisholm and Rupert Murdoch"} <= set(got)
    got = answers("The company was founded by Sam Chisholm and Rupert Murdoch in 1993.")
    assert got["Sam Chisholm"] == "The company was founded by whom and Rupert Murdoch in 1993?"  # not "Who founded
    assert got["Sam Chisholm and Rupert Murdoch"] == "Who founded the company in 1993?"  # the company and Rupert …?"
    assert answers("He met Dr. Smith at the hospital in 1990.")["Dr. Smith"] == "He met what at the hospital in 1990?"
    assert "Little Richard" in answers("Little Richard was born in Macon in 1932.")
    assert answers("Paris hosted the games in 1900.")["Paris"] == "Who hosted the games in 1900?"
    assert "Tibetan Affairs" not in answers("The Bureau of Buddhist and Tibetan Affairs ruled the monks.")  # one body
    assert "Day Massacre" not in answers("Thousands died in the St. Bartholomew's Day Massacre of 1572.")
    assert "Johann von Staupitz" in answers("The young monk was guided by Johann von Staupitz, his superior.")
    assert "Johann von Staupitz" in answers("Johann von Staupitz, his superior, pointed him to the merits of Christ.")
    got = answers("The functions of the parliament are set by the Scotland Act 1998 and its later amendments.")
    assert "Scotland Act 1998" in got and "Scotland Act" not in got and "1998" not in got
    got = answers("Every flag is still standing except the one left during the Apollo 11 mission.")
    assert "Apollo 11" in got and "11" not in got
    got = answers("Beneath the President are the Provost and fourteen Vice Presidents.")
    assert got["fourteen"] == "Beneath the President are the Provost and how many Vice Presidents?"
    assert "Vice Presidents" not in got
    got = answers("It became clear that managing the program would exceed the capabilities of NASA.", "Apollo")
    assert not any(q.startswith("Apollo") for q in got.values())
    assert len(sentences('He said, "I lost touch with Christ the Savior." Johann von Staupitz pointed him '
                         "to the merits of Christ.")) == 2
    # and what none of these may take
    assert len(sentences('The show "Who Wants to Be a Millionaire?" was a hit in many countries.')) == 1
    assert len(sentences("The church of St. Augustine was built by the monks in 1900.")) == 1
    for sentence in ("Left untreated, the disease spreads.", "Little is known of the first settlers.",
                     "First demonstrated in 1973, the device was sold by Xerox."):
        assert not any(a.split()[0] == sentence.split()[0].rstrip(",") for a in answers(sentence)), sentence
    got = answers("So far, the only proposal was rejected by Parliament.")
    assert got and all(q.startswith("So far") for q in got.values())  # not "Far, the only proposal …"
    got = answers("It is believed to be the oldest church in Dunholm.", "Old Kirk")
    assert got["Dunholm"] == "Where is Old Kirk believed to be the oldest church?"  # "It" is the church
    assert answers("They were licensed by St. George's Church in 1784.")["St. George's Church"] == \
        "Who licensed them in 1784?"
    assert "Lowery 2000" not in answers("Clothing is older than the first needles (Lowery 2000).")  # a citation
    got = answers("Hearst Television's 16 ABC-affiliated stations and the office at 149 Columbus Avenue stayed.")
    assert "how many ABC-affiliated stations" in got["16"]
    assert not any("how many Columbus" in q for q in got.values())


def test_cloze_pairs_ask_for_a_term_the_sentence_names():
    """Issue 46: of the SQuAD golds no cloze answer matched, many are terms a sentence defines ("in a process called
    chemotaxis", "known as the restriction modification system"); a reader asks "What is … called?"."""
    from selfadapt.knowledge.cloze import _cloze, cloze_pairs

    def answers(sentence):
        return {a: q for q, a in cloze_pairs(sentence)}

    got = answers("Neutrophils move to the site of inflammation in a process called chemotaxis, and are usually first.")
    assert got["chemotaxis"] == "Neutrophils move to the site of inflammation in a process called what?"
    assert answers("Their main defense is known as the restriction modification system.") == {
        "restriction modification system": "Their main defense is known as what?"}
    assert answers("This cycle is sometimes referred to as the practical Carnot cycle.")["practical Carnot cycle"] == \
        "This cycle is sometimes referred to as what?"  # a term stays where it is named, not "To whom …"
    for sentence in ("The senator called for an end to the war.", "The town was named after the river.",
                     "Tesla called him early in the morning."):
        assert "term" not in {kind for *_, kind in _cloze(sentence, None)}, sentence  # a phrasal verb, a pronoun
    assert "The Game" in answers("The meeting is usually called simply The Game.")  # a name, not "simply The Game"
    assert "simply The Game" not in answers("The meeting is usually called simply The Game.")
    assert "blue-green algae" in answers("They are sometimes called blue-green algae even though they are bacteria.")


def test_a_long_cloze_question_cut_to_the_words_around_its_answer():
    """Issue 46: a long sentence gives many cloze questions that differ only where the answer was, and a reader
    asks a few of its words ("How many total touchdowns did Cam Newton score?"): the adapter answered with
    another span of the same sentence."""
    from selfadapt.knowledge.cloze import cloze_pairs, reworded, shortened

    long = ("Pro Bowl quarterback Cam Newton had one of his best seasons, throwing for 3,837 yards and rushing for "
            "636, while recording a career-high and league-leading how many total touchdowns (35 passing, 10 "
            "rushing), a career-low 10 interceptions?")
    assert shortened(long) == \
        "Pro Bowl quarterback Cam Newton, while recording a career-high and league-leading how many total touchdowns?"
    assert shortened("Newton's leading receivers were tight end Greg Olsen, who caught how many passes for 1,104 "
                     "yards?") == "Greg Olsen, who caught how many passes for 1,104 yards?"  # "who" is Olsen
    assert shortened("The offense (which led the league) scored, in the end, how many points in 2015?") == \
        "The offense, how many points in 2015?"  # the subject before the brackets
    assert shortened("Steam arrived in what year, when the company bought two engines?") is None  # at the front
    assert shortened("Who built the tower?") is None
    assert shortened("In the end, the line was sold to what?") is None  # no subject before a verb to keep
    assert shortened("Has, in the war, supported what?") is None  # "Has" is no subject
    sentence = ("Kennedy, who had served three terms in the House, was elected to the Senate in 1952, defeating "
                "Henry Cabot Lodge.")
    cut = {a: shortened(q) for q, a in cloze_pairs(sentence)}
    assert cut["Senate"] == "Kennedy, was elected to the what in 1952?"  # the wh-phrase asked, not "who had …"
    assert cut["1952"] == "Kennedy, was elected to the Senate in what year?"
    assert reworded(next(q for q, a in cloze_pairs(sentence) if a == "Senate"), None, sentence) == \
        "Kennedy, who had served three terms in the House, was elected to the what in 1952?"
    assert shortened("Apollo 13, what?") is None  # nothing but the subject and the wh-phrase


def test_learn_short_questions_from_the_cli_to_the_update(tiny_dir, tmp_path, monkeypatch):
    assert learn_cli_config(tmp_path, monkeypatch, "--short-questions").short_questions
    assert not LearnConfig().short_questions  # off by default: measured, it hurt

    doc = tmp_path / "team.txt"
    doc.write_text("Quarterback Cam Newton had his best season, throwing for 3,837 yards, while recording 45 total "
                   "touchdowns. The team was founded in 1993 by Jerry Richardson.")
    trained, real = [], ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    for short in (False, True):
        trained.clear()
        cfg = LearnConfig(model=str(tiny_dir), short_questions=short, check="none", probe=False, distill=0,
                          reading=0, lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
        meta = learn([doc], tmp_path / f"adapter{short}", cfg, progress=lambda *a: None)
        prompts = [ex[0] for ex in trained[0] if isinstance(ex, tuple)]
        cut = "Question: Quarterback Cam Newton, while recording how many total touchdowns?<"
        assert any(cut in p for p in prompts) is short and meta["config"]["short_questions"] is short
