"""Prior prompts: an instruction placed before a task during RL training and at test time.

Prior-prompt engineering (Taki et al., 2025) trains the same model with five styles of
instruction in front of every query and finds that each instils a different behaviour.
Here they are named templates (our own wording) that can be put in front of what the
model is asked to write: the reflection in Reflect, Retry, Reward (``rrr train --prior-prompt``)
and the self-edit in SEAL (``eval``/``train knowledge --prior-prompt``). The same name
must be used when a trained policy is tested; runs record it in their config.
"""

from __future__ import annotations

PRIOR_PROMPTS: dict[str, str] = {
    "reasoning": "Think step by step before you write your answer, and show that thinking briefly.",
    "planning": "First write a short plan of how you will approach this, then follow the plan.",
    "code": "Work through the problem as a short piece of code or pseudo-code, then state the result.",
    "knowledge": "First recall the facts and rules that matter here, then use them.",
    "null-example": "First look at a trivial or empty case of this problem and what it teaches, then "
                    "handle the real one.",
}


def check_prior(name: str | None) -> None:
    if name is not None and name not in PRIOR_PROMPTS:
        raise ValueError(f"unknown prior prompt {name!r}; choose from {', '.join(PRIOR_PROMPTS)}")


def with_prior(instruction: str, name: str | None) -> str:
    """``instruction`` preceded by the prior prompt ``name`` (unchanged when None)."""
    check_prior(name)
    return instruction if name is None else f"{PRIOR_PROMPTS[name]}\n\n{instruction}"
