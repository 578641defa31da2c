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
