"""Issue 45, item 4: ``--split`` and ``--subset`` for a saved DatasetDict or a Hub id (read from the
local cache only), a ``datasets.Dataset`` object as a source, and ``eval continual --columns``
with a missing column named together with the columns the file has."""

import json
import os
import shutil

import datasets
import pytest
from typer.testing import CliRunner

from selfadapt.cli import app
from selfadapt.knowledge.data import DatasetError, load_passages

ROWS = [{"title": "Otrar", "context": "Otrar fell in 1219.", "question": "When did Otrar fall?",
         "answers": {"text": ["1219", "in 1219"], "answer_start": [14, 11]}}]
OTHER = [{"title": "Silver", "context": "Molten silver was poured.", "question": "What was poured?",
          "answers": {"text": ["Molten silver"], "answer_start": [0]}}]


def test_a_saved_datasetdict_without_train_names_its_splits_and_split_chooses(tmp_path):
    path = tmp_path / "saved"
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(ROWS),
                          "test": datasets.Dataset.from_list(OTHER)}).save_to_disk(str(path))
    with pytest.raises(DatasetError, match=r"no split 'train'; its splits: validation, test \(choose one with "
                                           r"--split\)") as err:
        load_passages(path)
    assert "\n" not in str(err.value) and "KeyError" not in str(err.value)
    assert load_passages(path, split="test")[0].title == "Silver"
    (q,) = load_passages(path, split="validation")[0].questions
    assert q.answers == ("1219", "in 1219")


def test_a_dataset_object_is_a_source(tmp_path):
    ds = datasets.Dataset.from_list(ROWS + OTHER)
    assert [p.title for p in load_passages(ds)] == ["Otrar", "Silver"]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(OTHER), "dev": ds})
    assert [p.title for p in load_passages(dd)] == ["Silver"]
    assert [p.title for p in load_passages(dd, split="dev", limit=1)] == ["Otrar"]
    with pytest.raises(DatasetError, match="no split 'test'; its splits: train, dev"):
        load_passages(dd, split="test")
    path = tmp_path / "one.csv"
    ds.to_csv(str(path), index=False)
    with pytest.raises(DatasetError, match="one.csv: no split 'validation'; its splits: train"):
        load_passages(path, split="validation")  # never silently the one split there is
    with pytest.raises(DatasetError, match="eval200: no split 'test'"):
        load_passages("eval200", split="test")
    assert len(load_passages("eval200", split="train", limit=1)) == 1


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """A Hub dataset ``user/name`` (config ``plain_text``, splits train and validation) as the
    datasets cache holds one after a download."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet

    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "tr.parquet"))
    datasets.Dataset.from_list(OTHER).to_parquet(str(tmp_path / "va.parquet"))
    cache = tmp_path / "cache"
    files = DataFilesDict.from_local_or_remote({"train": ["tr.parquet"], "validation": ["va.parquet"]},
                                               base_path=str(tmp_path))
    builder = Parquet(cache_dir=str(cache), dataset_name="name", config_name="plain_text", data_files=files,
                      hash="abc")
    builder.download_and_prepare()
    os.makedirs(cache / "user___name")
    shutil.move(builder.cache_dir.rsplit("/", 2)[0], cache / "user___name" / "plain_text")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    return cache


def test_a_hub_id_is_read_offline_from_the_cache_with_its_split_and_subset(hub_cache, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # a user who is online
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    seen = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        seen.append((datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    assert load_passages("user/name")[0].questions[0].answers == ("1219", "in 1219")
    assert load_passages("user/name", split="validation", subset="plain_text")[0].title == "Silver"
    with pytest.raises(DatasetError, match="user/name: no split 'test'; its splits: train, validation"):
        load_passages("user/name", split="test")
    with pytest.raises(DatasetError, match="nobody/nothing: not in the local Hugging Face cache"):
        load_passages("nobody/nothing")
    assert seen and all(s == (True, True) for s in seen)  # offline inside, every time
    assert (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE) == (False, False)  # and restored after


def test_eval_continual_takes_columns_and_names_a_missing_one_with_the_files_columns(tmp_path):
    rows = [{"doc": "Otrar", "passage": "Otrar fell in 1219.", "q": "When?", "a": "1219"},
            {"doc": "Silver", "passage": "Molten silver was poured.", "q": "What?", "a": "Molten silver"}]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(rows))
    res = CliRunner().invoke(app, ["eval", "continual", "--dataset", str(path), "--columns",
                                   "title=doc,context=passage,question=q,answer=ans",
                                   "--runs-dir", str(tmp_path / "runs")])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"{path}: record 0: field 'ans' is missing; its columns: 'doc', 'passage', 'q', 'a'" in flat
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()


def test_split_and_subset_are_settings_of_every_command_that_takes_a_dataset():
    from selfadapt.knowledge.continual import ContinualConfig
    from selfadapt.knowledge.experiment import KnowledgeEvalConfig
    from selfadapt.knowledge.train import KnowledgeTrainConfig

    for cls in KnowledgeEvalConfig, KnowledgeTrainConfig, ContinualConfig:
        cfg = cls()
        assert (cfg.split, cfg.subset, cfg.columns) == (None, None, None)
    for command in (["eval", "knowledge"], ["train", "knowledge"], ["eval", "continual"]):
        out = " ".join(CliRunner().invoke(app, [*command, "--help"], terminal_width=200).output.split())
        assert "--split" in out and "--subset" in out and "--columns" in out
