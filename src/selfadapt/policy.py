"""The self-edit policy: the model writing training data for itself."""

from __future__ import annotations

import time
from typing import Any, Callable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .domain import Domain
from .generation import SamplingConfig, generate


def write_selfedits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    domain: Domain,
    items: list[Any],
    k: int,
    sampling: SamplingConfig,
    *,
    seed: int,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[list[str]], float]:
    """Sample ``k`` self-edits per item, batched across items; returns them and the seconds taken.

    With a resident LoRA model, its adapter must be zero (the base policy) when this is
    called; the caller owns that.
    """
    if k < 1:
        raise ValueError("k (self-edits per item) must be >= 1")
    prompts = [domain.selfedit_prompt(item) for item in items for _ in range(k)]
    t0 = time.perf_counter()
    texts = generate(model, tokenizer, prompts, sampling, seed=seed, on_batch=on_batch)
    return [texts[i * k : (i + 1) * k] for i in range(len(items))], time.perf_counter() - t0
