"""Batched generation with transformers: left padding, prompts sorted by length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .models import encode_text


@dataclass
class SamplingConfig:
    """How to sample. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 0.95
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


def decoding_settings(cfg: SamplingConfig) -> dict:
    """Every field that shapes the next-token distribution, set. ``generate`` fills any field
    left unset from the checkpoint's ``generation_config`` (Qwen2.5-Instruct ships
    ``repetition_penalty=1.05, top_k=20, top_p=0.8``), which would decode answers, grids and
    self-edits from a distribution the likelihood scoring and the policy's training never see."""
    common = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, encoder_repetition_penalty=1.0, num_beams=1,
                  min_new_tokens=None, bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None,
                  sequence_bias=None)
    if cfg.temperature == 0:  # greedy: the sampling fields do nothing (and setting them draws a warning)
        return dict(do_sample=False, **common)
    return dict(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, min_p=0.0, typical_p=1.0,
                epsilon_cutoff=0.0, eta_cutoff=0.0, **common)


# What a constraint allows next: token ids, a boolean mask over the vocabulary (precomputed
# once for a large set: a 150k-id list turned into a tensor at every step is the slow part of
# constrained decoding), or None for any token.
Allowed = Union[list[int], torch.Tensor, None]


def allows(allowed: Allowed, token: int) -> bool:
    if allowed is None:
        return True
    if isinstance(allowed, torch.Tensor):
        return token < len(allowed) and bool(allowed[token])
    return token in allowed


class _Constrained(LogitsProcessor):
    """Each row's constraint masks the logits of the tokens it does not allow (to -inf), so
    sampling renormalises over the rest; a mask shorter than the logits (an embedding padded
    past the tokenizer) allows none of the extra ids."""

    def __init__(self, rows: list[Callable[[list[int]], Allowed] | None], width: int):
        self.rows, self.width = rows, width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for r, constraint in enumerate(self.rows):
            allowed = constraint(input_ids[r, self.width:].tolist()) if constraint else None
            if allowed is None:
                continue
            keep = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            if isinstance(allowed, torch.Tensor):
                n = min(len(allowed), len(keep))
                keep[:n] = allowed[:n].to(scores.device)
            else:
                keep[torch.as_tensor(allowed, dtype=torch.long, device=scores.device)] = True
            scores[r] = scores[r].masked_fill(~keep, float("-inf"))
        return scores


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    cfg: SamplingConfig,
    *,
    seed: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    constraints: list[Callable[[list[int]], Allowed] | None] | None = None,
) -> list[str]:
    """Complete each prompt once; returns the completions in prompt order.

    Prompts are grouped by token length so that batches carry little padding; each starts
    with exactly one BOS where the tokenizer uses one (``models.encode_text``).
    ``constraints`` (one per prompt, or None) map the tokens generated so far to what is
    allowed next (``Allowed``): the other tokens are masked and sampling renormalises over
    the rest.
    """
    if constraints is not None and len(constraints) != len(prompts):
        raise ValueError(f"{len(constraints)} constraints for {len(prompts)} prompts")
    if seed is not None:
        torch.manual_seed(seed)
    encoded = [encode_text(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id
    kwargs = decoding_settings(cfg)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        constraint = {}
        if constraints is not None:
            constraint["logits_processor"] = LogitsProcessorList([_Constrained([constraints[i] for i in idx], width)])
        gen = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=pad_id,
            **kwargs,
            **constraint,
        )
        texts = tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
        for i, text in zip(idx, texts):
            out[i] = text.strip()
        if on_batch:
            on_batch(len(idx))
    model.train(was_training)
    return out
