"""Multi-step GRPO that rewards only the self-reflection (TRL's GRPOTrainer).

How the reward reaches only the reflection tokens:
- the GRPO *prompt* is the failed episode: task, failed first attempt, reflection request
  (``reflect_messages``). TRL never puts loss on prompt tokens;
- the GRPO *completion* is the reflection alone (``max_completion_length`` caps it);
- the retry is generated inside the reward function, with the reflection in context
  (``retry_messages``), and verified. It never enters the trainer's batch, so its tokens
  have no log-probability term and carry zero advantage;
- reward = 1 if the retry is correct, else 0; TRL turns the G rewards of one failed query
  into group-relative advantages that weight every reflection token equally.
``tests/test_rrr_grpo.py`` checks this on the trainer's own batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from ..generation import SamplingConfig, generate
from ..models import render_chat
from .reflect import reflect_messages, retry_messages
from .tasks import Task

log = logging.getLogger(__name__)


@dataclass
class RRRGRPOConfig:
    """The GRPO knobs of the paper's setup; LoRA is optional (``lora_r=0`` trains every weight)."""

    num_generations: int = 4  # G reflections per failed query
    queries_per_step: int = 2
    max_steps: int = 10
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    beta: float = 0.04  # KL coefficient towards the initial model
    temperature: float = 1.0
    top_p: float = 1.0
    reflection_tokens: int = 96
    retry_tokens: int = 192
    lora_r: int = 16
    lora_alpha: int = 32
    save_steps: int = 5
    gradient_checkpointing: bool = False  # TRL turns it on by default; small models train faster without
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2: advantages are relative within a group")
        if min(self.queries_per_step, self.max_steps, self.reflection_tokens, self.retry_tokens, self.save_steps) < 1:
            raise ValueError("queries_per_step, max_steps, reflection_tokens, retry_tokens, save_steps must be >= 1")
        if self.lora_r < 0 or self.beta < 0 or self.learning_rate <= 0:
            raise ValueError("lora_r and beta must be >= 0 and learning_rate > 0")


def reflection_dataset(task: Task, failures: list[dict[str, Any]]):
    """One row per failed query: the conversation that asks for a reflection, and the query."""
    import datasets

    return datasets.Dataset.from_list([
        {"prompt": reflect_messages(task, f["query"], f["attempt"]), "attempt": f["attempt"],
         "query": json.dumps(f["query"], ensure_ascii=False)} for f in failures])


class RetryReward:
    """1.0 if the retry written after this reflection passes the verifier, else 0.0.

    ``model`` is the policy being trained (set by ``ReflectionGRPOTrainer``), so the retry
    comes from the current policy, as in the paper. Every rollout is appended to ``log_path``.
    """

    __name__ = "retry_success"

    def __init__(self, task: Task, tokenizer: PreTrainedTokenizerBase, sampling: SamplingConfig,
                 log_path: Path | None = None):
        self.task, self.tokenizer, self.sampling, self.log_path = task, tokenizer, sampling, log_path
        self.model: PreTrainedModel | None = None
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, prompts, completions, query, attempt, trainer_state=None, **_) -> list[float]:
        if self.model is None:
            raise RuntimeError("RetryReward.model is not set; use ReflectionGRPOTrainer")
        queries = [json.loads(q) for q in query]
        reflections = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        t0 = time.perf_counter()
        prompts_ = [render_chat(self.tokenizer, retry_messages(self.task, q, a, r))
                    for q, a, r in zip(queries, attempt, reflections)]
        retries = generate(self.model, self.tokenizer, prompts_, self.sampling)
        t1 = time.perf_counter()
        verdicts = [self.task.verify(q, r) for q, r in zip(queries, retries)]
        self.seconds["retry_generation"] += t1 - t0
        self.seconds["verify"] += time.perf_counter() - t1
        if self.log_path:
            step = trainer_state.global_step if trainer_state is not None else None
            with open(self.log_path, "a", encoding="utf-8") as f:
                for q, refl, retry, v in zip(queries, reflections, retries, verdicts):
                    f.write(json.dumps({"step": step, "id": q["id"], "reflection": refl, "retry": retry,
                                        "reward": float(v.correct), "reason": v.reason}, ensure_ascii=False) + "\n")
        return [1.0 if v.correct else 0.0 for v in verdicts]


class _StepTimes(TrainerCallback):
    """Per optimisation step: reflection generation, retry generation, verification, the rest."""

    def __init__(self, trainer: "ReflectionGRPOTrainer"):
        self.trainer, self.start = trainer, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer.phase_seconds.clear()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        total = time.perf_counter() - self.start
        parts = {k: self.trainer.phase_seconds[k] for k in ("reflection_generation", "retry_generation", "verify")}
        self.trainer.step_times.append({"step": state.global_step, **parts,
                                        "optimisation": total - sum(parts.values()), "total": total})


class ReflectionGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose completions are reflections and whose reward retries with them."""

    def __init__(self, *args, retry_reward: RetryReward, **kwargs):
        super().__init__(*args, reward_funcs=[retry_reward], **kwargs)
        self.retry_reward = retry_reward
        retry_reward.model = self.model
        self.phase_seconds = retry_reward.seconds  # one clock: the reward adds retry and verify time
        self.step_times: list[dict[str, float]] = []
        self.add_callback(_StepTimes(self))

    def _generate(self, prompts):
        t0 = time.perf_counter()
        out = super()._generate(prompts)
        self.phase_seconds["reflection_generation"] += time.perf_counter() - t0
        return out


def make_trainer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
                 failures: list[dict[str, Any]], cfg: RRRGRPOConfig, output_dir: Path,
                 rollouts: Path | None = None) -> ReflectionGRPOTrainer:
    from peft import LoraConfig

    args = GRPOConfig(
        output_dir=str(output_dir), max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps, beta=cfg.beta,
        num_generations=cfg.num_generations, per_device_train_batch_size=cfg.num_generations * cfg.queries_per_step,
        gradient_accumulation_steps=1, max_completion_length=cfg.reflection_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_steps, report_to=[], use_cpu=model.device.type == "cpu",
        bf16=False, disable_tqdm=False, gradient_checkpointing=cfg.gradient_checkpointing,
    )
    peft = (LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
            if cfg.lora_r else None)
    reward = RetryReward(task, tokenizer, SamplingConfig(max_new_tokens=cfg.retry_tokens, temperature=0.0,
                                                         batch_size=cfg.num_generations * cfg.queries_per_step),
                         log_path=rollouts)
    return ReflectionGRPOTrainer(model=model, args=args, train_dataset=reflection_dataset(task, failures),
                                 processing_class=tokenizer, peft_config=peft, retry_reward=reward)
