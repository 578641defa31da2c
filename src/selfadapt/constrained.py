"""Grammar-constrained sampling: every sample is a document of its grammar, by construction.

A 135M model asked for a configuration JSON writes prose, Python, or invented keys, so
ReST-EM has nothing to reinforce; asked for a Countdown expression or a function call, it
apologises or drops arguments, so a retry never succeeds and GRPO has no signal. llguidance (the engine behind the guided decoding of
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
from transformers import PreTrainedTokenizerBase

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
    """One row's constraint: the tokens generated so far → the token ids allowed next.

    Stateful: the matcher consumes the tokens it has not seen yet on each call. After the
    end token, nothing is consumed (generation pads finished rows). ``prefix`` is text the
    prompt already ends with that belongs to the document (an answer prefill such as
    ``<answer>``): the matcher reads it first.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, grammar: str, prefix: str = ""):
        self.tok, self.grammar, self.prefix = _lltokenizer(tokenizer), grammar, prefix  # the last two: for vLLM
        self.matcher = llguidance.LLMatcher(self.tok, grammar)
        if self.matcher.is_error():
            raise ValueError(f"invalid grammar: {self.matcher.get_error()}")
        if prefix and not self.matcher.consume_tokens(tokenizer(prefix, add_special_tokens=False)["input_ids"]):
            raise ValueError(f"the grammar does not allow the prefix {prefix!r}: {self.matcher.get_error()}")
        self.eos, self.seen = tokenizer.eos_token_id, 0

    def __call__(self, generated: list[int]) -> list[int] | torch.Tensor:
        new = generated[self.seen:]
        if self.eos in generated[: self.seen]:
            return [self.eos]
        for t in new:
            self.seen += 1
            if t == self.eos:
                return [self.eos]
            if not self.matcher.consume_token(t):
                raise RuntimeError(f"token {t} was sampled outside the grammar: {self.matcher.get_error()}")
        if self.matcher.is_stopped():
            return [self.eos]
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        return torch.from_numpy(bits[: self.tok.vocab_size].astype(bool))  # a mask: no list of ids per step

    def accepts(self, ids: list[int]) -> bool:
        """Whether ``ids`` (without the end token) form a complete document of the grammar."""
        for t in ids:
            if not self.matcher.consume_token(t):
                return False
        return self.matcher.is_accepting()
