"""Log-likelihood of a completion given a prompt: a dense measure of what a model knows.

Generation scores a question 0 or 1; the log-probability of the right answer moves with
every update, so it separates "a little closer" from "no change". Prompt and completion
are tokenized part by part (as the inner loop does), so the boundary is exact, and the
LM head runs only over the completion's positions: with a 49k vocabulary it is a large
share of a small model's FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Score:
    logprob: float  # summed over the completion's tokens
    tokens: int

    @property
    def mean(self) -> float:
        """Per-token log-probability: comparable across completions of different lengths."""
        return self.logprob / self.tokens


def encode_pair(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Prompt ids (chat-template special tokens are already in the text) and completion ids."""
    return (tokenizer(prompt, add_special_tokens=False)["input_ids"],
            tokenizer(completion, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def completion_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      pairs: list[tuple[str, str]], batch_size: int = 32) -> list[Score]:
    """log p(completion | prompt) for each (prompt, completion) pair, in order.

    Sequences are left-padded so that every completion ends at the last position, and
    positions are counted from each sequence's first real token, so padding changes
    nothing. An empty completion is an error: it has no likelihood to compare.
    """
    encoded = [encode_pair(tokenizer, p, c) for p, c in pairs]
    for i, (_, comp) in enumerate(encoded):
        if not comp:
            raise ValueError(f"pair {i}: the completion {pairs[i][1]!r} has no tokens")
    order = sorted(range(len(pairs)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    out: list[Score | None] = [None] * len(pairs)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [encoded[i][0] + encoded[i][1] for i in idx]
        width = max(map(len, seqs))
        keep = max(len(encoded[i][1]) for i in idx) + 1  # logits that predict the completion tokens
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        dev = model.device
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                       logits_to_keep=keep).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t + 1
        targets = ids[:, width - keep + 1:].to(dev)
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(idx):
            n = len(encoded[i][1])
            out[i] = Score(float(token_logp[row, keep - 1 - n:].sum()), n)
    model.train(was_training)
    return out  # type: ignore[return-value]
