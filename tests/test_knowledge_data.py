import json

import pytest

from selfadapt.knowledge.data import DatasetError, external_format, load_external_selfedits, load_passages


def test_shipped_eval200_is_the_papers_set():
    passages = load_passages("eval200")
    assert len(passages) == 200
    assert sum(len(p.questions) for p in passages) == 974
    assert [p.index for p in passages[:3]] == [0, 1, 2]
    assert load_passages("eval200", limit=2, offset=5)[0].index == 5


def test_train_split_is_disjoint_from_eval200():
    train = {p.context for p in load_passages("train")}
    assert len(train) > 1000
    assert not train & {p.context for p in load_passages("eval200")}


@pytest.mark.parametrize("name", ["gpt-4.1", "seal-qwen"])
def test_shipped_external_selfedits_cover_eval200(name):
    passages = load_passages("eval200", limit=10)
    edits = load_external_selfedits(name, passages)
    assert set(edits) == set(range(10)) and all(edits[i] and isinstance(edits[i][0], str) for i in edits)


@pytest.mark.parametrize("content,match", [
    ("[{\"title\": \"A\",", "invalid JSON at line 1"),
    ("{\"title\": \"A\"}", "expected a JSON list"),
    ("[{\"title\": \"A\", \"context\": \"c\", \"questions\": []}, 3]", "record 1: expected an object"),
    ("[{\"title\": \"A\", \"questions\": []}]", "record 0: field 'context'"),
    ("[{\"title\": \"A\", \"context\": \"c\", \"questions\": \"q\"}]", r"record 0 \('A'\): 'questions' must be a list"),
    ("[{\"title\": \"A\", \"context\": \"c\", \"questions\": [{\"question\": \"q\"}]}]", "record 0: field 'answer'"),
])
def test_malformed_dataset_names_file_and_record(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=match) as err:
        load_passages(path)
    assert str(path) in str(err.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_passages(tmp_path / "nope.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_passages(tmp_path / "bin.json")


def test_passage_without_questions_loads(tmp_path):
    """No questions is valid data; the evaluation records it as an item error."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"title": "A", "context": "c", "questions": []}]))
    assert load_passages(path)[0].questions == ()


def test_external_selfedits_must_cover_every_passage(tmp_path, passages):
    path = tmp_path / "ext.json"
    path.write_text(json.dumps([{"context": passages[0].context, "completions": ["1. x y z w"]}]))
    with pytest.raises(DatasetError, match=r"no self-edits for 1 passage.*record 1 \('Metals'\)"):
        load_external_selfedits(path, passages)
    path.write_text(json.dumps([{"context": passages[0].context, "completions": "x"}]))
    with pytest.raises(DatasetError, match="record 0: 'completions' must be a list of strings"):
        load_external_selfedits(path, passages)


def test_an_external_file_is_read_in_the_format_it_declares(tmp_path, passages):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps([{"context": p.context, "format": "self-qa", "completions": ["Q: What?\nA: x"]}
                                for p in passages]))
    assert external_format(path) == "self-qa"
    assert external_format(path, "implications") == "implications"  # --external-format wins
    assert external_format("gpt-4.1") == "implications"
    path.write_text(json.dumps([{"context": "c", "completions": []}]))
    with pytest.raises(DatasetError, match="does not declare its self-edit format.*--external-format"):
        external_format(path)
    path.write_text(json.dumps([{"context": "c", "completions": [], "format": f} for f in ("self-qa", "rewrite")]))
    with pytest.raises(DatasetError, match="different formats"):
        external_format(path)


SQUAD_ROWS = [  # SQuAD's own shape: flat rows, answers as {"text": [...], "answer_start": [...]}
    {"id": "a", "title": "Otrar", "context": "The Mongols seized Otrar in 1219.", "question": "Who seized Otrar?",
     "answers": {"text": ["The Mongols"], "answer_start": [0]}},
    {"id": "b", "title": "Otrar", "context": "The Mongols seized Otrar in 1219.", "question": "When?",
     "answers": {"text": ["1219"], "answer_start": [28]}},
    {"id": "c", "title": "Silver", "context": "Molten silver was poured.", "question": "What was poured?",
     "answers": {"text": ["Molten silver"], "answer_start": [0]}},
]


def _write(fmt: str, rows: list[dict], path):
    import datasets

    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        datasets.Dataset.from_list(rows).to_csv(str(path), index=False)
    elif fmt == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:  # a directory saved with datasets
        datasets.Dataset.from_list(rows).save_to_disk(str(path))


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet", "saved"])
def test_your_own_data_in_every_format_with_a_column_map(tmp_path, fmt):
    from selfadapt.knowledge.data import parse_columns

    rows = [{"doc": r["title"], "passage": r["context"], "q": r["question"], "a": r["answers"]["text"][0]}
            for r in SQUAD_ROWS]
    path = tmp_path / (f"data.{fmt}" if fmt != "saved" else "saved")
    _write(fmt, rows, path)
    columns = parse_columns("title=doc,context=passage,question=q,answer=a")
    passages = load_passages(path, columns=columns)
    assert [(p.title, [q.answer for q in p.questions]) for p in passages] == [
        ("Otrar", ["The Mongols", "1219"]), ("Silver", ["Molten silver"])]  # flat rows grouped by passage
    assert [p.index for p in passages] == [0, 1] and load_passages(path, columns=columns, offset=1)[0].title == "Silver"
    bad = [*rows, {"doc": "Gold", "passage": "Gold glitters.", "q": "What glitters?", "a": ""}]
    _write(fmt, bad, path if fmt != "saved" else tmp_path / "saved-bad")
    with pytest.raises(DatasetError, match=r"record 3: field 'a' must be a non-empty string"):
        load_passages(path if fmt != "saved" else tmp_path / "saved-bad", columns=columns)


def test_squad_rows_load_as_they_are_and_a_bad_column_map_is_refused(tmp_path):
    from selfadapt.knowledge.data import parse_columns

    path = tmp_path / "squad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SQUAD_ROWS))
    for passages in load_passages(path), load_passages(path, columns={"answer": "answers"}):  # no map needed
        assert [q.answer for q in passages[0].questions] == ["The Mongols", "1219"]
    with pytest.raises(DatasetError, match="record 0 \\('Otrar'\\): no 'questions' list and no 'query' column"):
        load_passages(path, columns={"question": "query", "answer": "answers"})
    with pytest.raises(DatasetError, match="bad column map item 'passage'"):
        parse_columns("passage")
    with pytest.raises(DatasetError, match="not a shipped set"):
        load_passages("nonsense")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_column_of_numbers_is_read_as_answers(tmp_path, fmt):
    """A CSV whose answers are all years is typed as integers by datasets: still answers."""
    rows = [{"title": "Harlow", "context": "Built in 1871, lit in 1936.", "question": q, "answer": a}
            for q, a in (("When was it built?", 1871), ("When was it lit?", 1936))]
    _write(fmt, rows, tmp_path / f"years.{fmt}")
    (passage,) = load_passages(tmp_path / f"years.{fmt}")
    assert [q.answer for q in passage.questions] == ["1871", "1936"]


def test_every_gold_answer_is_kept_and_one_gold_hashes_as_before(tmp_path):
    """SQuAD lists several answers per question; each distinct one is a gold (not only the first),
    from SQuAD's rows, a list column, or a nested record. One gold keeps the hash old runs recorded."""
    import hashlib

    from selfadapt.knowledge.data import Question, content_hash

    rows = [{"title": "Otrar", "context": "Founded in 1852.", "question": "When?",
             "answers": {"text": ["1852", "in 1852", "1852"], "answer_start": [11, 8, 11]}}]
    path = tmp_path / "squad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (q,) = load_passages(path)[0].questions
    assert (q.answer, q.answers) == ("1852", ("1852", "in 1852"))
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps([{"title": "Otrar", "context": "Founded in 1852.",
                                   "questions": [{"question": "When?", "answer": ["1852", "in 1852"]}]}]))
    assert load_passages(nested)[0].questions == (q,)
    assert Question("When?", "1852").answers == ("1852",)
    single = load_passages("eval200", limit=2)
    old = json.dumps([[p.index, p.title, p.context, [[q.question, q.answer] for q in p.questions]] for p in single],
                     ensure_ascii=False)
    assert content_hash(single) == hashlib.sha256(old.encode()).hexdigest()[:16]
