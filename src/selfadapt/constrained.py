"""Grammar-constrained sampling: every sample is a document of its grammar, by construction.

A 135M model asked for a configuration JSON writes prose, Python, or invented keys, so
ReST-EM has nothing to reinforce; asked for a Countdown expression or a function call, it
apologises or drops arguments, so a retry never succeeds and GRPO has no signal.
llguidance (the engine behind the guided decoding of
vLLM and SGLang) compiles a JSON Schema and, at every step, masks the tokens that could
not continue a valid document; sampling renormalises over the rest, so every sample is
valid and still drawn from the model's own distribution over what is allowed. It is a
Rust wheel without Python dependencies and runs on CPU, which is why it was chosen over
xgrammar (pulls in triton), outlines (a large stack) and lm-format-enforcer (pure Python,
slow over a 49k vocabulary).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import torch
from llguidance.torch import fill_next_token_bitmask, get_bitmask_shape
from transformers import PreTrainedTokenizerBase

from .generation import fill_row, pack

# One canonical layout: flexible whitespace would let a sampler wander through blank lines.
LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


@functools.cache
def _lltokenizer(tokenizer: PreTrainedTokenizerBase) -> llguidance.LLTokenizer:
    return llguidance.hf.from_tokenizer(tokenizer)


def schema_grammar(schema: dict[str, Any]) -> str:
    """The llguidance grammar of a JSON Schema in the canonical layout (compiled once per schema)."""
    return llguidance.LLMatcher.grammar_from_json_schema(json.dumps({**schema, "x-guidance": LAYOUT}))


def lark_grammar(lark: str) -> str:
    """The llguidance grammar of a Lark grammar (``start`` is the whole document)."""
    return llguidance.LLMatcher.grammar_from_lark(lark)


class GrammarConstraint:
    """One row's constraint (``generation.Stepwise``): the matcher consumes each generated token
    once and writes the tokens allowed next straight into the batch's bitmask.

    After the end token, nothing is consumed (generation pads finished rows) and only the end
    token is allowed. ``prefix`` is text the prompt already ends with that belongs to the
    document (an answer prefill such as ``<answer>``): the matcher reads it first.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, grammar: str, prefix: str = ""):
        self.tok, self.grammar, self.prefix = _lltokenizer(tokenizer), grammar, prefix  # the last two: for vLLM
        self.matcher = llguidance.LLMatcher(self.tok, grammar)
        if self.matcher.is_error():
            raise ValueError(f"invalid grammar: {self.matcher.get_error()}")
        if prefix and not self.matcher.consume_tokens(tokenizer(prefix, add_special_tokens=False)["input_ids"]):
            raise ValueError(f"the grammar does not allow the prefix {prefix!r}: {self.matcher.get_error()}")
        self.eos, self.seen, self.ended = tokenizer.eos_token_id, 0, False
        self.eos_bits = pack([self.eos])
        self.words = get_bitmask_shape(1, self.tok.vocab_size)[1]  # what the matcher writes: exactly its vocabulary

    def advance(self, token: int) -> None:
        self.seen += 1
        if self.ended:
            return
        if token == self.eos:
            self.ended = True
        elif not self.matcher.consume_token(token):
            raise RuntimeError(f"token {token} was sampled outside the grammar: {self.matcher.get_error()}")

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        if self.ended or self.matcher.is_stopped():
            fill_row(bitmask, row, self.eos_bits)
            return
        bitmask[row, self.words:] = 0
        fill_next_token_bitmask(self.matcher, bitmask[:, : self.words], row)

    def __call__(self, generated: list[int]) -> list[int] | torch.Tensor:
        """What is allowed after ``generated`` (the tokens so far, of which only the unseen ones are read)."""
        for t in generated[self.seen:]:
            self.advance(t)
        if self.ended or self.matcher.is_stopped():
            return [self.eos]
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        return torch.from_numpy(bits[: self.tok.vocab_size].astype(bool))  # a mask: no list of ids per step

    def accepts(self, ids: list[int]) -> bool:
        """Whether ``ids`` (without the end token) form a complete document of the grammar."""
        for t in ids:
            if not self.matcher.consume_token(t):
                return False
        return self.matcher.is_accepting()
