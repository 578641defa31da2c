"""Self-edits for passages: the five SEAL formats and how each becomes training data.

Rules for turning a self-edit into training sequences:
- ``implications*``: one sequence per line/list item. Numbering, bullets and markdown
  emphasis are stripped; lines ending in ``:`` (headings, "Here are...:") and items of
  fewer than 4 words are dropped.
- ``rewrite``: one sequence per paragraph (blank-line separated) of at least 4 words.
- ``self-qa``: ``Q: ... / A: ...`` pairs, each rendered as a chat exchange (question from
  the user, answer from the assistant) so it has the shape of the no-context test.
- Every sequence starts with the passage title, so that facts stay tied to their topic.
- The passage itself is added as the first sequence unless ``include_passage=False``.
A self-edit that yields no sequence is invalid (reward 0, reason recorded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..domain import InvalidSelfEdit


@dataclass(frozen=True)
class SelfEditFormat:
    name: str
    instruction: str
    max_new_tokens: int


FORMATS: dict[str, SelfEditFormat] = {
    f.name: f
    for f in [
        SelfEditFormat(
            "implications",
            "Read the passage below. List the implications that follow from it: facts it states, "
            "facts it implies, and how its details relate. Write one implication per line.",
            256,
        ),
        SelfEditFormat(
            "implications-long",
            "Read the passage below. Write a long list of implications that follow from it. Each "
            "line must be a complete, self-contained sentence that names who or what it is about, "
            "so it can be understood without the passage. Cover every name, date and number.",
            512,
        ),
        SelfEditFormat(
            "implications-very-long",
            "Read the passage below. Write a very long and thorough list of implications that follow "
            "from it, one complete sentence per line. Restate every fact in several ways, connect "
            "facts to each other, and spell out consequences. Name the subject in every sentence.",
            1024,
        ),
        SelfEditFormat(
            "rewrite",
            "Rewrite the passage below in your own words, in several different ways. Keep every "
            "fact, name, date and number. Separate the versions with a blank line.",
            512,
        ),
        SelfEditFormat(
            "self-qa",
            "Read the passage below and write questions that it answers, each followed by its "
            "short answer. Use exactly this format for every pair:\nQ: <question>\nA: <answer>",
            384,
        ),
    ]
}
# Chosen on train passages: the best own self-edit on every measure (RESULTS.md, "The default
# self-edit: format and decoding on the train split").
DEFAULT_FORMAT, DEFAULT_DECODING = "self-qa", "grounded"

_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\(?\d{1,3}[.):]|[a-zA-Z][.)])\s+")
_QA = re.compile(
    r"^\s*(?:\*\*)?Q(?:uestion)?\s*\d*\s*[:.](?:\*\*)?\s*(?P<q>.+?)\s*\n"
    r"\s*(?:\*\*)?A(?:nswer)?\s*\d*\s*[:.](?:\*\*)?\s*(?P<a>.+?)\s*$",
    re.MULTILINE | re.IGNORECASE,
)


def selfedit_instruction(fmt: str, title: str, context: str) -> str:
    """The user message asking for a self-edit of a passage."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown self-edit format {fmt!r}; choose from {', '.join(FORMATS)}")
    return f"{FORMATS[fmt].instruction}\n\nTitle: {title}\nPassage: {context}"


def _clean(line: str) -> str:
    line = _LIST_MARKER.sub("", line.strip())
    return line.replace("**", "").replace("__", "").strip()


def _items(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        item = _clean(line)
        if item and not item.endswith(":") and len(item.split()) >= 4:
            out.append(item)
    return out


def _paragraphs(text: str) -> list[str]:
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return [p for p in paras if len(p.split()) >= 4 and not p.endswith(":")]


def parse_qa(text: str) -> list[tuple[str, str]]:
    return [(m["q"].strip(), m["a"].strip()) for m in _QA.finditer(text) if m["q"].strip() and m["a"].strip()]


_ASKING = frozenset("who whom whose what which when where why how is are was were do does did can could will "
                    "would should shall has have had".split())


def is_question(text: str) -> bool:
    """A question, not an instruction: it ends with "?" or asks within its first three words
    ("In which year ...", "Who ..."). The small model often writes "Read the following article
    and answer the question." as its Q line: as a check question that tests nothing. (Self-QA
    training keeps such pairs: the loss is on the answer span, the Q line is only its prompt.)"""
    words = re.findall(r"[a-z]+", text.lower())[:3]
    return text.rstrip().endswith("?") or any(w in _ASKING for w in words)


def selfedit_items(fmt: str, text: str) -> list[str] | list[tuple[str, str]]:
    """The units a self-edit contributes: lines, paragraphs, or (question, answer) pairs."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown self-edit format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not text or not text.strip():
        raise InvalidSelfEdit("empty self-edit")
    if fmt == "self-qa":
        items: list = parse_qa(text)
        reason = "no 'Q: ... / A: ...' pair found"
    elif fmt == "rewrite":
        items = _paragraphs(text)
        reason = "no paragraph of 4+ words"
    else:
        items = _items(text)
        reason = "no line of 4+ words"
    if not items:
        raise InvalidSelfEdit(f"unparsable {fmt} self-edit: {reason} in {text[:80]!r}")
    return items
