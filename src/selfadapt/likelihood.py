"""Log-likelihood of a completion given a prompt: a dense measure of what a model knows.

Generation scores a question 0 or 1; the log-probability of the right answer moves with
every update, so it separates "a little closer" from "no change". Prompt and completion
are tokenized part by part (as the inner loop does), so the boundary is exact.

Multiple choice scores several short completions after one long prompt, so each distinct
prompt runs once and its key/value cache is shared by its completions: the forward pass
over a question's 8 options then costs about one prompt plus the options' few tokens.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from transformers import DynamicCache, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.utils import selective_log_softmax

from .models import encode_text


@dataclass(frozen=True)
class Score:
    logprob: float  # summed over the completion's tokens
    tokens: int

    @property
    def mean(self) -> float:
        """Per-token log-probability: comparable across completions of different lengths."""
        return self.logprob / self.tokens


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Prompt ids (one BOS where the tokenizer uses one, as in training) and completion ids."""
    return encode_text(tokenizer, prompt), tokenizer(completion, add_special_tokens=False)["input_ids"]


@functools.cache
def _cache_kwarg() -> str:
    """The name a model's forward takes its KV cache by: ``cache`` in recent transformers,
    ``past_key_values`` before (vLLM's CPU build pins transformers < 5.20). A release that does
    not know the name it is given drops it silently, and each completion is then scored without
    its prompt."""
    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def _padded(seqs: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols], mask[row, cols] = torch.tensor(seq), 1
    return ids, mask


@torch.no_grad()
def completion_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      pairs: list[tuple[str, str]], batch_size: int = 32) -> list[Score]:
    """log p(completion | prompt) for each (prompt, completion) pair, in order.

    A batch holds whole prompts and at most ``batch_size`` completions (more only when one
    prompt has more). Prompts are left-padded and completions right-padded after them, and
    positions count from each sequence's first real token, so padding changes nothing. An
    empty completion is an error: it has no likelihood to compare.
    """
    encoded = [encode_pair(tokenizer, p, c) for p, c in pairs]
    for i, (prompt, comp) in enumerate(encoded):
        if not comp:
            raise ValueError(f"pair {i}: the completion {pairs[i][1]!r} has no tokens")
        if not prompt:
            raise ValueError(f"pair {i}: the prompt {pairs[i][0]!r} has no tokens")
    groups: dict[tuple[int, ...], list[int]] = {}  # prompt ids → the pairs that share it
    for i, (prompt, _) in enumerate(encoded):
        groups.setdefault(tuple(prompt), []).append(i)
    batches, current = [], []
    for prompt in sorted(groups, key=len):
        if current and sum(len(groups[p]) for p in current) + len(groups[prompt]) > batch_size:
            batches.append(current)
            current = []
        current.append(prompt)
    batches.append(current)

    out: list[Score | None] = [None] * len(pairs)
    was_training = model.training
    model.eval()
    dev = model.device
    for prompts in batches:
        p_ids, p_mask = _padded([list(p) for p in prompts], tokenizer.pad_token_id, left=True)
        cache = DynamicCache()
        first = model(input_ids=p_ids.to(dev), attention_mask=p_mask.to(dev),
                      position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0).to(dev),
                      **{_cache_kwarg(): cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
        rows = [(k, i) for k, p in enumerate(prompts) for i in groups[p]]  # (prompt row, pair) per completion
        owner = torch.tensor([k for k, _ in rows])
        cache.reorder_cache(owner.to(dev))
        c_ids, c_mask = _padded([encoded[i][1] for _, i in rows], tokenizer.pad_token_id, left=False)
        positions = p_mask.sum(-1)[owner, None] + torch.arange(c_ids.shape[1])
        logits = model(input_ids=c_ids.to(dev), attention_mask=torch.cat([p_mask[owner], c_mask], -1).to(dev),
                       position_ids=positions.to(dev), **{_cache_kwarg(): cache}, use_cache=True).logits
        # the prompt's last position predicts a completion's first token; completion position t predicts t + 1
        logits = torch.cat([first[owner.to(dev), None], logits[:, :-1]], 1)
        # one completion's fp32 logits at a time, gathered before the normaliser (TRL's selective
        # log-softmax): no full-vocabulary fp32 copy of the batch and no log-softmax copy of it
        token_logp = torch.stack([selective_log_softmax(row.float(), ids) for row, ids in zip(logits, c_ids.to(dev))])
        for row, (_, i) in enumerate(rows):
            n = len(encoded[i][1])
            out[i] = Score(float(token_logp[row, :n].sum()), n)
    model.train(was_training)
    return out  # type: ignore[return-value]


@torch.no_grad()
def answer_distributions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]],
                         k: int, batch_size: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per (prompt, completion) pair, the model's ``k`` likeliest next tokens at each completion token's
    position and their log-probabilities renormalised over those ``k``: (ids, log-probs), each of shape
    (completion tokens, ``k``), on the CPU. Soft targets for a student that sees another prompt before the
    same completion tokens (``lora.Distilled``): the tail beyond the top few is a small model's noise,
    and kept whole it would cost a vocabulary's worth of memory per answer token. Sequences are
    right-padded, so padding moves no real token's position."""
    encoded = [encode_pair(tokenizer, p, c) for p, c in pairs]
    if any(not prompt for prompt, _ in encoded):
        raise ValueError("a prompt with no tokens: nothing predicts the completion's first token")
    out = []
    was_training = model.training
    model.eval()
    dev = model.device
    for s in range(0, len(encoded), batch_size):
        batch = encoded[s : s + batch_size]
        ids, mask = _padded([p + c for p, c in batch], tokenizer.pad_token_id, left=False)
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
        for row, (prompt, completion) in enumerate(batch):
            # the prompt's last position predicts the completion's first token
            logp = torch.log_softmax(logits[row, len(prompt) - 1 : len(prompt) - 1 + len(completion)].float(), -1)
            top = logp.topk(min(k, logp.shape[-1]), -1)
            out.append((top.indices.cpu(), (top.values - top.values.logsumexp(-1, keepdim=True)).cpu()))
    model.train(was_training)
    return out
