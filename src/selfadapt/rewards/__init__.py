"""Rewards as plain callables with TRL's reward-function signature.

A reward is called as ``reward(prompts, completions, **columns) -> list[float]`` (the
columns are the dataset's, e.g. ``query`` and ``attempt``, plus TRL's
``trainer_state``), so TRL's ``GRPOTrainer`` takes a list of them with
``reward_weights`` and logs each one's mean. Each is built from a ``RewardContext``
(the task, the tokenizer, and the policy being trained, which the trainer sets), and
writes its value for every rollout to the run's ``rewards.jsonl``.

Kinds: ``verifier.py`` (a checker decides, optionally with TinyV's judge fallback),
``likelihood.py`` (verifier-free, the policy's own likelihood of a reference),
``length.py`` (LASER's length shaping), ``disco.py`` (DISCO's domain- and
difficulty-aware scaling of the summed reward, a trainer option rather than a reward).
``REWARDS`` maps the names that ``--reward NAME=WEIGHT`` accepts to their classes; add
your own to it. A plain function as TRL writes them, ``f(prompts, completions, **kwargs)``,
is a reward too (``TRLReward``: the context's fields come as keyword arguments).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import numbers
from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..generation import SamplingConfig


@dataclass
class RewardContext:
    """What rewards share: the task and tokenizer, the current policy (set by the trainer),
    how retries are sampled, where rollouts are logged, and one clock for phase times."""

    task: Any  # an rrr Task
    tokenizer: PreTrainedTokenizerBase
    retry: SamplingConfig = field(default_factory=lambda: SamplingConfig(192, 0.0))
    log_path: Path | None = None
    model: PreTrainedModel | None = None
    engine: Any = None  # a ``VLLMSampler`` on TRL's vLLM copy of the policy (``--backend vllm``): it writes the retries
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    prior: str | None = None  # the prior prompt the reflections were asked with: the retry repeats it
    judge: Any = None  # TinyV: a ``judge.Judge`` asked about retries the verifier rejects
    last_retries: tuple | None = None  # the last batch's retries and verdicts, shared by the step's rewards
    laser_target: int = 64  # LASER's fixed target length of a reflection, in tokens
    length_grid: tuple[int, ...] = (16, 32, 48, 64, 96, 128)  # LASER-D's candidate targets

    def policy(self) -> PreTrainedModel:
        if self.model is None:
            raise RuntimeError("the reward context has no policy; the trainer sets RewardContext.model")
        return self.model

    def log(self, name: str, step: int | None, rows: list[dict[str, Any]]) -> None:
        """One line per rollout: the step, the reward's name, its value and what explains it."""
        if self.log_path is None:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({"step": step, "reward": name, **row}, ensure_ascii=False) + "\n")


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    """Each text's length in tokens, as the model sees it (no special tokens)."""
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def completion_text(completion: Any) -> str:
    """TRL passes a conversational completion as a list of messages, a plain one as text."""
    return completion[-1]["content"] if isinstance(completion, list) else completion


class EpisodeReward:
    """A reward of a reflection in its failed episode: reads TRL's columns (the query as JSON,
    the failed attempt), asks ``score`` for values and one log row per rollout, logs them."""

    __name__ = "episode"

    def __init__(self, ctx: RewardContext):
        self.ctx = ctx

    def score(self, queries: list[dict], attempts: list[str], reflections: list[str]
              ) -> tuple[list[float], list[dict[str, Any]]]:
        raise NotImplementedError

    def __call__(self, prompts, completions, query, attempt, trainer_state=None, **_) -> list[float]:
        values, rows = self.score([json.loads(q) for q in query], list(attempt),
                                  [completion_text(c) for c in completions])
        self.ctx.log(self.__name__, trainer_state.global_step if trainer_state is not None else None, rows)
        return values


def parse_reward_specs(specs: list[str]) -> dict[str, float]:
    """``["retry=1", "nover=0.5"]`` → ``{"retry": 1.0, "nover": 0.5}``; a bare name weighs 1."""
    out: dict[str, float] = {}
    for spec in specs:
        name, _, weight = spec.partition("=")
        name = name.strip()
        reward_class(name)  # an unknown or unloadable reward fails here, naming it
        if name in out:
            raise ValueError(f"reward {name!r} is given twice")
        try:
            out[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"reward weight in {spec!r} is not a number") from None
    if not out:
        raise ValueError("at least one reward is needed")
    return out


def build_rewards(weights: dict[str, float], ctx: RewardContext) -> tuple[list, list[float]]:
    """The reward callables and their weights, in a fixed order, for ``GRPOTrainer``: a class (or
    factory) is built from the context, a TRL reward function is wrapped (``TRLReward``)."""
    names = list(weights)
    return [bind(reward_class(n), ctx) for n in names], [weights[n] for n in names]


def is_trl_function(found: Any) -> bool:
    """Whether ``found`` is a reward function as TRL writes them, ``f(prompts, completions, **kwargs)``,
    rather than a class or factory taking a ``RewardContext``."""
    if inspect.isclass(found):
        return False
    try:
        params = inspect.signature(found).parameters
    except (TypeError, ValueError):
        return False
    return "completions" in params or "prompts" in params


def bind(found: Any, ctx: RewardContext) -> Any:
    """The callable TRL calls: ``found(ctx)`` for a class or factory, a ``TRLReward`` for a function."""
    return TRLReward(found, ctx) if is_trl_function(found) else found(ctx)


class TRLReward:
    """A reward function written for TRL's ``GRPOTrainer`` (``f(prompts, completions, **kwargs)``):
    called as TRL calls it, with the dataset's columns (``query``, ``attempt``, ``domain``), TRL's
    own keywords (``completion_ids``, ``trainer_state``, ...) and the ``RewardContext``'s fields
    (``task``, ``tokenizer``, ``model``: the policy being trained, ...) as keyword arguments; a
    function without ``**kwargs`` gets only the ones it names. What it returns is checked (one
    number per completion), and each value is a line of the run's rollouts log."""

    def __init__(self, func: Any, ctx: RewardContext):
        self.func, self.ctx = func, ctx
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        given = {f.name: getattr(self.ctx, f.name) for f in fields(self.ctx)} | kwargs
        values = call_as_trl(self.func, prompts, completions, **given)
        values = checked_values(self.__name__, values, len(completions))
        state = kwargs.get("trainer_state")
        queries = kwargs.get("query") or [None] * len(values)
        self.ctx.log(self.__name__, getattr(state, "global_step", None),
                     [{"id": json.loads(q).get("id") if isinstance(q, str) else None, "value": v,
                       "reflection": completion_text(c)} for q, v, c in zip(queries, values, completions)])
        return values


def call_as_trl(func: Any, prompts: list, completions: list, **kwargs: Any) -> Any:
    """``func(prompts=..., completions=..., **kwargs)`` as TRL calls a reward function: a function
    without ``**kwargs`` gets only the keywords it names, and an async one is awaited."""
    params = inspect.signature(func).parameters
    given = {**kwargs, "prompts": prompts, "completions": completions}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        given = {k: v for k, v in given.items() if k in params}
    values = func(**given)
    if inspect.iscoroutine(values):  # TRL takes async reward functions too
        values = asyncio.run(values)
    return values


def checked_values(name: str, values: Any, n: int) -> list[float | None]:
    """A reward function's values, or a ``ValueError`` naming it: a list of one number per
    completion. A None entry is TRL's "no reward for this one" (the rollout is left out of its
    group); None for every completion is a function that scored nothing."""
    if values is None or isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise ValueError(f"reward function {name} returned {type(values).__name__}, not a list of floats "
                         f"(one per completion)")
    values = list(values.tolist() if hasattr(values, "tolist") else values)
    if len(values) != n:
        raise ValueError(f"reward function {name} returned {len(values)} values for {n} completions: "
                         "it must return one per completion")
    bad = [v for v in values if v is not None and not isinstance(v, numbers.Real)]
    if bad:
        raise ValueError(f"reward function {name} returned {bad[0]!r} ({type(bad[0]).__name__}) "
                         "among its values: each must be a float (or None: no reward for that completion)")
    if values and all(v is None for v in values):
        raise ValueError(f"reward function {name} returned None for all {n} completions: it scored nothing "
                         "(None is TRL's 'no reward for this completion'; return a float for each)")
    return [None if v is None else float(v) for v in values]


def reward_class(name: str) -> type:
    """A reward by name: built in, registered in ``REWARDS``, your own ``pkg.module:NAME`` or
    ``path/to/file.py:NAME`` (a class taking a ``RewardContext``, or a reward function as TRL
    writes them, ``f(prompts, completions, **kwargs)``), or a plug-in installed under the
    entry-point group ``selfadapt.rewards``."""
    from ..plugins import REWARDS_GROUP, entry_point, installed, is_reference, load_object

    known = registry()
    if name in known:
        return known[name]
    found = load_object(name) if is_reference(name) else entry_point(REWARDS_GROUP, name)
    if found is None:
        raise ValueError(f"unknown reward {name!r}; choose from {', '.join([*known, *installed(REWARDS_GROUP)])}, "
                         "or your own pkg.module:NAME / file.py:NAME")
    if not callable(found):
        raise ValueError(f"{name}: a reward is a function f(prompts, completions, **kwargs) -> list[float] "
                         "as TRL calls it, or a class taking a RewardContext whose instances are called so")
    return found


REWARDS: dict[str, Any] = {}  # user-registered rewards: name → class taking a RewardContext, or a TRL function


def registry() -> dict[str, type]:
    """The built-in rewards and the registered ones (imported here: they import the rrr tasks)."""
    from .length import LaserDReward, LaserReward
    from .likelihood import NoverReward
    from .verifier import RetryReward

    return {"retry": RetryReward, "nover": NoverReward, "laser": LaserReward, "laser-d": LaserDReward} | REWARDS
