"""A PEFT adapter is a model spec (issue 45, item 2): a directory or a Hub id from the local cache
loads its base with the update merged, an ordinary model for every caller (the inner loops' own
LoRA, vLLM's engine, Ray workers). Its files may name a Hub model, never a local path to load."""

import json
import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from selfadapt.models import ModelLoadError, load_model, load_tokenizer, resolve
from selfadapt.restem import policy_name

IDS = torch.tensor([[5, 6, 7, 8, 9, 10]])


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """A local Hugging Face cache (offline) that ``put(repo, folder)`` adds a snapshot to."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once, on import
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SELFADAPT_CACHE", str(tmp_path / "selfadapt-cache"))

    def put(repo_id, folder):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        shutil.copytree(folder, repo / "snapshots" / ("0" * 40))
    return put


def make_adapter(base_dir, out, base_name):
    """A random LoRA on the tiny model saved as PEFT saves it, naming ``base_name``; its logits on IDS."""
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False, task_type="CAUSAL_LM")).eval()
    peft.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base_name}))
    with torch.no_grad():
        return peft(input_ids=IDS).logits


def test_an_adapter_directory_or_hub_id_loads_its_hub_base_merged(tiny_dir, tmp_path, hub):
    hub("someone/tiny", tiny_dir)
    expected = make_adapter(tiny_dir, tmp_path / "adapter", "someone/tiny")
    hub("someone/tiny-adapter", tmp_path / "adapter")
    for spec in (str(tmp_path / "adapter"), "someone/tiny-adapter"):
        loaded = load_model(spec, dtype="float32", device="cpu")
        assert loaded.spec == spec and not hasattr(loaded.model, "peft_config")  # an ordinary model
        with torch.no_grad():
            assert torch.allclose(loaded.model(input_ids=IDS).logits, expected, atol=1e-5)
        # what vLLM's engine and a tokenizer-only driver are given: a checkpoint directory
        merged = AutoModelForCausalLM.from_pretrained(resolve(spec), dtype=torch.float32).eval()
        with torch.no_grad():
            assert torch.allclose(merged(input_ids=IDS).logits, expected, atol=1e-5)
        assert load_tokenizer(spec)("Otrar")["input_ids"] == loaded.tokenizer("Otrar")["input_ids"]
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()  # the adapter itself is left as it was


def test_an_adapter_naming_a_local_base_loads_it_only_when_the_user_names_it(tiny_dir, tmp_path, hub):
    expected = make_adapter(tiny_dir, tmp_path / "adapter", str(tiny_dir))
    spec = str(tmp_path / "adapter")
    with pytest.raises(ModelLoadError) as e:
        load_model(spec, dtype="float32", device="cpu")
    message = str(e.value)
    assert "\n" not in message and str(tiny_dir) in message and f"{spec}:base={tiny_dir}" in message
    loaded = load_model(f"{spec}:base={tiny_dir}", dtype="float32", device="cpu")
    with torch.no_grad():
        assert torch.allclose(loaded.model(input_ids=IDS).logits, expected, atol=1e-5)
    with pytest.raises(ModelLoadError, match="not a PEFT adapter"):
        resolve(f"{tiny_dir}:base={tiny_dir}")
    assert policy_name(f"{spec}:base={tiny_dir}") == "policy-adapter"  # as `--policy` reports it


def test_the_cli_reports_a_refused_local_base_in_one_line(tiny_dir, tmp_path, hub):
    from typer.testing import CliRunner

    from selfadapt.cli import app

    make_adapter(tiny_dir, tmp_path / "adapter", str(tiny_dir))
    result = CliRunner().invoke(app, ["eval", "knowledge", "--passages", "1", "--no-control", "--no-external",
                                      "--no-own", "--model", str(tmp_path / "adapter"),
                                      "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert result.output.count("error:") == 1 and ":base=" in result.output, result.output
