"""SQuAD passages with their questions, and self-edits written by other models.

Shipped sets: ``eval200`` (the SEAL paper's evaluation passages) and ``train`` (disjoint,
for training the policy). Shipped external self-edits: ``gpt-4.1`` and ``seal-qwen``.
Any JSON file of the same shape can be given by path. Every malformed record is
reported with the file and record number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_SQUAD = "data/squad"
DATASETS = {"eval200": "eval200.json", "train": "train.json"}
EXTERNAL_SELFEDITS = {
    "gpt-4.1": "eval200_gpt-4.1_implications.json",
    "seal-qwen": "eval200_seal-qwen2.5-7b-round2_implications.json",
}
SHIPPED_FORMAT = "implications"  # what both shipped files hold


class DatasetError(ValueError):
    """A data file that does not have the expected shape; names the file and record."""


@dataclass(frozen=True)
class Question:
    question: str
    answer: str


@dataclass(frozen=True)
class Passage:
    title: str
    context: str
    questions: tuple[Question, ...]
    index: int = 0  # position in its file, for messages and resume keys

    @property
    def text(self) -> str:
        """The passage as one training sequence: title line, then the text."""
        return f"{self.title}\n{self.context}"


def _shipped(name: str, table: dict[str, str]) -> Path:
    return Path(str(resources.files("selfadapt").joinpath(_SQUAD, table[name])))


def _read_json_list(path: Path) -> list:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _string(path: Path, i: int, rec: dict, key: str) -> str:
    value = rec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{path}: record {i}: field {key!r} must be a non-empty string, got {value!r:.60}")
    return value.strip()


def load_passages(source: str | Path = "eval200", limit: int | None = None, offset: int = 0) -> list[Passage]:
    """Load passages by shipped name or path; ``offset``/``limit`` select a slice."""
    path = _shipped(str(source), DATASETS) if str(source) in DATASETS else Path(source)
    passages = []
    for i, rec in enumerate(_read_json_list(path)):
        if not isinstance(rec, dict):
            raise DatasetError(f"{path}: record {i}: expected an object, got {type(rec).__name__}")
        title, context = _string(path, i, rec, "title"), _string(path, i, rec, "context")
        qs = rec.get("questions")
        if not isinstance(qs, list):
            raise DatasetError(f"{path}: record {i} ({title!r}): 'questions' must be a list")
        questions = []
        for j, q in enumerate(qs):
            if not isinstance(q, dict):
                raise DatasetError(f"{path}: record {i} ({title!r}), question {j}: expected an object")
            questions.append(Question(_string(path, i, q, "question"), _string(path, i, q, "answer")))
        passages.append(Passage(title, context, tuple(questions), index=i))
    end = None if limit is None else offset + limit
    return passages[offset:end]


def load_external_selfedits(source: str | Path, passages: list[Passage]) -> dict[int, list[str]]:
    """Self-edits written by another model, keyed by passage index, matched on context.

    The file is a list of ``{"context": ..., "completions": [str, ...]}`` (optionally with
    ``"format"``, see ``external_format``). A passage the file does not cover is an error:
    silently skipping it would bias the comparison.
    """
    path = _shipped(str(source), EXTERNAL_SELFEDITS) if str(source) in EXTERNAL_SELFEDITS else Path(source)
    by_context: dict[str, list[str]] = {}
    for i, rec in enumerate(_read_json_list(path)):
        if not isinstance(rec, dict):
            raise DatasetError(f"{path}: record {i}: expected an object, got {type(rec).__name__}")
        context = _string(path, i, rec, "context")
        completions = rec.get("completions")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise DatasetError(f"{path}: record {i}: 'completions' must be a list of strings")
        by_context[context] = completions
    missing = [p for p in passages if p.context not in by_context]
    if missing:
        raise DatasetError(
            f"{path}: no self-edits for {len(missing)} passage(s), first: record {missing[0].index} ({missing[0].title!r})"
        )
    return {p.index: by_context[p.context] for p in passages}


def external_format(source: str | Path, override: str | None = None) -> str:
    """The self-edit format an external file's completions are written in: ``override``, else
    the file's own declaration (a ``"format"`` field on its records, the same on all), else an
    error: reading self-QA as implications trains its "Q:" lines as loose sentences."""
    if override:
        return override
    if str(source) in EXTERNAL_SELFEDITS:
        return SHIPPED_FORMAT
    path = Path(source)
    declared = {rec.get("format") for rec in _read_json_list(path) if isinstance(rec, dict)}
    if len(declared) > 1:
        raise DatasetError(f"{path}: records declare different formats ({', '.join(map(str, sorted(declared, key=str)))})")
    (fmt,) = declared or {None}
    if not isinstance(fmt, str):
        raise DatasetError(f"{path}: the file does not declare its self-edit format: add \"format\": \"self-qa\" "
                           "(or implications, rewrite, ...) to each record, or pass --external-format")
    return fmt
