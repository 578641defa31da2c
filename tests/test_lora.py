import random

import pytest
import torch

from selfadapt.lora import LoRAConfig, NonFiniteLossError, ResidentLoRA, load_adapter, make_batches

TEXTS = ["Genghis Khan\nThe Mongol army seized the town of Otrar.", "Metals\nMolten silver was used.",
         "Otrar was seized by the Mongol army in 1219, and the Shah fled."]


def logits(model, tokenizer, text="The Mongol army seized"):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_batches_pad_to_longest_and_mask_padding():
    encoded = [([5, 6, 7, 8, 9], 0), ([5, 6], 0), ([7, 8, 9], 0)]
    batches = make_batches(encoded, pad_id=2, batch_size=2, max_tokens=100, rng=random.Random(0))
    assert sorted(b[0].shape[0] for b in batches) == [1, 2]
    for ids, mask, labels in batches:
        assert ids.shape[1] == int(mask.sum(1).max())  # padded to the longest in the batch only
        assert (labels[mask == 0] == -100).all()
        assert (labels[mask == 1] == ids[mask == 1]).all()
    # A real token equal to the pad id (pad == EOS) is still a label.
    (ids, mask, labels), = make_batches([([2, 5, 2], 0)], pad_id=2, batch_size=4, max_tokens=100, rng=random.Random(0))
    assert labels.tolist() == [[2, 5, 2]]
    # Tokens before a sequence's loss start (its prompt) are not labels.
    (ids, mask, labels), = make_batches([([3, 4, 5, 6], 2)], pad_id=0, batch_size=4, max_tokens=100,
                                        rng=random.Random(0))
    assert labels.tolist() == [[-100, -100, 5, 6]]


def test_token_budget_keeps_a_long_passage_out_of_short_batches():
    shorts = [([7] * n, 0) for n in (20, 22, 25, 30, 31, 35)]
    passage = [([9] * 200, 0)]
    batches = make_batches(shorts + passage, pad_id=0, batch_size=16, max_tokens=1024, rng=random.Random(1))
    assert sorted(tuple(b[0].shape) for b in batches) == [(1, 200), (6, 35)]
    padded = sum(b[0].numel() for b in batches)
    assert padded == 6 * 35 + 200  # instead of 7 * 200 when batched by count alone


def test_training_fits_the_data_changes_only_lora_and_reset_restores_base(tiny):
    base_state = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    before = logits(tiny.model, tiny.tokenizer)
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=8, alpha=16, lr=2e-2, epochs=15, batch_size=2))
    assert torch.equal(logits(lora.model, tiny.tokenizer), before)  # wrapped but zero update
    stats = lora.train(TEXTS, seed=0)
    assert stats.steps == 15 * 2 and stats.tokens > 0
    assert sum(stats.losses[-5:]) / 5 < 0.7 * stats.losses[0]
    assert not torch.allclose(logits(lora.model, tiny.tokenizer), before)
    for name, p in lora.model.named_parameters():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base_state[key]), name
    lora.reset()
    assert torch.allclose(logits(lora.model, tiny.tokenizer), before, atol=0, rtol=0)


def test_same_seed_same_training(tiny):
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, lr=1e-2, epochs=3, batch_size=2))
    with lora.adapted(TEXTS, seed=7) as a:
        pass
    with lora.adapted(TEXTS, seed=7) as b:
        pass
    with lora.adapted(TEXTS, seed=8) as c:
        pass
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_nan_loss_raises_and_leaves_the_base_model(tiny):
    before = logits(tiny.model, tiny.tokenizer)
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=2))
    hook = lora.model.get_input_embeddings().register_forward_hook(lambda m, i, out: out * float("nan"))
    with pytest.raises(NonFiniteLossError, match="nan"):
        lora.train(TEXTS, seed=0)
    hook.remove()
    assert torch.equal(logits(lora.model, tiny.tokenizer), before)


def test_adapter_round_trip_through_safetensors(tiny, tiny_dir, tmp_path):
    from selfadapt.models import load_model

    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, lr=1e-2, epochs=3))
    lora.train(TEXTS, seed=0)
    adapted = logits(lora.model, tiny.tokenizer)
    lora.save(tmp_path / "ad")
    assert (tmp_path / "ad" / "adapter_model.safetensors").is_file()
    fresh = load_model(str(tiny_dir), dtype="float32", device="cpu")
    loaded = load_adapter(fresh.model, tmp_path / "ad")
    assert torch.allclose(logits(loaded, tiny.tokenizer), adapted, atol=1e-5)


def test_adapter_without_safetensors_is_refused(tiny, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_adapter(tiny.model, tmp_path)


@pytest.mark.parametrize("kwargs", [{"lr": 0}, {"r": 0}, {"batch_size": 0}, {"epochs": -1}])
def test_bad_lora_config(kwargs):
    with pytest.raises(ValueError):
        LoRAConfig(**kwargs)


def test_amp_trains_like_fp32_adapters_and_keeps_fp32_master_weights(tiny_dir):
    """On a bf16 model, autocast replaces PEFT's fp32 casts: the master weights stay fp32, and
    the update matches the one computed with fp32 adapters up to bf16 rounding."""
    from selfadapt.models import load_model

    deltas, losses = {}, {}
    for amp in (False, True):
        m = load_model(str(tiny_dir), dtype="bfloat16", device="cpu")
        lora = ResidentLoRA(m.model, m.tokenizer, LoRAConfig(r=8, alpha=16, lr=1e-2, epochs=5, batch_size=2, amp=amp))
        stats = lora.train(TEXTS, seed=0)
        assert {p.dtype for p in lora.lora_parameters} == {torch.float32}
        losses[amp] = stats.losses
        with torch.no_grad():
            deltas[amp] = torch.cat([layer.get_delta_weight("default").float().flatten() for layer in lora._layers])
    assert losses[True][0] == pytest.approx(losses[False][0], rel=0.02)
    assert losses[True][-1] < 0.8 * losses[True][0]
    assert losses[True] != losses[False]  # autocast really took over the adapters' math
    assert torch.nn.functional.cosine_similarity(deltas[True], deltas[False], dim=0).item() > 0.99
    assert deltas[True].norm() == pytest.approx(deltas[False].norm().item(), rel=0.1)


def test_the_base_model_skips_the_adapter_and_matches_a_zero_update(tiny):
    """Sampling self-edits through the PEFT wrapper with B = 0 ran every LoRA matmul for zeros."""
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4))
    ids = tiny.tokenizer(["The Mongol army seized"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        zero = lora.model(input_ids=ids).logits
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for n, m in lora.model.named_modules()
             if n.endswith("lora_A.default")]
    with lora.base(), torch.no_grad():
        skipped = lora.model(input_ids=ids).logits
    assert not calls and torch.allclose(zero, skipped)
    with torch.no_grad():
        lora.model(input_ids=ids)
    assert calls  # the adapter runs again outside
    for h in hooks:
        h.remove()


def test_all_linear_reaches_peft_as_its_shorthand(tiny):
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, target_modules=["all-linear"]))
    adapted = {n.rsplit(".", 1)[-1] for n, m in lora.model.named_modules() if hasattr(m, "lora_A")}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= adapted
    assert "lm_head" not in adapted


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_loss_on_labelled_positions_only_equals_the_full_logits_loss(arch):
    """Training projects onto the vocabulary only where a label follows; the loss and its
    gradient are the model's own causal-LM loss."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from selfadapt.lora import causal_lm_loss

    config = (LlamaConfig if arch == "llama" else Qwen2Config)(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    ids = torch.randint(0, 97, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = mask[2, 5:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[0, :8] = labels[1, :4] = -100  # prompts: no loss there
    full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    (g_full,) = torch.autograd.grad(full, model.model.layers[0].mlp.up_proj.weight)
    kept = causal_lm_loss(model, ids, mask, labels)
    (g_kept,) = torch.autograd.grad(kept, model.model.layers[0].mlp.up_proj.weight)
    assert torch.allclose(kept, full, atol=1e-6) and torch.allclose(g_kept, g_full, atol=1e-6)


def test_cpu_training_steps_run_eager_attention_and_generation_keeps_its_own(tiny):
    """torch's CPU flash-attention kernel is slow in backward on short sequences (RESULTS.md: a 4×68-token
    step of the embedded model 15–18 % faster eager), so training switches to eager attention and back."""
    tiny.model.set_attn_implementation("sdpa")
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=1))
    seen = []
    lora.train(["The Mongol army seized Otrar.", "Otrar fell in 1220."], seed=0,
               on_step=lambda step, loss: seen.append(tiny.model.config._attn_implementation))
    assert seen and set(seen) == {"eager"}
    assert tiny.model.config._attn_implementation == "sdpa"


def test_max_steps_stops_training_within_an_epoch(tiny):
    """``learn`` bounds a dense document's training time by steps, not epochs (RESULTS.md, issue 30)."""
    texts = [f"Otrar fell in {1200 + i}." for i in range(6)]
    lora = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=4, batch_size=2, max_steps=5))
    stats = lora.train(texts, seed=0)
    assert lora.planned_steps(texts) == stats.steps == 5 and stats.capped  # 3 an epoch: the cap is in the 2nd
    uncapped = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=4, batch_size=2))
    stats = uncapped.train(texts, seed=0)
    assert uncapped.planned_steps(texts) == stats.steps == 12 and not stats.capped
    exact = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=4, batch_size=2, max_steps=12))
    assert not exact.train(texts, seed=0).capped  # the cap reached with nothing left to cut is no cap
    with pytest.raises(ValueError):
        LoRAConfig(max_steps=0)


def test_the_final_loss_is_the_last_epochs_mean_not_one_batchs(tiny):
    """``learn`` reported its last batch's loss (0.012) while taught answers kept 0.27–0.55 (issue 46):
    one batch of a few examples says little of the fit. The final loss is the last epoch's mean."""
    texts = [f"Otrar fell in {1200 + i}." for i in range(6)]
    stats = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=3, batch_size=2)).train(texts, seed=0)
    assert stats.steps == 9 and stats.final_loss == pytest.approx(sum(stats.losses[6:]) / 3)
    capped = ResidentLoRA(tiny.model, tiny.tokenizer, LoRAConfig(r=4, epochs=3, batch_size=2, max_steps=7))
    stats = capped.train(texts, seed=0)
    assert stats.final_loss == pytest.approx(stats.losses[6])  # the one step the cap left of the last epoch
