import pytest
import torch

from selfadapt.models import ModelLoadError, chat_prompt, load_model, pick_dtype, resolve


def test_load_local_directory(tiny_dir):
    m = load_model(str(tiny_dir), dtype="float32", device="cpu")
    assert m.model.dtype == torch.float32
    assert m.tokenizer.padding_side == "left"
    assert m.tokenizer.pad_token is not None
    assert not m.model.training


def test_unknown_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve(str(tmp_path / "no-such-model"))


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve(str(tmp_path))


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        resolve(str(tmp_path / "model.gguf"))


def test_dtype_choice():
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert pick_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype("float8", torch.device("cpu"))


def test_chat_template_used_when_present_and_plain_prompt_otherwise(tiny):
    text = chat_prompt(tiny.tokenizer, "Hi?", system="Be brief.")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    tiny.tokenizer.chat_template = None
    assert chat_prompt(tiny.tokenizer, "Hi?", system="Be brief.") == "Be brief.\n\nHi?\n"
