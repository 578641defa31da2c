"""SQuAD passages with their questions, and self-edits written by other models.

Shipped sets: ``eval200`` (the SEAL paper's evaluation passages) and ``train`` (disjoint,
for training the policy). Shipped external self-edits: ``gpt-4.1`` and ``seal-qwen``.
Your own data: JSON, JSON Lines, CSV or parquet files, a saved ``datasets`` directory or a
Hub dataset id, nested or flat (SQuAD's rows), with a column map (``load_passages``).
Every malformed record is reported with the source and the record number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..runs import read_jsonl

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
    """A question and its gold answers: ``answer`` is the first, ``answers`` every distinct one
    (SQuAD lists several; exact match and F1 take the best over them, as its official script does)."""
    question: str
    answer: str
    answers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        golds = tuple(dict.fromkeys((self.answer, *self.answers)))
        object.__setattr__(self, "answers", golds)


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


def content_hash(passages: list[Passage]) -> str:
    """A short hash of the passages and their questions, with their positions (records are keyed
    by position): a run's config keeps it, and a resume on data that hashes otherwise is refused."""
    text = json.dumps([[p.index, p.title, p.context, [[q.question, *q.answers] for q in p.questions]]
                       for p in passages], ensure_ascii=False)  # one gold: the hash of older runs
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def _missing(where: str | Path, i: int, rec: dict, key: str) -> DatasetError:
    """A column the record lacks, named with the columns it has."""
    return DatasetError(f"{where}: record {i}: field {key!r} is missing; its columns: "
                        f"{', '.join(map(repr, rec)) or 'none'} (map yours with --columns FIELD=COLUMN)")


def _string(where: str | Path, i: int, rec: dict, key: str) -> str:
    if key not in rec:
        raise _missing(where, i, rec, key)
    value = rec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: record {i}: field {key!r} must be a non-empty string, got {value!r:.60}")
    return value.strip()


FIELDS = ("title", "context", "questions", "question", "answer")


def parse_columns(text: str | None) -> dict[str, str]:
    """``"title=doc_title,context=passage"`` → our field → your column; unknown fields refused."""
    out = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        ours, eq, theirs = item.partition("=")
        if not eq or ours not in FIELDS or not theirs:
            raise DatasetError(f"bad column map item {item!r}: use FIELD=COLUMN with FIELD one of {', '.join(FIELDS)}")
        out[ours] = theirs
    return out


@contextlib.contextmanager
def _offline():
    """``HF_DATASETS_OFFLINE`` for the block: a Hub id is read from the local cache, never downloaded."""
    import datasets
    import huggingface_hub.constants as hub

    before = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = before


def _split(where: str, data: Any, split: str | None) -> Any:
    """The split of a DatasetDict (``train`` unless named); a missing one is named with those there are."""
    import datasets

    if not isinstance(data, (datasets.DatasetDict, dict)):
        return data
    split = split or "train"
    if split not in data:
        raise DatasetError(f"{where}: no split {split!r}; its splits: {', '.join(data) or 'none'} (choose one with "
                           "--split)")
    return data[split]


def _rows(source: Any, split: str | None = None, subset: str | None = None) -> tuple[str, list[Any]]:
    """(a name for messages, the records) of a shipped set, a JSON list, JSON Lines, CSV or
    parquet file, a directory saved with ``datasets``, a Hugging Face dataset id (from the local
    cache only: nothing is downloaded here), or a ``datasets.Dataset``/``DatasetDict`` object.
    ``split`` and ``subset`` (a config name) choose within a DatasetDict or a Hub id."""
    if type(source).__module__.startswith("datasets"):  # a Dataset or DatasetDict object
        return f"the {type(source).__name__}", _split(f"the {type(source).__name__}", source, split).to_list()
    path = Path(source).expanduser()
    if split not in (None, "train") and (str(source) in DATASETS or path.suffix in (".json", ".jsonl", ".csv",
                                                                                   ".parquet")):
        raise DatasetError(f"{source}: no split {split!r}; its splits: train (a file is one split)")
    if str(source) in DATASETS:
        path = _shipped(str(source), DATASETS)
        return str(path), _read_json_list(path)
    if path.suffix == ".json":
        return str(path), _read_json_list(path)
    if path.suffix in (".jsonl", ".csv", ".parquet") and not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if path.suffix == ".jsonl":  # read here, not by datasets: a bad line is named by its line and column
        try:
            return str(path), [rec for _, rec in read_jsonl(path)]
        except ValueError as e:
            raise DatasetError(str(e)) from None
    import datasets

    try:
        if path.suffix in (".csv", ".parquet"):
            data = datasets.load_dataset(path.suffix[1:], data_files=str(path), split="train")
        elif path.is_dir():
            data = _split(str(source), datasets.load_from_disk(str(path)), split)
        elif "/" in str(source) and not str(source).startswith((".", "/", "~")):
            try:
                with _offline():
                    data = datasets.load_dataset(str(source), subset)
            except (ConnectionError, datasets.exceptions.DatasetNotFoundError):  # offline: the cache lacks it
                raise DatasetError(f"{source}: not in the local Hugging Face cache (nothing is downloaded here: "
                                   "fetch it once with datasets.load_dataset, or give a file or saved "
                                   "directory)") from None
            data = _split(str(source), data, split)
        else:
            raise DatasetError(f"{source}: not a shipped set (eval200, train), a .json/.jsonl/.csv/.parquet file, "
                               "a saved dataset directory or a Hugging Face dataset id")
    except DatasetError:
        raise
    except Exception as e:  # datasets raises many kinds; the message is what the user needs
        raise DatasetError(f"{source}: cannot read it as a dataset "
                           f"({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") \
            from None
    return str(source), data.to_list()


def _answers(where: str, i: int, rec: dict, column: str) -> tuple[str, ...]:
    """Every gold answer: a string (or a number), a list of them, or SQuAD's ``{"text": [...],
    "answer_start": [...]}`` (all its texts, in order, each once)."""
    if column not in rec:
        raise _missing(where, i, rec, column)
    value = rec.get(column)
    if isinstance(value, dict) and isinstance(value.get("text"), list) and value["text"]:
        value = value["text"]
    values = value if isinstance(value, list) and value else [value]
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):  # a CSV column of years is typed int
            v = str(v)
        if not isinstance(v, str) or not v.strip():
            raise DatasetError(f"{where}: record {i}: field {column!r} must be a non-empty string (or a list of "
                               f"them, or SQuAD's answers with a text list), got {value!r:.60}")
        out.append(v.strip())
    return tuple(dict.fromkeys(out))


def _question(where: str, i: int, rec: dict, col: dict[str, str]) -> Question:
    golds = _answers(where, i, rec, col["answer"])
    return Question(_string(where, i, rec, col["question"]), golds[0], golds)


def load_passages(source: Any = "eval200", limit: int | None = None, offset: int = 0,
                  columns: dict[str, str] | None = None, split: str | None = None,
                  subset: str | None = None) -> list[Passage]:
    """Load passages by shipped name, file, saved dataset or Hub id; ``offset``/``limit`` select a
    slice. Records are nested (a passage with a ``questions`` list of ``question``/``answer``)
    or flat (one question per row, grouped into passages by title and context, in order of
    first appearance; SQuAD's own rows are flat, their ``answers`` read without a map). ``columns``
    maps our fields to yours. ``source`` may be a ``datasets.Dataset`` (or ``DatasetDict``) object;
    ``split`` (default train) and ``subset`` (a config name) choose within a DatasetDict or Hub id.
    Every malformed row is reported with the source, the row and the column."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    col = {f: f for f in FIELDS} | (columns or {})
    where, rows = _rows(source, split, subset)
    grouped: dict[tuple[str, str], list[Question]] = {}
    for i, rec in enumerate(rows):
        if not isinstance(rec, dict):
            raise DatasetError(f"{where}: record {i}: expected an object, got {type(rec).__name__}")
        title, context = _string(where, i, rec, col["title"]), _string(where, i, rec, col["context"])
        qs = grouped.setdefault((title, context), [])
        if "answer" not in (columns or {}) and "answer" not in rec and "answers" in rec:
            col = col | {"answer": "answers"}  # SQuAD's own rows, as the Hub's squad has them
        if col["questions"] in rec:
            nested = rec[col["questions"]]
            if not isinstance(nested, list):
                raise DatasetError(f"{where}: record {i} ({title!r}): {col['questions']!r} must be a list")
            for j, q in enumerate(nested):
                if not isinstance(q, dict):
                    raise DatasetError(f"{where}: record {i} ({title!r}), question {j}: expected an object")
                qs.append(_question(where, i, q, col))
        elif col["question"] in rec:
            qs.append(_question(where, i, rec, col))
        else:
            raise DatasetError(f"{where}: record {i} ({title!r}): no {col['questions']!r} list and no "
                               f"{col['question']!r} column; its columns: {', '.join(map(repr, rec))} (map yours with "
                               "--columns question=...)")
    passages = [Passage(t, c, tuple(qs), index=n) for n, ((t, c), qs) in enumerate(grouped.items())]
    if passages and offset >= len(passages):
        raise DatasetError(f"{where}: offset {offset} is past its end ({len(passages)} passages)")
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
            f"{path}: no self-edits for {len(missing)} passage(s), "
            f"first: record {missing[0].index} ({missing[0].title!r})"
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
        raise DatasetError(f"{path}: records declare different formats "
                           f"({', '.join(map(str, sorted(declared, key=str)))})")
    (fmt,) = declared or {None}
    if not isinstance(fmt, str):
        raise DatasetError(f"{path}: the file does not declare its self-edit format: add \"format\": \"self-qa\" "
                           "(or implications, rewrite, ...) to each record, or pass --external-format")
    return fmt
