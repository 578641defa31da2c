"""Defects that appear only at the scale users run (issue 28), caught on CPU with tiny models
of the right architecture and tokenizer behaviour."""

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from selfadapt.generation import SamplingConfig, generate


def tiny_qwen2(vocab_size: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=0, eos_token_id=2, bos_token_id=1, tie_word_embeddings=True,
                      initializer_range=0.3)
    return Qwen2ForCausalLM(cfg).eval()


def test_a_checkpoints_generation_config_does_not_leak_into_decoding(tiny_tokenizer, tmp_path):
    """Qwen2.5-Instruct ships repetition_penalty=1.05, top_k=20, top_p=0.8: greedy answers and
    sampled self-edits were decoded with a penalty the likelihood scoring never sees."""
    plain = tiny_qwen2(len(tiny_tokenizer))
    plain.save_pretrained(tmp_path / "plain")
    shipped = Qwen2ForCausalLM.from_pretrained(tmp_path / "plain")
    shipped.generation_config.update(repetition_penalty=1.5, top_k=2, top_p=0.5, temperature=0.3, do_sample=True,
                                     min_p=0.3, no_repeat_ngram_size=2, typical_p=0.5)
    shipped.save_pretrained(tmp_path / "shipped")
    shipped = Qwen2ForCausalLM.from_pretrained(tmp_path / "shipped").eval()
    assert shipped.generation_config.repetition_penalty == 1.5
    prompts = ["The Mongol army seized", "Question: What metal was used? Answer:"]
    for cfg in (SamplingConfig(24, temperature=0.0), SamplingConfig(24, temperature=1.0, top_p=0.95)):
        ours = generate(plain, tiny_tokenizer, prompts, cfg, seed=3)
        theirs = generate(shipped, tiny_tokenizer, prompts, cfg, seed=3)
        assert ours == theirs


def bos_tokenizer():
    """The tiny tokenizer behaving like Llama 3's: it adds a BOS, and its chat template writes one."""
    from conftest import build_tokenizer
    from tokenizers import processors

    tok = build_tokenizer()
    tok.add_special_tokens({"bos_token": "<|bos|>"})
    bos = tok.convert_tokens_to_ids("<|bos|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<|bos|> $A",
                                                                         special_tokens=[("<|bos|>", bos)])
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    return tok


def test_exactly_one_bos_in_training_scoring_generation_and_sft(tiny_dir, tmp_path, monkeypatch):
    """lora.encode tokenized templated text with special tokens (two BOS), inference without
    (one); TRL's SFT tokenized ReST-EM's rendered prompts with special tokens again."""
    import trl

    from selfadapt.likelihood import encode_pair
    from selfadapt.lora import encode
    from selfadapt.models import chat_prompt, encode_text
    from selfadapt.restem import PolicySFTConfig, sft_policy

    tok = bos_tokenizer()
    bos = tok.bos_token_id
    prompt = chat_prompt(tok, "Which town was seized?")
    assert tok(prompt)["input_ids"][:2] == [bos, bos]  # the defect, as the tokenizer would have it
    count = lambda ids: ids.count(bos)  # noqa: E731
    (pair, start), (text, _) = encode(tok, [(prompt, "Otrar"), "The Mongol army seized Otrar."], 512)
    assert count(pair) == 1 and pair[0] == bos and count(text) == 1 and text[0] == bos
    assert count(encode_pair(tok, prompt, "Otrar")[0]) == 1
    assert encode_text(tok, prompt) == pair[:start]  # generation and scoring see the training prompt

    model_dir = tmp_path / "bos-model"
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_dir)
    m.resize_token_embeddings(len(tok))
    m.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    seen, real = [], trl.SFTTrainer.train
    monkeypatch.setattr(trl.SFTTrainer, "train", lambda self, *a, **k: seen.append(self.train_dataset[0]["input_ids"])
                        or real(self, *a, **k))
    sft_policy(str(model_dir), [{"prompt": prompt, "completion": "Otrar"}], PolicySFTConfig(epochs=1, r=4, alpha=8),
               tmp_path / "policy", seed=0, dtype="float32", device="cpu")
    assert count(seen[0]) == 1 and seen[0][0] == bos


def track_loads(monkeypatch, *modules):
    """Patch ``load_model`` where ``modules`` import it: each load records how many models loaded
    before are still alive (after a garbage collection)."""
    import gc
    import weakref

    from selfadapt import models

    alive, counts = [], []

    def tracking(spec, **kw):
        gc.collect()
        counts.append(sum(ref() is not None for ref in alive))
        loaded = models.load_model(spec, **kw)
        alive.append(weakref.ref(loaded.model))
        return loaded

    for module in modules:
        monkeypatch.setattr(module, "load_model", tracking)
    return counts


def test_no_model_copy_is_alive_when_the_next_one_loads(tiny_dir, passages, tmp_path, monkeypatch):
    """The generation model stayed referenced through policy SFT and every --policy evaluation
    (``gen_model``, the ``workers`` bound by ``with``): at 7B, two 15 GB copies on one GPU."""
    from selfadapt import policy, restem
    from selfadapt.knowledge.domain import KnowledgeDomain
    from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
    from selfadapt.lora import LoRAConfig
    from selfadapt.restem import PolicySFTConfig, ReSTEMConfig, run_restem

    counts = track_loads(monkeypatch, restem, policy)
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    cfg = ReSTEMConfig(model=str(tiny_dir), rounds=2, items_per_round=2, k=1, max_new_tokens=8,
                       lora=LoRAConfig(r=4, epochs=1), sft=PolicySFTConfig(epochs=1, r=4, alpha=8),
                       dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))
    run = run_restem(cfg, passages, lambda tok: KnowledgeDomain(tok, "implications"))
    assert counts == [0, 0, 0, 0]  # round 0, its SFT, round 1, its SFT
    ecfg = KnowledgeEvalConfig(model=str(tiny_dir), dataset="eval200", passages=1, external=[], controls=[],
                               policies=[str(run.path / "round-0")], max_new_tokens=8, answer_max_new_tokens=4,
                               lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu",
                               runs_dir=str(tmp_path / "eval"))
    run_knowledge_eval(ecfg)
    assert counts[4:] == [0, 0]  # the base model, then the policy
