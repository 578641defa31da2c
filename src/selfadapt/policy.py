"""The self-edit policy: the model writing training data for itself."""

from __future__ import annotations

import time
from typing import Any, Callable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .domain import Domain
from .evaluate import progress_bar
from .generation import SamplingConfig, generate
from .runs import Run


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


def write_into_run(
    run: Run,
    prefix: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    domain: Domain,
    items: list[Any],
    k: int,
    sampling: SamplingConfig,
    *,
    seed: int,
    tags: dict[str, Any] | None = None,
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Self-edits for every item, written once per run (``{prefix}write/{item}``) and reloaded on resume.

    Returns item id → self-edits and item id → seconds spent writing them.
    """
    todo = [it for it in items if not run.done(f"{prefix}write/{domain.item_id(it)}")]
    if todo:
        with progress_bar() as bar:
            task = bar.add_task(f"{prefix}writing self-edits", total=len(todo) * k)
            texts, seconds = write_selfedits(model, tokenizer, domain, todo, k, sampling, seed=seed,
                                             on_batch=lambda n: bar.advance(task, n))
        for it, t in zip(todo, texts):
            iid = domain.item_id(it)
            run.append(f"{prefix}write/{iid}", {"condition": "write", "item": iid, **(tags or {}),
                                                "selfedits": t, "seconds": seconds / len(todo)})
    written = {domain.item_id(it): run.get(f"{prefix}write/{domain.item_id(it)}") for it in items}
    return {i: w["selfedits"] for i, w in written.items()}, {i: w["seconds"] for i, w in written.items()}
