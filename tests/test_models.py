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


def test_loading_options_in_the_spec_reach_from_pretrained(tiny_dir, monkeypatch):
    """SPEC:key=value,... : revision, attention, device_map; a placed model is not moved again."""
    import transformers

    seen, real = {}, transformers.AutoModelForCausalLM.from_pretrained

    def capture(where, **kw):
        seen.update(kw)
        return real(where, **{k: v for k, v in kw.items() if k != "revision"})  # a local dir has no revisions

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", capture)
    m = load_model(f"{tiny_dir}:attn_implementation=eager,device_map=cpu,revision=v1", dtype="float32")
    assert seen["attn_implementation"] == "eager" and seen["device_map"] == "cpu" and seen["revision"] == "v1"
    assert m.model.config._attn_implementation == "eager" and m.device.type == "cpu"
    assert resolve(f"{tiny_dir}:revision=v1") == tiny_dir


def test_quantisation_asks_bitsandbytes_for_nf4(tiny_dir, monkeypatch):
    import sys
    import types

    import transformers

    from selfadapt.models import _from_pretrained_kwargs

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed
    with pytest.raises(ModelLoadError, match=r"selfadapt\[quantization\]"):
        _from_pretrained_kwargs({"quantization": "4bit"}, torch.bfloat16)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    q = _from_pretrained_kwargs({"quantization": "4bit"}, torch.bfloat16)["quantization_config"]
    assert isinstance(q, transformers.BitsAndBytesConfig) and q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert _from_pretrained_kwargs({"quantization": "8bit"}, torch.float32)["quantization_config"].load_in_8bit


@pytest.mark.parametrize("spec, message", [("m:quant=4bit", "unknown loading option 'quant'"),
                                           ("m:quantization=3bit", "4bit or 8bit")])
def test_bad_loading_options_are_named(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        resolve(spec)


def test_auto_device_picks_mps_on_apple_laptops(monkeypatch):
    from selfadapt.models import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu" and pick_device("cuda:1") == torch.device("cuda:1")
