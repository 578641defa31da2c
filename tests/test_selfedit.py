import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfadapt.domain import InvalidSelfEdit
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.selfedit import FORMATS, parse_qa, selfedit_instruction, selfedit_items

IMPLICATIONS = """**Implications:**

1. The Shah's army suffered from internal divisions and feuding.
2) Mongol strategy exploited the fragmentation of the enemy.
- **Otrar** was seized quickly by the Mongols.
* Too short.
Here are some more implications:
"""


def test_implications_are_split_cleaned_and_filtered():
    assert selfedit_items("implications", IMPLICATIONS) == [
        "The Shah's army suffered from internal divisions and feuding.",
        "Mongol strategy exploited the fragmentation of the enemy.",
        "Otrar was seized quickly by the Mongols.",
    ]


def test_rewrite_splits_paragraphs():
    text = "The Mongols took Otrar\nquickly and decisively.\n\nShort.\n\nThe Shah fled rather than surrender."
    assert selfedit_items("rewrite", text) == ["The Mongols took Otrar quickly and decisively.",
                                               "The Shah fled rather than surrender."]


def test_self_qa_pairs():
    text = "Q: Which town was seized?\nA: Otrar\n\nQuestion 2: What metal?\nAnswer 2: silver\nQ: dangling"
    assert parse_qa(text) == [("Which town was seized?", "Otrar"), ("What metal?", "silver")]


@pytest.mark.parametrize("fmt,text,match", [
    ("implications", "", "empty"),
    ("implications", "   \n\n", "empty"),
    ("implications", "Sure:\n1. ok\n", "no line of 4\\+ words"),
    ("self-qa", "The Mongols took Otrar in a battle.", "no 'Q: ... / A: ...' pair"),
    ("rewrite", "Hi.\n\nNo.", "no paragraph"),
])
def test_unusable_selfedits_are_invalid_with_a_reason(fmt, text, match):
    with pytest.raises(InvalidSelfEdit, match=match):
        selfedit_items(fmt, text)


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown self-edit format"):
        selfedit_instruction("poem", "t", "c")


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(sorted(FORMATS)), text=st.text(max_size=400))
def test_parser_never_crashes_on_garbage(fmt, text):
    try:
        items = selfedit_items(fmt, text)
    except InvalidSelfEdit:
        return
    assert items and all(items)


def test_training_texts(tiny, passages):
    p = passages[0]
    d = KnowledgeDomain(tiny.tokenizer, "implications")
    texts = d.training_examples(p, IMPLICATIONS)
    assert texts[0] == "Genghis Khan\nThe Mongol army seized the town of Otrar. The Shah fled."
    assert texts[1] == "Genghis Khan\nThe Shah's army suffered from internal divisions and feuding."
    assert len(texts) == 4
    assert d.training_examples(p, None) == [p.text]
    no_passage = KnowledgeDomain(tiny.tokenizer, "implications", include_passage=False)
    assert len(no_passage.training_examples(p, IMPLICATIONS)) == 3


def test_self_qa_pairs_are_prompt_completion_in_the_test_shape(tiny, passages):
    from selfadapt.knowledge.measure import qa_prompt

    d = KnowledgeDomain(tiny.tokenizer, "self-qa")
    examples = d.training_examples(passages[0], "Q: Which town was seized?\nA: Otrar")
    assert examples[1] == (qa_prompt(tiny.tokenizer, "Genghis Khan", "Which town was seized?"), "Otrar<|im_end|>")


def test_a_qa_pair_trains_on_its_answer_tokens_only(tiny, passages):
    """Labels are -100 on every prompt token (system turn, template, question): before, a
    self-QA pair was one string and ~12 of 13 trained tokens were prompt."""
    import random

    from selfadapt.knowledge.measure import qa_prompt
    from selfadapt.lora import encode, make_batches

    tok = tiny.tokenizer
    d = KnowledgeDomain(tok, "self-qa", include_passage=False)
    examples = d.training_examples(passages[0], "Q: Which town was seized?\nA: Otrar")
    assert len(examples) == 1
    [(ids, mask, labels)] = make_batches(encode(tok, examples, 512), tok.pad_token_id, 16, 1024, random.Random(0))
    prompt_len = len(tok(qa_prompt(tok, "Genghis Khan", "Which town was seized?"))["input_ids"])
    answer = tok("Otrar<|im_end|>", add_special_tokens=False)["input_ids"]
    assert (labels[0, :prompt_len] == -100).all()
    assert labels[0, prompt_len:].tolist() == answer


def test_questions_are_told_from_instructions():
    from selfadapt.knowledge.selfedit import is_question

    assert is_question("In which year was Otrar seized") and is_question("Who fled?")
    assert not is_question("Read the following article and answer the question.")
    assert not is_question("Answer the questions below.") and is_question("Name the town?")
