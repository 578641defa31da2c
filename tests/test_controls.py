import pytest

from selfadapt.knowledge.controls import FORMAT_DONORS, QAControl, control_domain, format_donor
from selfadapt.knowledge.data import load_passages
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig
from selfadapt.knowledge.measure import qa_prompt


def test_format_control_trains_another_passages_gold_pairs_completion_only(tiny, passages):
    dom = control_domain("format", KnowledgeDomain(tiny.tokenizer), passages)
    assert isinstance(dom, QAControl)
    donors = load_passages("train", limit=len(FORMAT_DONORS), offset=FORMAT_DONORS.start)
    for p in passages:
        donor = format_donor(p, donors)
        assert donor.context != p.context and donor is format_donor(p, donors)  # stable
        examples = dom.training_data(p, None).examples
        assert examples[0] == p.text
        assert examples[1:] == [(qa_prompt(tiny.tokenizer, donor.title, q.question), q.answer + "<|im_end|>")
                                for q in donor.questions]
    # a passage of the donor pool is never its own donor
    assert format_donor(donors[0], donors).context != donors[0].context


def test_gold_qa_trains_the_test_pairs_and_only_on_train(tiny, passages, passages_file):
    dom = control_domain("gold-qa", KnowledgeDomain(tiny.tokenizer), passages)
    p = passages[0]
    assert dom.training_data(p, None).examples[1:] == [
        (qa_prompt(tiny.tokenizer, p.title, q.question), q.answer + "<|im_end|>") for q in p.questions]
    with pytest.raises(ValueError, match="only on the train split"):
        KnowledgeEvalConfig(dataset=str(passages_file), controls=["gold-qa"])
    with pytest.raises(ValueError, match="unknown control"):
        KnowledgeEvalConfig(controls=["recital"])
    KnowledgeEvalConfig(dataset="train", controls=["format", "gold-qa"])
