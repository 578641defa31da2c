"""Cloze Q→A pairs from a passage's own sentences: no model, so no invented question.

A 135M model's self-QA pairs questions with answers that do not go together ("How many people
worked on the engineering team? — 1871"), and its generic questions ("What is this passage
about?") teach that any question is answered from the document. A cloze pair cannot do
either: its question is a sentence of the passage with one name or number replaced by a
wh-phrase, its answer that name or number. Issue 27 measured such pairs above passage-only
(EM 8.1% vs 0.0 on 8 train passages), and on the form-proof measure at the level of the
format control, i.e. they teach answers the way gold pairs do, from the passage alone.

The wh-phrase is typed as a reader would ask ("in what year", "how many workers", "by
whom"), and a sentence that opens with "It" names the document's title instead: the
questions a person asks afterwards are of that shape, and "It was founded in what?" says
nothing of what was founded.
"""

from __future__ import annotations

import re

UNITS = r"metres|meters|km|kilometres|kilometers|miles|feet|per cent|percent"
# A number: a year, a count of some plural noun, a measure with its unit, or a bare number.
NUMBER = re.compile(rf"\b(?P<num>\d[\d,.]*)(?:\s+(?P<unit>{UNITS})\b|\s+(?P<noun>[a-z]+s)\b)?")
YEAR = re.compile(r"(?:1[0-9]|20)\d\d")
# A run of capitalised words (a name; "Anselm and Piet Vellmar" is one), not sentence-initial.
WORD = r"[A-Z][\w'-]+"
NAME = re.compile(rf"(?<!^)\b{WORD}(?:\s+(?:of\s+|the\s+|de\s+|and\s+)?{WORD})*")
BY = re.compile(r"\bby(?:\s+the)?(?:\s+[a-z]+)?\s+$")  # "by", "by the engineer" just before a name


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) >= 4]


def _spans(body: str) -> list[tuple[int, int, str, str]]:
    """(start, end, answer, the wh-phrase that replaces body[start:end]) for each name and number."""
    out = []
    for m in NUMBER.finditer(body):
        num = m.group("num").rstrip(",.")
        if YEAR.fullmatch(num):
            out.append((m.start(), m.start() + len(num), num, "what year"))
        elif m.group("noun"):  # "240 workers": how many workers
            out.append((m.start(), m.end(), num, f"how many {m.group('noun')}"))
        else:
            answer = m.group().strip().rstrip(",.")
            out.append((m.start(), m.start() + len(answer), answer, "what"))
    for m in NAME.finditer(body):
        by = BY.search(body[: m.start()])  # "bought by the engineer Hedda Lorne": bought by whom
        out.append((by.start(), m.end(), m.group(), "by whom") if by else (m.start(), m.end(), m.group(), "what"))
    return sorted(out)


def cloze_pairs(text: str, title: str | None = None, limit: int = 24) -> list[tuple[str, str]]:
    """(question, answer) per name or number of each sentence, in order, at most ``limit``; with
    ``title``, a sentence-initial "It"/"Its" becomes the title."""
    pairs: list[tuple[str, str]] = []
    for sentence in sentences(text):
        body = sentence.rstrip(".!?")
        if title:
            name = title[:1].upper() + title[1:]
            body = re.sub(r"^Its\b", f"{name}'s", re.sub(r"^It\b", name, body))
        for start, end, answer, wh in _spans(body):
            pairs.append((" ".join(f"{body[:start]}{wh}{body[end:]}?".split()), answer))
    return list(dict.fromkeys(pairs))[:limit]
