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
    texts = d.training_texts(p, IMPLICATIONS)
    assert texts[0] == "Genghis Khan\nThe Mongol army seized the town of Otrar. The Shah fled."
    assert texts[1] == "Genghis Khan\nThe Shah's army suffered from internal divisions and feuding."
    assert len(texts) == 4
    assert d.training_texts(p, None) == [p.text]
    no_passage = KnowledgeDomain(tiny.tokenizer, "implications", include_passage=False)
    assert len(no_passage.training_texts(p, IMPLICATIONS)) == 3


def test_self_qa_training_texts_have_the_test_prompt_shape(tiny, passages):
    from selfadapt.knowledge.measure import qa_prompt

    d = KnowledgeDomain(tiny.tokenizer, "self-qa")
    texts = d.training_texts(passages[0], "Q: Which town was seized?\nA: Otrar")
    assert texts[1] == qa_prompt(tiny.tokenizer, "Genghis Khan", "Which town was seized?") + "Otrar<|im_end|>"
