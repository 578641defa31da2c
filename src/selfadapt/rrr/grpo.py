"""Multi-step GRPO that rewards only the self-reflection (TRL's GRPOTrainer).

How the reward reaches only the reflection tokens:
- the GRPO *prompt* is the failed episode: task, failed first attempt, reflection request
  (``reflect_messages``). TRL never puts loss on prompt tokens;
- the GRPO *completion* is the reflection alone (``max_completion_length`` caps it);
- the retry is generated inside the reward function, with the reflection in context
  (``retry_messages``), and verified. It never enters the trainer's batch, so its tokens
  have no log-probability term and carry zero advantage;
- the rewards (``selfadapt.rewards``, composed with ``--reward NAME=WEIGHT``; by default
  ``retry``: 1 if the retry is correct, else 0) are summed with their weights, and TRL turns
  the G totals of one failed query into group-relative advantages that weight every
  reflection token equally. With ``disco`` the totals are first scaled per group by
  DISCO's domain and difficulty weights (``rewards/disco.py``).
``tests/test_rrr.py`` checks this on the trainer's own batch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import nanstd

from .. import tracking
from ..generation import SamplingConfig, decoding_settings
from ..judge import make_judge
from ..models import one_device
from ..prior import check_prior
from ..rewards import RewardContext, build_rewards, registry, reward_class
from ..rewards.disco import DOMAIN_WEIGHTS, disco_scales, domain_weights
from ..settings import setting
from ..vllm_backend import VLLMSampler, available, check_backend, cpu_defaults, in_place_weight_sync
from .reflect import reflect_messages
from .tasks import Task

log = logging.getLogger(__name__)


@dataclass
class RRRGRPOConfig:
    """The GRPO knobs of the paper's setup; LoRA is optional (``lora_r=0`` trains every weight)."""

    num_generations: int = setting(4, "G: reflections sampled per failed query.")
    queries_per_step: int = setting(2, "Failed queries per step.")
    max_steps: int = setting(10, "GRPO optimisation steps.")
    learning_rate: float = setting(1e-4, "Learning rate.")
    lr_scheduler: str = setting("constant", "transformers scheduler name (constant, linear, cosine…).")
    warmup_steps: int = setting(0, "Learning-rate warmup steps.")
    beta: float = setting(0.04, "KL coefficient towards the initial model (0: no reference).")
    # TRL's loss normalisation; set here because TRL's default has changed across releases
    # ("dapo" in the TRL this is tested with: token-level over the batch, as DAPO)
    loss_type: str = setting("dapo", "TRL's GRPO loss normalisation.")
    temperature: float = setting(1.0, "Reflection sampling temperature.")
    top_p: float = setting(1.0, "Reflection nucleus sampling (top-p).")
    reflection_tokens: int = setting(96, "Reflection length cap (the trained completion).")
    retry_tokens: int = setting(192, "Retry length cap (generated inside the reward).")
    retry_temperature: float = setting(0.0, "Retry sampling temperature (0: greedy). Under a task's constrain=1 a "
                                       "greedy retry tends to repeat the failed attempt; sampling makes the reward "
                                       "an estimate of P(correct | reflection).")
    lora_r: int = setting(16, "LoRA rank; 0 trains every weight.")
    lora_alpha: int = setting(32, "LoRA alpha (the CLI sets twice --lora-r).")
    save_steps: int = setting(5, "Checkpoint every this many steps (for --resume).")
    # TRL turns it on by default; small models train faster without
    gradient_checkpointing: bool = setting(False, "Gradient checkpointing (saves memory, costs time).")
    rewards: dict[str, float] = setting(help="A reward and its weight, NAME=WEIGHT; repeat to compose: retry (the "
                                        "retry passes the verifier), nover (the policy's likelihood of a reference "
                                        "answer, ranked in the group), laser (retry correct and reflection within "
                                        "--laser-target tokens), laser-d (the same with a target per difficulty "
                                        "bucket that adapts), or your own pkg.module:NAME or file.py:NAME.",
                                        factory=lambda: {"retry": 1.0})
    prior_prompt: str | None = setting(None, "A prior prompt before every reflection request: reasoning | "
                                       "planning | code | knowledge | null-example.")
    laser_target: int | None = setting(None, "The laser reward's target length (default 64 tokens).")
    disco: str | None = setting(None, "DISCO scaling of each group's rewards: domain weight 'log' (log(1+1/share)) "
                                "or 'inverse' (1/share), times 1/(self-consistency+eps).")
    disco_eps: float | None = setting(None, "DISCO's eps (default 0.1).")
    judge_model: str | None = setting(None, "TinyV: a judge for retries the verifier rejects (a model spec, or "
                                      "with --judge-url the endpoint's model name).")
    judge_url: str | None = setting(None, "OpenAI-compatible base URL for --judge-model.")
    backend: str = setting("hf", "What samples reflections and retries: 'hf' (transformers) or 'vllm' (TRL's "
                           "colocated vLLM copy of the policy, synced each step; the extra selfadapt[vllm]).")
    vllm_memory: float = setting(0.3, "With --backend vllm on a GPU: the share of its memory vLLM takes.")
    seed: int = setting(0, "Seed for sampling and initialisation.")

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2: advantages are relative within a group")
        if min(self.queries_per_step, self.max_steps, self.reflection_tokens, self.retry_tokens, self.save_steps) < 1:
            raise ValueError("queries_per_step, max_steps, reflection_tokens, retry_tokens, save_steps must be >= 1")
        if self.lora_r < 0 or self.beta < 0 or self.learning_rate <= 0 or self.retry_temperature < 0:
            raise ValueError("lora_r, beta and retry_temperature must be >= 0 and learning_rate > 0")
        check_prior(self.prior_prompt)
        if self.disco is not None and self.disco not in DOMAIN_WEIGHTS:
            raise ValueError(f"unknown DISCO domain weight {self.disco!r}; choose from {', '.join(DOMAIN_WEIGHTS)}")
        if ((self.laser_target is not None and self.laser_target < 1)
                or (self.disco_eps is not None and self.disco_eps <= 0)):
            raise ValueError("laser_target must be >= 1 and disco_eps > 0")
        if self.judge_url and not self.judge_model:
            raise ValueError("an endpoint judge (judge_url) needs judge_model, the endpoint's model name")
        if not self.rewards:
            raise ValueError(f"no reward; choose from {', '.join(registry())} or your own pkg.module:NAME")
        for name in self.rewards:
            reward_class(name)
        check_backend(self.backend)
        if not 0 < self.vllm_memory < 1:
            raise ValueError(f"vllm_memory must be in (0, 1), got {self.vllm_memory}")


def domain_of(task: Task, failure: dict[str, Any]) -> str:
    """A failure's domain for DISCO: its task spec (one per task of a mixed run)."""
    return failure.get("task", task.name)


def reflection_dataset(task: Task, failures: list[dict[str, Any]], prior: str | None = None):
    """One row per failed query: the conversation that asks for a reflection, the query, its domain."""
    import datasets

    return datasets.Dataset.from_list([
        {"prompt": reflect_messages(task, f["query"], f["attempt"], prior), "attempt": f["attempt"],
         "query": json.dumps(f["query"], ensure_ascii=False), "domain": domain_of(task, f)} for f in failures])


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
    """GRPOTrainer whose completions are reflections; its rewards share a context holding the policy."""

    def __init__(self, *args, reward_context: RewardContext, disco: dict[str, float] | None = None,
                 disco_eps: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if disco is not None and self.accelerator.num_processes > 1:
            raise ValueError("DISCO scaling runs in a single training process")
        self.disco, self.disco_eps = disco, disco_eps  # domain → weight, or None for plain GRPO
        reward_context.model = self.model  # the retry and the likelihoods come from the current policy
        self.reward_context = reward_context
        self.phase_seconds = reward_context.seconds  # one clock: rewards add retry, verify and scoring time
        self.step_times: list[dict[str, float]] = []
        self.add_callback(_StepTimes(self))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # A rollout one reward could not score (None: a failed judge call) is left out whole, as
        # TRL leaves out one no reward scored: nansum would count the missing part as 0, i.e. wrong.
        rewards[torch.isnan(rewards).any(dim=1)] = torch.nan
        self._raw_rewards = rewards
        if self.disco is None:
            return rewards
        totals = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1).tolist()
        scales = disco_scales(totals, [x["domain"] for x in inputs], self.num_generations, self.disco,
                              self.disco_eps)
        self._metrics["train" if self.model.training else "eval"]["disco/scale"].append(mean(scales))
        return rewards * torch.tensor(scales, dtype=rewards.dtype, device=rewards.device).unsqueeze(1)

    def _generate_and_score_completions(self, inputs):
        """TRL logs the rewards it normalises; under DISCO those are scaled, so the logged
        ``rewards/NAME/mean`` and ``reward`` are put back to the rewards themselves (the retries'
        success rate), and the scaled total is logged as ``disco/reward``."""
        out = super()._generate_and_score_completions(inputs)
        if self.disco is not None:
            logged, raw = self._metrics["train" if self.model.training else "eval"], self._raw_rewards
            weights = self.reward_weights.to(raw.device).unsqueeze(0)
            logged["disco/reward"].append(logged["reward"][-1])
            for i, name in enumerate(self.reward_func_names):
                logged[f"rewards/{name}/mean"][-1] = torch.nanmean(raw[:, i]).item()
                logged[f"rewards/{name}/std"][-1] = nanstd(raw[:, i]).item()
            totals = (raw * weights).nansum(dim=1)
            totals[torch.isnan(raw).all(dim=1)] = torch.nan
            logged["reward"][-1] = torch.nanmean(totals).item()
            logged["reward_std"][-1] = nanstd(totals).item()
        return out

    def _generate(self, prompts):
        t0 = time.perf_counter()
        out = super()._generate(prompts)
        self.phase_seconds["reflection_generation"] += time.perf_counter() - t0
        return out


def make_trainer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: Task,
                 failures: list[dict[str, Any]], cfg: RRRGRPOConfig, output_dir: Path,
                 rollouts: Path | None = None, tracker: tracking.Tracker | None = None) -> ReflectionGRPOTrainer:
    """TRL's GRPO trainer for reflections; its logs go to ``tracker`` (the run's, at each GRPO step)."""
    from peft import LoraConfig

    autocast = bf16_autocast(model)
    args = one_device(GRPOConfig(
        output_dir=str(output_dir), max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps, beta=cfg.beta,
        num_generations=cfg.num_generations, per_device_train_batch_size=cfg.num_generations * cfg.queries_per_step,
        gradient_accumulation_steps=1, max_completion_length=cfg.reflection_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, logging_steps=1,
        generation_kwargs=sampling_fields(cfg),
        # a resume reads only the newest checkpoint (TRL deletes an older one once a new one is complete)
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
        report_to=[], use_cpu=model.device.type == "cpu", bf16=autocast,
        model_init_kwargs=reference_settings(model, autocast) if cfg.beta and not cfg.lora_r else None,
        disable_tqdm=False, gradient_checkpointing=cfg.gradient_checkpointing,
        reward_weights=list(cfg.rewards.values()),
        scale_rewards="none" if cfg.disco else "group",  # a group's std would cancel DISCO's per-group scale
        loss_type=cfg.loss_type, num_iterations=1,
        mask_truncated_completions=False,  # a reflection cut at reflection_tokens still earns its retry's reward
        **vllm_settings(cfg, model),
    ))
    peft = (LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
            if cfg.lora_r else None)
    ctx = RewardContext(task, tokenizer, SamplingConfig(max_new_tokens=cfg.retry_tokens,
                                                        temperature=cfg.retry_temperature,
                                                        batch_size=cfg.num_generations * cfg.queries_per_step),
                        log_path=rollouts, prior=cfg.prior_prompt,
                        judge=make_judge(cfg.judge_model, cfg.judge_url, device=model.device.type),
                        laser_target=cfg.laser_target or 64,
                        length_grid=tuple(range(16, cfg.reflection_tokens + 1, 16)) or (cfg.reflection_tokens,))
    funcs, _ = build_rewards(cfg.rewards, ctx)
    disco = domain_weights([domain_of(task, f) for f in failures], cfg.disco) if cfg.disco else None
    trainer = ReflectionGRPOTrainer(model=model, args=args,
                                    train_dataset=reflection_dataset(task, failures, cfg.prior_prompt),
                                    processing_class=tokenizer, peft_config=peft, reward_funcs=funcs,
                                    reward_context=ctx, disco=disco, disco_eps=cfg.disco_eps or 0.1,
                                    callbacks=tracking.trainer_logs(tracker, "grpo", "grpo_step"))
    if cfg.backend == "vllm":  # the retries come from the same vLLM copy, which TRL syncs before each step's rollouts
        ctx.engine = VLLMSampler(trainer.vllm_generation.llm, tokenizer)
        in_place_weight_sync(trainer.vllm_generation)
    return trainer


def bf16_autocast(model: PreTrainedModel) -> bool:
    """Whether an fp32 model trains under bf16 autocast, with its fp32 master weights: on a GPU that runs bf16."""
    return model.dtype == torch.float32 and model.device.type == "cuda" and torch.cuda.is_bf16_supported()


def reference_settings(model: PreTrainedModel, autocast: bool) -> dict[str, Any]:
    """How TRL loads the KL reference of a full fine-tuning (GRPOConfig's ``model_init_kwargs``, which
    it uses for the reference although it warns they are ignored for a model object). The reference
    is frozen, so it needs no fp32 master copy: it is built in the dtype training computes in, and
    on the policy's device rather than sharded over every visible GPU."""
    return {"dtype": torch.bfloat16 if autocast else model.dtype,
            "device_map": getattr(model, "hf_device_map", None) or str(model.device)}


def sampling_fields(cfg: RRRGRPOConfig) -> dict[str, Any]:
    """Every sampling field of the reflections set, in the backend's own names: TRL leaves the
    rest to the checkpoint's generation_config (HF) or to vLLM's defaults."""
    if cfg.backend == "vllm":  # TRL sets temperature, top_p, top_k, min_p and repetition_penalty itself
        return {"presence_penalty": 0.0, "frequency_penalty": 0.0, "skip_special_tokens": True}
    settings = decoding_settings(SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p))
    return {k: v for k, v in settings.items() if v is not None}


def vllm_settings(cfg: RRRGRPOConfig, model: PreTrainedModel) -> dict[str, Any]:
    """GRPOConfig's vLLM fields: TRL's colocate mode (a vLLM copy of the policy in the training
    process, its weights synced from the policy, LoRA merged, before each step's rollouts)."""
    if cfg.backend != "vllm":
        return {}
    why = available()
    if why:
        raise RuntimeError(why)
    if model.device.type == "cpu":
        cpu_defaults()
    return {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": cfg.vllm_memory,
            "vllm_enable_sleep_mode": False}
