"""`learn` on the tiny model: what the model knew is probed before and after, its own general
answers are replayed into the update, check questions are questions, and every step reports."""

import json

from selfadapt.knowledge.general import general_questions
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.teach import LearnConfig, check_questions, learn


def test_learn_probes_general_knowledge_replays_its_own_answers_and_reports_each_step(tiny_dir, tmp_path,
                                                                                       monkeypatch):
    doc = tmp_path / "otrar.txt"
    doc.write_text("The Mongol army seized the town of Otrar in 1219. Molten silver was poured into the ears.\n")
    trained, events = [], []
    real = ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    cfg = LearnConfig(model=str(tiny_dir), selfedits_per_chunk=1, distill=5, reading=2,
                      lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    meta = learn([doc], tmp_path / "adapter", cfg, progress=lambda step, done, total: events.append(step))
    probe, distill = general_questions()
    g = meta["general"]
    assert len(g["before"]) == len(g["after"]) == len(probe) == g["questions"]
    assert 0 <= g["kept"] <= g["known_before"] == sum(r["correct"] for r in g["before"])
    assert json.loads((tmp_path / "adapter" / "selfadapt.json").read_text())["general"]["kept"] == g["kept"]
    (examples,) = trained
    prompts = {ex[0] for ex in examples if isinstance(ex, tuple)}
    assert sum(any(q in p for p in prompts) for q in distill) == 5  # five of the model's own general answers
    assert sum("Question:" in p and "\n\nQuestion:" in p for p in prompts) == 2  # reading comprehension
    steps = set(events)
    assert {"loading the model", "writing check questions", "general questions (before)",
            "the model's own general answers, to replay", "otrar.txt: writing self-edits", "otrar.txt: training",
            "general questions (after)"} <= steps
    assert set(meta["seconds"]) == steps  # every step is timed
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "General questions the model answered right before learning" in card and "Time:" in card


def test_a_check_question_that_is_not_a_question_is_dropped(tiny):
    from selfadapt.knowledge.data import Passage
    from selfadapt.knowledge.domain import KnowledgeDomain

    chunk = Passage("Otrar", "The Mongol army seized the town of Otrar in 1219.", ())
    checker = KnowledgeDomain(tiny.tokenizer, "self-qa", grounded=True)
    text = "Q: Read the following article and answer the question.\nA: The Mongol army\nQ: When was Otrar seized?\nA: 1219"
    assert check_questions(checker, chunk, text) == [("When was Otrar seized?", "1219")]


def test_an_adapter_from_learn_loads_with_peft_alone_and_gives_asks_logits(tiny_dir, tmp_path):
    """It names its base model as a user would find it, so PEFT's AutoPeftModelForCausalLM loads it."""
    import torch
    from peft import AutoPeftModelForCausalLM

    from selfadapt.lora import load_adapter
    from selfadapt.models import load_model
    from selfadapt.teach import name_base_model

    doc = tmp_path / "otrar.txt"
    doc.write_text("The Mongol army seized the town of Otrar in 1219.\n")
    cfg = LearnConfig(model=str(tiny_dir), selfedits_per_chunk=1, check=False, probe=False, distill=0, reading=0,
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
