"""A tiny, randomly initialised Llama and a byte-level BPE tokenizer, built in-process.

Unit tests use it instead of a real checkpoint: it loads in milliseconds, is the same
architecture family as the embedded model, and is deterministic under a seed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from selfadapt.knowledge.data import Passage, Question

# trackio reads its local store's place once, on import: tests never write to the user's
os.environ.setdefault("TRACKIO_DIR", tempfile.mkdtemp(prefix="selfadapt-trackio-"))

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The Mongol army seized the town of Otrar in 1219.",
    "Genghis Khan ordered Subutai and Jebe to hunt the Shah.",
    "Question: What metal was used? Answer: silver",
    "The quick brown fox jumps over the lazy dog 0123456789.",
    "Implications: the fragmentation of the army was decisive.",
] * 20


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def build_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=0, eos_token_id=2, bos_token_id=1, tie_word_embeddings=True,
                      initializer_range=0.3)  # large enough that logits can move far from uniform
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny model saved like any Hugging Face checkpoint (load it with ``load_model``)."""
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = build_tokenizer()
    build_model(len(tok)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny tokenizer alone (session-wide: hypothesis tests reuse it across examples)."""
    return build_tokenizer()


@pytest.fixture()
def tiny(tiny_dir):
    from selfadapt.models import load_model

    return load_model(str(tiny_dir), dtype="float32", device="cpu")


@pytest.fixture()
def passages() -> list[Passage]:
    return [
        Passage("Genghis Khan", "The Mongol army seized the town of Otrar. The Shah fled.",
                (Question("Which town was seized?", "Otrar"), Question("What did the Shah do?", "fled")), index=0),
        Passage("Metals", "Molten silver was poured into the ears of Inalchuq.",
                (Question("What metal was used?", "silver"),), index=1),
    ]


@pytest.fixture()
def passages_file(tmp_path, passages) -> Path:
    path = tmp_path / "passages.json"
    path.write_text(json.dumps([{"title": p.title, "context": p.context,
                                 "questions": [{"question": q.question, "answer": q.answer} for q in p.questions]}
                                for p in passages]))
    return path
