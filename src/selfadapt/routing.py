"""Which questions an adapter answers: those that name something in its documents.

A LoRA update that teaches a 135M model a document also rewrites its answers to unrelated
questions asked under the document's title ("What is the capital of France?" → a name from
the document; RESULTS.md, "Smaller updates do not stop the forgetting"): replay, fewer epochs
and a lower learning rate reduced this but did not stop it. So `ask` sends a question to the
adapter only when it shares a distinctive word with the documents the adapter learned, and
answers the others with the adapter disabled, as the model did before learning. Distinctive:
not a function or question word, and not common, in few of the shipped SQuAD train passages
(``COMMON``); numbers count.
The rule is lexical and shown with every answer, so a user can see and override it
(``ask --no-route``).
"""

from __future__ import annotations

import functools
import re
from collections import Counter

from .knowledge.grounded import FUNCTION_WORDS

QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how name named called does did do is are was were many much "
    "year years kind type first last".split())
_STOP = frozenset(FUNCTION_WORDS) | QUESTION_WORDS
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script: "Новосибирск", "Lumière" are words


def content_words(text: str) -> set[str]:
    """Lower-cased words of 3+ characters (any number) outside the function and question words,
    a plural's final s dropped, so that "museums" meets "museum"."""
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP or (len(w) < 3 and not w.isdigit()):
            continue
        words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return words


COMMON = 0.03  # a word in more than this share of the train passages names nothing in particular


@functools.cache
def common_words() -> frozenset[str]:
    from .knowledge.data import load_passages

    passages = load_passages("train")
    df = Counter(w for p in passages for w in content_words(p.context))
    return frozenset(w for w, n in df.items() if n > COMMON * len(passages))


def distinctive(question: str) -> set[str]:
    """The question's content words that name something in particular (not ``common_words``)."""
    return content_words(question) - common_words()


def about(question: str, vocabulary: set[str] | list[str]) -> bool:
    """Whether the question names something distinctive of the documents whose content words are ``vocabulary``."""
    return bool(distinctive(question) & set(vocabulary))
