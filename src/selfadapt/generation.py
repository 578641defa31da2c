"""Batched generation with transformers: left padding, prompts sorted by length."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol, Union, runtime_checkable

import numpy as np
import torch
from llguidance.torch import allocate_token_bitmask, apply_token_bitmask_inplace
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .models import encode_text, pick_device

log = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    """How to sample. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 0.95
    batch_size: int | None = None  # None: by device (``default_batch_size``)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


def default_batch_size(device: torch.device) -> int:
    """Rows per ``generate`` batch when none is set: a GPU decodes a wide batch in about the time of
    one row (a step is bound by reading the weights), a CPU's cost grows with every row."""
    return 64 if device.type == "cuda" else 8


def batch_size_for(batch_size: int | None, device: str) -> int:
    """A config's ``gen_batch_size``: as set, else the default of the device it will run on. Resolved
    when the config is made, so a run's saved config holds the number its records were sampled with."""
    return batch_size or default_batch_size(pick_device(device))


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


def pack(allowed: list[int] | torch.Tensor) -> torch.Tensor:
    """``allowed`` (token ids, or a boolean mask over the vocabulary) as the int32 words of a
    token bitmask row in llguidance's layout (token ``t`` is bit ``t % 32`` of word ``t // 32``)."""
    if not isinstance(allowed, torch.Tensor):
        ids = torch.as_tensor(allowed, dtype=torch.long)
        allowed = torch.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=torch.bool)
        allowed[ids] = True
    packed = np.packbits(allowed.numpy(), bitorder="little")
    return torch.from_numpy(np.pad(packed, (0, -len(packed) % 4)).view(np.int32))


def fill_row(bitmask: torch.Tensor, row: int, bits: torch.Tensor | None) -> None:
    """Row ``row`` of a batch's token bitmask: the tokens of ``bits`` (``pack``) and none past
    them (an embedding padded past the tokenizer), or every token for None."""
    if bits is None:
        bitmask[row] = -1
        return
    n = min(len(bits), bitmask.shape[1])
    bitmask[row, :n] = bits[:n]
    bitmask[row, n:] = 0


@runtime_checkable
class Stepwise(Protocol):
    """A constraint that keeps its own state (so one object per row), reading each generated
    token once: re-reading the whole prefix at every step costs quadratic time in its length."""

    def advance(self, token: int) -> None:
        """Read the token just generated."""

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        """Write what is allowed next into ``bitmask[row]`` (llguidance's layout, as ``fill_row``)."""


def apply_bitmask(scores: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set ``scores`` to -inf wherever the host ``bitmask`` (one row per row of scores) has no bit,
    with one copy to the device. On CUDA by llguidance's kernel, ``torch.compile``d into one fused
    kernel (``_apply_on_device``); elsewhere compiling it needs a C++ toolchain and seconds per
    process, and run eagerly its integer passes are slower than unpacking the bits once on the host."""
    if scores.device.type == "cuda":
        _apply_on_device(scores, bitmask.to(scores.device))
        return
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")[:, : scores.shape[-1]]
    _mask_unpacked(scores, torch.from_numpy(bits))


# Set once llguidance's compiled kernel has failed in this process: compiling needs Inductor, Triton
# and a C compiler, and a failed compile is retried (and fails again) at every call.
_kernel_failed = False


def _apply_on_device(scores: torch.Tensor, bitmask: torch.Tensor) -> None:
    """``apply_bitmask`` with the bitmask already on the scores' device: llguidance's compiled kernel,
    or where it cannot be compiled, ``apply_bitmask_eager`` (warned once)."""
    global _kernel_failed
    if not _kernel_failed:
        try:
            apply_token_bitmask_inplace(scores, bitmask)
            return
        except Exception as exc:  # a compile fails before the kernel writes to ``scores``
            _kernel_failed = True
            log.warning("llguidance's compiled token-bitmask kernel failed (%s: %s); constrained decoding "
                        "masks the logits with eager torch operations instead", type(exc).__name__, exc)
    apply_bitmask_eager(scores, bitmask)


def apply_bitmask_eager(scores: torch.Tensor, bitmask: torch.Tensor) -> None:
    """``apply_bitmask`` unpacking the bits where the bitmask is (on the device: no copy back to
    the host), with eager torch operations: nothing to compile."""
    shifts = torch.arange(32, device=bitmask.device, dtype=torch.int32)
    bits = ((bitmask[..., None] >> shifts) & 1).flatten(-2)[:, : scores.shape[-1]]
    _mask_unpacked(scores, bits)


def _mask_unpacked(scores: torch.Tensor, bits: torch.Tensor) -> None:
    """Set ``scores`` to -inf where the unpacked ``bits`` (one per token, a row per row of scores) are
    0, and past them (a bitmask narrower than the logits)."""
    n = bits.shape[-1]
    scores[:, n:] = float("-inf")
    scores[:, :n].masked_fill_(bits.to(scores.device) == 0, float("-inf"))


class _Constrained(LogitsProcessor):
    """Each row's constraint masks the logits of the tokens it does not allow (to -inf), so
    sampling renormalises over the rest. A step reads the batch's new tokens in one copy from
    the device, fills one host bitmask for the whole batch, and copies and applies it at once:
    done per row, the copies, synchronisations and kernel launches are much of a GPU's step.
    ``Stepwise`` constraints read only the new token; a plain callable gets the row's tokens so
    far, kept here."""

    def __init__(self, rows: list[Callable[[list[int]], Allowed] | None], width: int):
        self.rows, self.width = rows, width
        self.stepwise = [isinstance(c, Stepwise) for c in rows]
        self.generated: list[list[int]] = [[] for _ in rows]
        self.bitmask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.width:  # every step but the first has a new token per row
            for r, token in enumerate(input_ids[:, -1].tolist()):
                if self.stepwise[r]:
                    self.rows[r].advance(token)
                else:
                    self.generated[r].append(token)
        if self.bitmask is None:  # pinned where there is a GPU: its copy to the device is direct
            self.bitmask = allocate_token_bitmask(len(self.rows), scores.shape[-1])
        for r, constraint in enumerate(self.rows):
            if self.stepwise[r]:
                constraint.fill(self.bitmask, r)
            else:
                allowed = constraint(list(self.generated[r])) if constraint else None
                fill_row(self.bitmask, r, None if allowed is None else pack(allowed))
        apply_bitmask(scores, self.bitmask)
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
    batch_size = cfg.batch_size or default_batch_size(model.device)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        constraint = {}
        rows = [constraints[i] for i in idx] if constraints is not None else []
        if any(c is not None for c in rows):
            constraint["logits_processor"] = LogitsProcessorList([_Constrained(rows, width)])
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
