"""SEAL's inner loop: self-edit → training data → LoRA update → evaluate without context.

The score of the adapted model is the self-edit's reward. Failures that are the
self-edit's fault (no training data, a diverging loss) are results with reward 0 and a
reason, not exceptions: an RL loop must be able to learn from them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .domain import Domain, Evaluation, InvalidSelfEdit
from .lora import NonFiniteLossError, ResidentLoRA


@dataclass
class InnerLoopResult:
    status: str  # "ok", "invalid_selfedit" or "nan_loss"
    before: float | None  # the unadapted model's score on the item
    score: float  # the adapted model's: one name from here to the run's records and the reward
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> float | None:
        return None if self.before is None else self.score - self.before

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"gain": self.gain}


def evaluate_base(lora: ResidentLoRA, domain: Domain, item: Any) -> Evaluation:
    """The base model's score on the item (the adapter skipped)."""
    with lora.base():
        return domain.evaluate(lora.model, lora.tokenizer, item)


def evaluate_selfedit(
    lora: ResidentLoRA,
    domain: Domain,
    item: Any,
    selfedit: str | None,
    *,
    seed: int,
    before: Evaluation | None = None,
) -> InnerLoopResult:
    """Adapt on ``domain.training_data(item, selfedit)``, evaluate, restore the base model.

    ``selfedit=None`` trains on the item alone (the "passage only" baseline). ``before``
    is the base model's evaluation, if the caller already has it.
    """
    before_score = None if before is None else before.score
    t0 = time.perf_counter()
    try:
        data = domain.training_data(item, selfedit)
    except InvalidSelfEdit as e:
        return InnerLoopResult("invalid_selfedit", before_score, 0.0, reason=str(e),
                               seconds={"build": time.perf_counter() - t0})
    seconds = {"build": time.perf_counter() - t0}
    try:
        with lora.adapted(data.examples, seed=seed, lr=data.lr, epochs=data.epochs) as stats:
            seconds["train"] = stats.seconds
            after = domain.evaluate(lora.model, lora.tokenizer, item)
    except NonFiniteLossError as e:
        return InnerLoopResult("nan_loss", before_score, 0.0, reason=str(e), seconds=seconds)
    seconds.update(after.seconds)
    train = {"sequences": len(data.examples), "steps": stats.steps, "tokens": stats.tokens,
             "first_loss": stats.losses[0] if stats.losses else None, "final_loss": stats.final_loss}
    return InnerLoopResult("ok", before_score, after.score, after.records, seconds, train, extra=after.extra)
