"""A `learn` adapter travels: its card is Hub YAML naming the base model, its documents are named by
file name, the pairs it trained on load with `datasets`, PEFT loads it in a process without selfadapt,
and `ask --adapter` takes a Hub id from the local Hugging Face cache (issue 45, item 2)."""

import json
import subprocess
import sys

import pytest

from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import EMBEDDED_HUB_ID
from selfadapt.teaching import LearnConfig, learn, model_card

TEXT = "The Mongol army seized the town of Otrar in 1219. Molten silver was poured into the ears of Inalchuq.\n"


@pytest.fixture()
def learned(tiny_dir, tmp_path, monkeypatch):
    """An adapter learned on the tiny model from a document in a folder of tmp_path, and the examples trained on."""
    doc = tmp_path / "docs" / "otrar.txt"
    doc.parent.mkdir()
    doc.write_text(TEXT)
    trained = []
    real = ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    out = tmp_path / "adapter"
    meta = learn([doc], out, LearnConfig(model=str(tiny_dir), checks=2, probe=False, distill=2, reading=1,
                                         lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu"),
                 progress=lambda *a: None)
    return out, meta, trained


def test_the_card_is_hub_yaml_naming_the_base_and_documents_by_file_name(learned, tiny_dir, tmp_path):
    from huggingface_hub import ModelCard

    out, meta, _ = learned
    text = (out / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.library_name == "peft" and {"lora", "selfadapt"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local model has no Hub id: no path in its place
    assert "PEFT " in card.text and "otrar.txt" in card.text  # PEFT's framework versions kept
    for name in ("README.md", "selfadapt.json", "checks.json"):
        assert str(tmp_path) not in (out / name).read_text(), name
    assert str(tiny_dir) not in text
    assert [d["document"] for d in meta["documents"]] == ["otrar.txt"]
    peft_card = "---\nbase_model: /x/y\nlibrary_name: peft\ntags:\n- base_model:adapter:/x/y\n- lora\n---\n" \
                "### Framework versions\n\n- PEFT 0.21.2\n"
    for spec, hub_id in (("smollm2", EMBEDDED_HUB_ID), ("Qwen/Qwen2.5-0.5B-Instruct:revision=main",
                                                       "Qwen/Qwen2.5-0.5B-Instruct")):
        other = ModelCard(model_card({**meta, "model": spec}, [], peft_card))
        assert other.data.base_model == hub_id and f"base_model:adapter:{hub_id}" in other.data.tags
        assert "/x/y" not in str(other) and "- PEFT 0.21.2" in other.text


def test_the_pairs_it_trained_on_load_with_datasets(learned):
    from datasets import load_dataset

    out, meta, trained = learned
    rows = load_dataset("json", data_files=str(out / "train.jsonl"), split="train")
    assert {"prompt", "completion", "document", "source"} <= set(rows.column_names)
    assert [(r["prompt"], r["completion"]) for r in rows] == [("", ex) if isinstance(ex, str) else tuple(ex)
                                                              for ex in trained[0]]
    assert {r["document"] for r in rows} == {"otrar.txt"} and {"document", "distill", "reading"} == set(rows["source"])
    assert any("Otrar" in r["completion"] or "1219" in r["completion"] for r in rows if r["prompt"])
    assert 'load_dataset("json", data_files="train.jsonl"' in (out / "README.md").read_text()


def test_peft_alone_loads_the_adapter_in_a_fresh_process(learned, tiny_dir):
    """No selfadapt import: AutoPeftModelForCausalLM finds the base through adapter_config.json."""
    import torch

    from selfadapt.lora import load_adapter
    from selfadapt.models import load_model

    out, _, _ = learned
    code = ("import json, sys, torch\nfrom peft import AutoPeftModelForCausalLM\n"
            f"m = AutoPeftModelForCausalLM.from_pretrained({str(out)!r}, dtype=torch.float32).eval()\n"
            "assert not any(n.split('.')[0] == 'selfadapt' for n in sys.modules)\n"
            "with torch.no_grad():\n"
            "    print(json.dumps(m(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits.tolist()))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = torch.tensor(json.loads(run.stdout.strip().splitlines()[-1]))
    ours = load_adapter(load_model(str(tiny_dir), dtype="float32", device="cpu").model, out)
    with torch.no_grad():
        assert torch.allclose(theirs, ours(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits, atol=1e-5)


def test_ask_takes_an_adapter_by_hub_id_from_the_local_cache(learned, tiny_dir, tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants
    from typer.testing import CliRunner

    from selfadapt.answering import ask
    from selfadapt.cli import app

    out, _, _ = learned
    cache = tmp_path / "hub"
    repo = cache / "models--someone--otrar-adapter"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(out, repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    kw = dict(model=str(tiny_dir), max_new_tokens=4, dtype="float32", device="cpu")
    q = ["Which town did the Mongol army seize?"]
    assert ask(q, ["someone/otrar-adapter"], **kw) == {"someone/otrar-adapter": ask(q, [out], **kw)[str(out)]}
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        ask(q, ["someone/absent"], **kw)
    result = CliRunner().invoke(app, ["ask", q[0], "--adapter", "someone/absent", "--model", str(tiny_dir)])
    assert result.exit_code == 2 and "someone/absent" in result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output


def test_an_rrr_policy_names_its_base_as_a_user_finds_it(tiny_dir, tmp_path, monkeypatch):
    """Not the path of this machine's model cache: the spec's Hub id (here the tiny model stands in for it)."""
    import selfadapt.rrr.experiment as rrr
    from selfadapt.rrr.grpo import RRRGRPOConfig
    from selfadapt.rrr.tasks import CountdownTask

    real = rrr.load_model
    monkeypatch.setattr(rrr, "load_model", lambda spec, **kw: real(str(tiny_dir), **kw))
    failures = tmp_path / "failures.jsonl"
    failures.write_text("".join(json.dumps({"task": "countdown", "id": q["id"], "query": q, "attempt": "no"}) + "\n"
                                for q in CountdownTask(pool=40).queries("train", 1)))
    grpo = RRRGRPOConfig(num_generations=2, queries_per_step=1, max_steps=1, reflection_tokens=4, retry_tokens=4,
                         lora_r=2, lora_alpha=4)
    run = rrr.run_rrr_train(rrr.RRRTrainConfig(failures=str(failures), model="someone/base-model", grpo=grpo,
                                               dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs")))
    config = json.loads((run / "policy" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "someone/base-model"


def test_learn_pushes_the_adapter_to_the_hub_as_a_private_repo(tiny_dir, tmp_path, monkeypatch):
    """The upload itself is huggingface_hub's (mocked here: the tests stay offline); a bad repo id is refused
    before the model loads."""
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or
                        f"https://huggingface.co/{kw['repo_id']}/commit/0")
    doc = tmp_path / "otrar.txt"
    doc.write_text(TEXT)
    out = tmp_path / "adapter"
    meta = learn([doc], out, LearnConfig(model=str(tiny_dir), push_to_hub="me/otrar", checks=1, probe=False,
                                         distill=0, reading=0, lora=LoRAConfig(r=4, epochs=1), dtype="float32",
                                         device="cpu"), progress=lambda *a: None)
    (create, repo_id, kw), (upload, up) = calls
    assert (create, repo_id, kw["private"], kw["exist_ok"]) == ("create", "me/otrar", True, True)
    assert upload == "upload" and up["repo_id"] == "me/otrar" and up["folder_path"] == str(out)
    assert meta["pushed"] == "https://huggingface.co/me/otrar/commit/0"
    with pytest.raises(ValueError, match="push_to_hub"):
        LearnConfig(push_to_hub="not a repo id!")


def test_combine_answers_with_peft_sum_of_the_updates_and_saves_it_as_one_adapter(tiny_dir, tmp_path):
    """``ask --combine``: one adapter made by PEFT's ``add_weighted_adapter`` ("cat", ranks 2 + 4) whose
    logits are the base model's with both updates merged in; ``--save-combined`` writes it as an adapter
    of its own that answers as the combination did and is routed by both adapters' vocabularies."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from typer.testing import CliRunner

    from selfadapt.answering import ask
    from selfadapt.cli import app
    from selfadapt.lora import load_adapter
    from selfadapt.models import load_model

    def base():
        return load_model(str(tiny_dir), dtype="float32", device="cpu").model

    adapters = []
    for n, (r, alpha, words) in enumerate([(2, 8, ["otrar"]), (4, 4, ["silver"])]):
        torch.manual_seed(n)
        peft = get_peft_model(base(), LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj", "down_proj"]
                                                 if n else ["q_proj", "o_proj", "up_proj"], init_lora_weights=False))
        adapters.append(tmp_path / f"a{n}")
        peft.save_pretrained(adapters[-1])
        (adapters[-1] / "selfadapt.json").write_text(json.dumps({"model": str(tiny_dir), "title": "t",
                                                                 "vocabulary": words}))
    merged = base()
    for a in adapters:  # the sum of the two updates, merged into the weights
        merged = PeftModel.from_pretrained(merged, str(a)).merge_and_unload()
    q = ["Which town held silver?", "Who seized Otrar?"]
    kw = dict(model=str(tiny_dir), max_new_tokens=6, dtype="float32", device="cpu")
    out = tmp_path / "combined"
    combined = ask(q, adapters, combine=True, save_combined=str(out), **kw)
    assert list(combined) == [f"{adapters[0]} + {adapters[1]}"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["base_model_name_or_path"] == str(tiny_dir.resolve())
    meta = json.loads((out / "selfadapt.json").read_text())
    assert meta["vocabulary"] == ["otrar", "silver"] and meta["combined"] == [str(a) for a in adapters]
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        theirs = merged(input_ids=ids).logits
        assert (theirs - base()(input_ids=ids).logits).abs().max() > 0.1  # the updates move the logits
        assert torch.allclose(load_adapter(base(), out)(input_ids=ids).logits, theirs, atol=1e-5)
    assert ask(q, out, **kw)[str(out)] == next(iter(combined.values()))
    with pytest.raises(ValueError, match="save_combined needs --combine"):
        ask(q, adapters, save_combined=str(tmp_path / "other"), **kw)
    result = CliRunner().invoke(app, ["ask", q[0], "--adapter", str(adapters[0]), "--adapter", str(adapters[1]),
                                      "--combine", "--save-combined", str(out), "--model", str(tiny_dir)])
    assert result.exit_code == 2 and "not empty" in result.output, result.output


def test_the_card_names_a_max_lora_rank_vllm_takes():
    """vLLM takes only some ``--max-lora-rank`` values, 16 by default: learn's rank 32 needs 32, a rank 24 needs 32
    too, a combined pair of default adapters (rank 64) 64."""
    from selfadapt.teaching import vllm_max_lora_rank

    assert [vllm_max_lora_rank(r) for r in (4, 16, 24, 32, 64, 300)] == [16, 16, 32, 32, 64, 320]
