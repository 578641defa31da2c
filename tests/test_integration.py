"""The real embedded model (SmolLM2-135M-Instruct) on a real eval200 passage."""

import pytest

from selfadapt.inner_loop import evaluate_base, evaluate_selfedit
from selfadapt.knowledge import KnowledgeDomain, load_external_selfedits, load_passages
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import load_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm():
    return load_model()


def test_embedded_model_learns_a_real_passage(smollm):
    passage = load_passages("eval200", limit=1)[0]
    lora = ResidentLoRA(smollm.model, smollm.tokenizer, LoRAConfig(epochs=5))
    domain = KnowledgeDomain(smollm.tokenizer, "implications")
    base = evaluate_base(lora, domain, passage)
    (gpt,) = load_external_selfedits("gpt-4.1", [passage])[0][:1]
    res = evaluate_selfedit(lora, domain, passage, gpt, seed=0, before=base)
    assert res.status == "ok" and len(res.records) == len(passage.questions) == 5
    assert res.train["sequences"] > 5  # the passage plus GPT-4.1's implications, one per line
    assert res.train["final_loss"] < 0.5 * res.train["first_loss"]
    assert [r["response"] for r in res.records] != [r["response"] for r in base.records]
    assert all(r["response"] for r in res.records)
    again = evaluate_base(lora, domain, passage)
    assert [r["response"] for r in again.records] == [r["response"] for r in base.records]
