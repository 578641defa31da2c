import pytest
import torch

from selfadapt.domain import ItemError
from selfadapt.generation import SamplingConfig
from selfadapt.inner_loop import evaluate_base, evaluate_selfedit
from selfadapt.knowledge.data import Passage
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.lora import LoRAConfig, ResidentLoRA

SELFEDIT = "1. The Mongol army seized the town of Otrar.\n2. The Shah fled rather than surrender."


@pytest.fixture()
def setup(tiny):
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, lr=1e-2, epochs=2, batch_size=4))
    domain = KnowledgeDomain(tiny.tokenizer, "implications", answer=SamplingConfig(8, 0.0, 1.0, 4))
    return lora, domain


def test_selfedit_evaluation_records_before_after_and_restores_base(setup, passages):
    lora, domain = setup
    p = passages[0]
    before = evaluate_base(lora, domain, p)
    res = evaluate_selfedit(lora, domain, p, SELFEDIT, seed=0, before=before)
    assert res.status == "ok" and res.before == before.score
    assert len(res.records) == len(p.questions)
    assert {"question", "gold", "response", "exact_match", "f1", "contains", "mc_prob", "mc_acc",
            "answer_logprob", "options"} <= set(res.records[0])
    assert res.train["sequences"] == 3 and res.train["steps"] == 2
    assert {"build", "train", "answer", "grade"} <= set(res.seconds)
    again = evaluate_base(lora, domain, p)  # the base model is back
    assert [r["response"] for r in again.records] == [r["response"] for r in before.records]


def test_invalid_selfedit_gets_zero_reward_with_reason(setup, passages):
    lora, domain = setup
    res = evaluate_selfedit(lora, domain, passages[0], "", seed=0, before=evaluate_base(lora, domain, passages[0]))
    assert (res.status, res.score, res.reason) == ("invalid_selfedit", 0.0, "empty self-edit")
    assert res.gain == -res.before


def test_nan_loss_gets_zero_reward(setup, passages):
    lora, domain = setup
    hook = lora.model.get_input_embeddings().register_forward_hook(
        lambda m, i, out: out * float("nan") if torch.is_grad_enabled() else out)
    res = evaluate_selfedit(lora, domain, passages[0], SELFEDIT, seed=0)
    hook.remove()
    assert res.status == "nan_loss" and res.score == 0.0 and "nan" in res.reason


def test_passage_without_questions_is_an_item_error(setup):
    lora, domain = setup
    with pytest.raises(ItemError, match=r"passage 4 \('Empty'\) has no questions"):
        evaluate_base(lora, domain, Passage("Empty", "Nothing to ask.", (), index=4))
