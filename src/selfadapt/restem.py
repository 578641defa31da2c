"""ReST-EM, SEAL's outer loop: sample self-edits, keep the ones that helped, SFT the policy on them.

Round r (``_round``):
1. sample C items from the training pool (seeded by round, so a resumed run sees the same);
2. the current policy writes k self-edits per item;
3. each self-edit is evaluated with s inner-loop seeds on the student; its reward is the
   adapted score minus a baseline on that item, averaged over seeds: the student's unadapted
   score (SEAL), or its score after training on the item alone with the same seed (``passage``);
4. winners are kept by a rule (best-of-k with positive gain, or any positive gain);
5. the *base* model is fine-tuned on this round's (self-edit prompt → winning self-edit)
   pairs with TRL's SFT trainer and LoRA, the adapter merged in fp32, and the result is
   the next round's policy. Restarting from the base each round is ReST-EM as Singh et
   al. (2023) run it: a round's policy is never trained on its own ancestors' data twice,
   so a degenerate shape one round rewarded (empty questions) does not accumulate.
   ``restart=False`` continues from the previous round's policy instead.

Without a separate student, the policy is also the model adapted in the inner loop, as
in SEAL; with one (``student=...``), a fixed student is adapted and only the teacher
policy learns.

One self-edit from its prompt to its reward, in the order to read them:
1. ``knowledge/domain.py``: ``KnowledgeDomain.selfedit_prompt`` asks for the self-edit; the same
   class turns it into training data (``training_data``) and scores a model (``evaluate``);
2. ``policy.py``: ``write_selfedits`` samples k self-edits per prompt, which ``write_into_run``
   records once per run (``selfedits_and_workers`` does both, then hands over the workers);
3. ``evaluate.py``: ``run_conditions`` makes one job per (item, self-edit, seed), with the item's
   unadapted score, and records its outcome, read back as a ``Result`` (``as_results``);
4. ``inner_loop.py``: ``evaluate_selfedit``, the job: a LoRA update on the training data, then
   the domain's score of the adapted model (``InnerLoopResult.score``, the name it keeps in the
   run's records and in ``Result``);
5. ``restem.py``: ``self_edit_rewards`` (the adapted score minus the baseline, over seeds), then
   ``select_winners`` and ``sft_policy``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from . import settings as S
from .domain import Domain
from .evaluate import BASE, Condition, Result, as_results, run_conditions
from .generation import SamplingConfig, batch_size_for
from .lora import LoRAConfig, adapter_base, merge_adapter, name_base_model
from .models import EMBEDDED, load_model, local_spec, one_device, pick_device, save_checkpoint, split_spec, strip_bos
from .plots import plot_training_rounds
from .policy import Writing, Written, selfedits_and_workers
from .rewards import token_lengths
from .rewards.length import AdaptiveTarget, laser
from .runs import Run, read_json
from .settings import setting
from .vllm_backend import check_backend
from .workers import Parallel

log = logging.getLogger(__name__)

SELFEDIT = "selfedit"


def best_of_k(rewards: list[float]) -> list[int]:
    """The single best self-edit, if it helped at all (SEAL's default)."""
    best = max(range(len(rewards)), key=rewards.__getitem__)
    return [best] if rewards[best] > 0 else []


def any_positive(rewards: list[float]) -> list[int]:
    """Every self-edit that helped."""
    return [j for j, r in enumerate(rewards) if r > 0]


WINNER_RULES: dict[str, Callable[[list[float]], list[int]]] = {"best": best_of_k, "positive": any_positive}


PASSAGE = "passage"
PASSAGE_FORM = "passage+form"  # the item alone, in a domain whose every update adds form examples
# what the reward subtracts → its name in reports; all but "base" are the condition trained on the item alone
REWARD_BASELINES = {"base": "base", PASSAGE: "passage-only", PASSAGE_FORM: "passage+form"}


def base_probes(results: list[Result]) -> dict[str, float]:
    """item → the unadapted model's probe score (see ``knowledge/probe.py``), where there is one."""
    return {r.item: r.probe for r in results if r.condition == BASE and r.probe is not None}


def probe_drop(result: Result, base: dict[str, float]) -> float | None:
    """How much an update lowered the probe score from the unadapted model's (``base_probes``);
    None without a probe."""
    return None if result.probe is None or result.item not in base else base[result.item] - result.probe


def self_edit_rewards(results: list[Result] | list[dict[str, Any]], baseline: str = "base",
                      forgetting_penalty: float = 0.0, laser_bonus: float | None = None,
                      length: Callable[[str], int] = lambda text: len(text.split()),
                      laser_target: int | None = None, grid: tuple[int, ...] = (32, 64, 128, 256)
                      ) -> dict[str, dict[int, float]]:
    """item → self-edit index → reward, the mean over seeds of the adapted score minus a baseline.
    ``results``: the round's evaluations (a run's records are read as ``Result``s).

    ``base``: the unadapted score (SEAL). ``passage``: the score after training on the
    item alone with the same seed, so only self-edits that add to plain training count.
    ``passage+form``: the same, named for a form-equalized domain (``train knowledge``'s default:
    every update, the self-edit's and the item-alone one, adds the same form examples), so the
    reward is EM(self-edit+form) − EM(passage+form).
    ``forgetting_penalty`` λ subtracts λ × the probe's drop, so a self-edit that teaches
    its passage by erasing other knowledge earns less. ``laser_bonus`` adds LASER's step
    bonus (``rewards/length.py``) to a self-edit that helped and is at most ``laser_target``
    long (by ``length``), or, without a target, LASER-D's target of its item's difficulty
    bucket (the share of the item's k self-edits that helped), chosen on ``grid``.
    """
    if baseline not in REWARD_BASELINES:
        raise ValueError(f"unknown reward baseline {baseline!r}; choose from {', '.join(REWARD_BASELINES)}")
    results = as_results(results)
    alone = {(r.item, r.seed): r.score for r in results if r.condition == baseline and r.score is not None}
    base_probe = base_probes(results)
    gains: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.condition != SELFEDIT or r.gain is None:
            continue
        if baseline == "base":
            gain = r.gain
        else:  # the passage-only run with the same LoRA seed is the reference
            gain = r.score - alone[(r.item, r.seed)]
        if forgetting_penalty:
            drop = probe_drop(r, base_probe)
            if drop is None:
                raise ValueError(f"{r.key}: a forgetting penalty needs the probe score (knowledge --probe)")
            gain -= forgetting_penalty * drop
        gains[r.item][r.j].append(gain)
    rewards = {item: {j: float(np.mean(g)) for j, g in by_j.items()} for item, by_j in gains.items()}
    if laser_bonus:
        texts = {(r.item, r.j): r.selfedit for r in results if r.condition == SELFEDIT and r.selfedit is not None}
        sizes = {item: {j: length(texts[item, j]) for j in by_j} for item, by_j in rewards.items()}
        targets = dict.fromkeys(rewards, laser_target)
        if laser_target is None:
            adaptive = AdaptiveTarget(grid)
            names = adaptive.update([[(sizes[item][j], g > 0) for j, g in by_j.items()]
                                     for item, by_j in rewards.items()])
            targets = {item: adaptive.target(name) for item, name in zip(rewards, names)}
        rewards = {item: {j: g + laser_bonus * laser([sizes[item][j]], [g > 0], targets[item])[0]
                          for j, g in by_j.items()} for item, by_j in rewards.items()}
    return rewards


def select_winners(rewards: dict[str, dict[int, float]], rule: str) -> dict[str, list[int]]:
    if rule not in WINNER_RULES:
        raise ValueError(f"unknown winner rule {rule!r}; choose from {', '.join(WINNER_RULES)}")
    out = {}
    for item, by_j in rewards.items():
        js = sorted(by_j)
        out[item] = [js[i] for i in WINNER_RULES[rule]([by_j[j] for j in js])]
    return out


def sft_examples(domain: Domain, items: list[Any], selfedits: dict[str, list[str]],
                 winners: dict[str, list[int]]) -> list[dict[str, str]]:
    """(self-edit prompt → winning self-edit) pairs in TRL's prompt-completion format."""
    return [{"prompt": domain.selfedit_prompt(it), "completion": selfedits[domain.item_id(it)][j]}
            for it in items for j in winners.get(domain.item_id(it), [])]


@dataclass
class PolicySFTConfig:
    """The policy update: LoRA SFT on the winners, merged into the weights afterwards."""

    lr: float = setting(3e-4, "Policy SFT learning rate.")
    epochs: int = setting(3, "Policy SFT epochs.")
    r: int = setting(16, "Policy SFT LoRA rank (merged after each round).")
    alpha: int = setting(32, "Policy SFT LoRA alpha (the CLI sets twice --sft-r).")
    batch_size: int = setting(2, "Policy SFT batch size.")
    # raised to the longest example: TRL cuts from the right, into the completion
    max_length: int = setting(1024, "Policy SFT sequence length, raised to the longest example.")


def sft_policy(policy: str, examples: list[dict[str, str]], cfg: PolicySFTConfig, out: Path, *,
               seed: int, dtype: str = "auto", device: str = "auto") -> dict[str, Any]:
    """Fine-tune ``policy`` on ``examples`` with TRL's SFTTrainer + LoRA; save the merged model to ``out``.

    The base is loaded once, in the dtype ``dtype`` resolves to (bf16 on a GPU), under fp32 LoRA
    weights. The merged model is saved in fp32, the base weights plus the exact update: added to
    bf16 weights, a small LoRA delta mostly rounds away. Whoever loads it picks its own dtype."""
    import datasets
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()

    if "quantization" in split_spec(str(policy))[1]:
        raise ValueError(f"{policy}: the policy SFT merges its update into full-precision weights; give ReST-EM an "
                         "unquantised model spec (quantization is for inference and the inner loop's LoRA)")
    # on CUDA the base trains under bf16 autocast; elsewhere TRL has no autocast, so "auto" (bf16 on
    # CPUs that run it) keeps it fp32, and only a dtype asked for by name is used as it is
    auto_fp32 = dtype == "auto" and pick_device(device).type != "cuda"
    m = load_model(policy, dtype="float32" if auto_fp32 else dtype, device=device)
    m.tokenizer.padding_side = "right"
    # TRL tokenizes the rendered prompt with special tokens: a template's own BOS would double
    rows = [{**ex, "prompt": strip_bos(m.tokenizer, ex["prompt"])} for ex in examples]
    longest = max(len(m.tokenizer(r["prompt"] + r["completion"] + (m.tokenizer.eos_token or ""))["input_ids"])
                  for r in rows)
    max_length = max(cfg.max_length, longest)
    if max_length > cfg.max_length:
        log.info("policy SFT: max_length %d → %d, the longest example (nothing is cut)", cfg.max_length, max_length)
    with tempfile.TemporaryDirectory() as tmp:
        args = one_device(SFTConfig(
            output_dir=tmp, num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
            per_device_train_batch_size=cfg.batch_size, max_length=max_length, seed=seed,
            logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
            use_cpu=m.device.type == "cpu", completion_only_loss=True,
            bf16=m.device.type == "cuda" and torch.cuda.is_bf16_supported(),  # autocast over base and fp32 LoRA
        ))
        peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=m.model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                             processing_class=m.tokenizer, peft_config=peft_cfg)
        trainer.remove_callback(PrinterCallback)  # losses go to the round's metrics instead
        result = trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    save_round_adapter(trainer.model, m.tokenizer, str(policy), m.path, out.with_name("adapter"),
                       {"examples": len(examples), "steps": result.global_step, "losses": losses})
    # merged into fp32 copies of the base weights, on the CPU: the GPU's copy is done with
    m.tokenizer.padding_side = "left"
    save_checkpoint(trainer.model.to("cpu", torch.float32).merge_and_unload(), m.tokenizer, out)
    return {"examples": len(examples), "steps": result.global_step, "losses": losses, "max_length": max_length}


def save_round_adapter(model, tokenizer, spec: str, path: str, out: Path, info: dict[str, Any]) -> None:
    """The round's update as a standard PEFT adapter next to the merged policy: it names its base
    model as a user finds it and has a model card, so ``AutoPeftModelForCausalLM`` (or vLLM's
    ``--lora-modules``) loads it wherever that base model is."""
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    name_base_model(out, spec, path)
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    (out / "selfadapt.json").write_text(json.dumps({"model": split_spec(spec)[0], **info}, indent=2))
    (out / "README.md").write_text(
        f"# selfadapt ReST-EM round adapter\n\nA LoRA adapter (PEFT, safetensors) for `{base}`: the SFT of one "
        f"ReST-EM round of `selfadapt train` on {info['examples']} winning self-edits ({info['steps']} steps, loss "
        f"{info['losses'][0]:.3f} → {info['losses'][-1]:.3f}). `../policy` is the same update merged "
        "into the weights.\n\n"
        "```python\nfrom peft import AutoPeftModelForCausalLM\n"
        "model = AutoPeftModelForCausalLM.from_pretrained(\"<this "
        "directory>\")\n```\n" if info["losses"] else "# selfadapt ReST-EM round adapter\n")


@dataclass
class ReSTEMConfig:
    """ReST-EM's outer loop, for any domain (``knowledge/train.py``, ``arc/experiment.py``)."""

    model: str = setting(EMBEDDED, "The initial policy: " + S.MODEL)
    student: str | None = setting(None, "A fixed student to adapt (teacher–student split); default: the policy "
                                  "adapts itself (SEAL).")
    rounds: int = setting(2, "ReST-EM rounds.")
    items_per_round: int = setting(8, "Training items (passages, tasks) sampled per round (C).")
    k: int = setting(5, "Self-edits per item.")
    seeds: int = setting(1, "Inner-loop seeds per self-edit (s); the reward is their mean.")
    keep: str = setting("best", "Winner rule: 'best' (best-of-k with positive gain) or 'positive' (every "
                        "self-edit that helped).")
    reward_baseline: str = setting("base", "Reward = adapted score minus this: 'base' (unadapted, as in SEAL), "
                                   "'passage' (trained on the passage alone, same seed) or 'passage+form' (the "
                                   "passage with the form examples, same seed). train knowledge's default form "
                                   "equalization always uses passage+form; the others need --no-form-equalized.")
    forgetting_penalty: float = setting(0.0, "λ: reward −= λ × the drop of a fixed probe set (other passages' "
                                        "questions, reading comprehension); implies --probe.")
    laser: float | None = setting(None, "LASER bonus λ: reward += λ for a self-edit that helped and is at most "
                                  "the target length (tokens).")
    laser_target: int | None = setting(None, "LASER's fixed target length; default: LASER-D's adaptive target "
                                       "per difficulty bucket (share of an item's self-edits that helped).")
    temperature: float = setting(1.0, S.TEMPERATURE)
    top_p: float = setting(0.95, S.TOP_P)
    max_new_tokens: int = setting(256, "Self-edit length cap in tokens.")
    gen_batch_size: int | None = setting(None, S.GEN_BATCH_SIZE)
    lora: LoRAConfig = setting(help="The inner-loop LoRA fine-tune.", factory=LoRAConfig)
    sft: PolicySFTConfig = setting(help="The policy's SFT on a round's winners.", factory=PolicySFTConfig)
    restart: bool = setting(True, "Each round's SFT fine-tunes the base model on that round's winners (ReST-EM); "
                            "--continue-policy fine-tunes the previous round's policy.")
    seed: int = setting(0, S.SEED)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    backend: str = setting("hf", S.BACKEND)
    runs_dir: str = setting("runs", S.RUNS_DIR)
    domain: dict[str, Any] = setting(help="The domain's own settings, recorded.", factory=dict)

    def __post_init__(self) -> None:
        self.gen_batch_size = batch_size_for(self.gen_batch_size, self.device)
        if self.reward_baseline not in REWARD_BASELINES:
            raise ValueError(f"unknown reward baseline {self.reward_baseline!r}; "
                             f"choose from {', '.join(REWARD_BASELINES)}")
        if self.keep not in WINNER_RULES:
            raise ValueError(f"unknown winner rule {self.keep!r}; choose from {', '.join(WINNER_RULES)}")
        if self.forgetting_penalty < 0:
            raise ValueError(f"forgetting_penalty must be >= 0, got {self.forgetting_penalty}")
        if (self.laser is not None and self.laser < 0) or (self.laser_target is not None and self.laser_target < 1):
            raise ValueError("laser must be >= 0 and laser_target >= 1")
        if self.laser_target is not None and not self.laser:
            raise ValueError("laser_target needs a LASER bonus (laser > 0)")
        if min(self.rounds, self.items_per_round, self.k, self.seeds) < 1:
            raise ValueError("rounds, items per round, k and seeds must all be >= 1")
        check_backend(self.backend)

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.max_new_tokens, self.temperature, self.top_p, self.gen_batch_size)


def policy_of_round(run_path: Path, r: int, start: str) -> str:
    """The policy a finished round produced: its own or an earlier round's checkpoint (where the
    run directory is now, so a moved run still works), or, when no round had a winner, ``start``:
    the model the command was given. Nothing else: a run directory may come from someone else, and
    its files must not choose which model is loaded."""
    done = Path(run_path) / f"round-{r}" / "policy.json"
    if not done.is_file():
        raise FileNotFoundError(f"{run_path} has no finished round {r} (no {done.name})")
    saved = read_json(done).get("policy")
    if saved == start:
        return saved
    parts = Path(saved).parts[-2:] if isinstance(saved, str) else ()
    own = re.fullmatch(r"round-(\d+)", parts[0]) if len(parts) == 2 and parts[1] == "policy" else None
    if not own or int(own[1]) > r:
        raise ValueError(f"{done}: names the policy {saved!r}, which is neither a round of this run nor the "
                         f"model given (--model {start})")
    return str(Path(run_path) / parts[0] / "policy")


def sft_start(cfg: "ReSTEMConfig", policy: str) -> str:
    """The model a round's SFT fine-tunes: the base (ReST-EM's restart) or the round's policy."""
    return cfg.model if cfg.restart else policy


def _restore_round(run: Run, r: int, previous: str, cfg: "ReSTEMConfig") -> str:
    """A finished round's policy. Checkpoints are large and not kept with a run's records; if
    one is gone, its round adapter is merged into the model it was trained from again, or, without
    one, it is trained again from the round's ``sft_data.json`` with the same seed."""
    policy = policy_of_round(run.path, r, cfg.model)
    rdir = run.path / f"round-{r}"
    if policy == str(rdir / "policy") and not (rdir / "policy").is_dir():
        if (rdir / "adapter" / "adapter_model.safetensors").is_file():
            log.warning("round %d: checkpoint %s is missing; merging its adapter again", r, policy)
            merge_adapter(sft_start(cfg, previous), rdir / "adapter", rdir / "policy")
        else:
            log.warning("round %d: checkpoint %s is missing; training it again from sft_data.json", r, policy)
            examples = json.loads((rdir / "sft_data.json").read_text())
            sft_policy(sft_start(cfg, previous), examples, cfg.sft, rdir / "policy", seed=cfg.seed + r,
                       dtype=cfg.dtype, device=cfg.device)
    return policy


def run_restem(
    cfg: ReSTEMConfig,
    pool: list[Any],
    make_domain: Callable[[PreTrainedTokenizerBase], Domain],
    resume: Path | None = None,
    name: str = "train",
    parallel: Parallel | None = None,
    score_name: str = "score",
) -> Run:
    """Run (or resume) ReST-EM rounds; every round leaves ``round-N/policy.json`` when finished.
    ``parallel`` spreads each round's inner loops over Ray workers, which load that round's policy.
    ``score_name``: what the domain's score measures, as trackers name it."""
    if not isinstance(cfg.model, str):
        raise ValueError("ReST-EM reloads its policy every round (for the SFT and the inner loops): give it a model "
                         "spec, e.g. a directory saved with save_pretrained, not a model object")
    if cfg.items_per_round > len(pool):
        raise ValueError(f"items_per_round={cfg.items_per_round} but the pool has only {len(pool)} items")
    if cfg.reward_baseline == PASSAGE_FORM and not cfg.domain.get("form"):
        raise ValueError("the passage+form reward baseline needs a form-equalized domain (train knowledge, "
                         "without --no-form-equalized)")
    if resume and (done := [r for r in range(cfg.rounds, Run.saved_config(resume).get("rounds", 0))
                            if (Path(resume) / f"round-{r}" / "policy.json").is_file()]):
        raise ValueError(f"{resume} has finished {done[-1] + 1} rounds: resume it with --rounds {done[-1] + 1} "
                         "or more")
    # Round r's items and seeds depend on r alone: a resume may ask for more rounds, or stop before unfinished ones.
    run = Run.resume(resume, cfg, update=("rounds",)) if resume else Run.create(Path(cfg.runs_dir), name, cfg)
    run.names_score(score_name)
    policy = cfg.model
    for r in range(cfg.rounds):
        rdir = run.path / f"round-{r}"
        if (rdir / "policy.json").is_file():
            policy = _restore_round(run, r, policy, cfg)
            log.info("round %d already finished (policy %s)", r, policy)
            continue
        rdir.mkdir(exist_ok=True)
        policy = _round(run, rdir, r, policy, cfg, pool, make_domain, parallel)
    summarize_rounds(run, cfg.rounds)
    return run


def summarize_rounds(run: Run, rounds: int) -> str:
    """``summary.md``, ``metrics.json`` and the per-round plots of a training run."""
    metrics = [json.loads((run.path / f"round-{r}" / "metrics.json").read_text()) for r in range(rounds)]
    baseline = REWARD_BASELINES.get(run.config.get("reward_baseline"), "base")
    head = (f"| round | mean reward (vs {baseline}) | positive | winners | base score | adapted score | probe drop | "
            "invalid | self-edit words | writing s | inner-loop s (all workers) | SFT s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for m in metrics:
        sec = m["seconds"]
        lines.append(f"| {m['round']} | {m['mean_reward']:+.3f} | {m['positive_fraction']:.0%} | {m['winners']} | "
                     f"{m['mean_base_score']:.3f} | {m['mean_adapted_score']:.3f} | "
                     f"{'–' if m.get('mean_probe_drop') is None else format(m['mean_probe_drop'], '+.3f')} | "
                     f"{m['invalid']} | "
                     f"{m['mean_selfedit_words']:.0f} | {sec['generate']:.0f} | {sec['inner_loops']:.0f} | "
                     f"{sec['sft']:.0f} |")
    text = "\n".join(lines) + "\n"
    (run.path / "summary.md").write_text(text)
    run.write_json("metrics.json", {"rounds": [{k: v for k, v in m.items() if k not in ("rewards", "selfedit_words")}
                                               for m in metrics]})
    plot_training_rounds(metrics, run.path, baseline)
    return text


def _write_and_evaluate(run: Run, r: int, policy: str, cfg: ReSTEMConfig, items: list[Any],
                        make_domain: Callable[[PreTrainedTokenizerBase], Domain], parallel: Parallel | None
                        ) -> tuple[Written, list[Result], PreTrainedTokenizerBase]:
    """The round's self-edits, their evaluations (with the passage-only ones the reward may
    subtract) and the policy's tokenizer. The models live only in this call, so none is alive
    when the policy SFT loads its own copy (at 7B two copies do not fit one GPU)."""
    prefix, tags, seed = f"round{r}/", {"round": r, "policy": policy}, cfg.seed * 1_000_003 + r
    writing = Writing(prefix, make_domain, items, cfg.k, cfg.sampling, seed, tags)
    with selfedits_and_workers(run, policy, [writing], cfg.lora, student=cfg.student, parallel=parallel,
                               backend=cfg.backend, dtype=cfg.dtype, device=cfg.device) as prepared:
        (written,) = prepared.written
        conditions = [Condition(cfg.reward_baseline)] if cfg.reward_baseline != BASE else []
        conditions.append(Condition(SELFEDIT, written.selfedits, written.seconds))
        records = run_conditions(run, prepared.workers, make_domain(prepared.student_tokenizer), items, conditions,
                                 seed=cfg.seed, seeds=cfg.seeds, prefix=prefix, tags=tags)
    return written, as_results(rec for rec in records if rec.get("round") == r), prepared.tokenizer


def _round(run: Run, rdir: Path, r: int, policy: str, cfg: ReSTEMConfig, pool: list[Any],
           make_domain: Callable[[PreTrainedTokenizerBase], Domain], parallel: Parallel | None) -> str:
    """Write self-edits → reward them → select the winners → SFT the policy on them; returns the next policy."""
    log.info("round %d: policy %s", r, policy)
    items = random.Random(cfg.seed * 1_000_003 + r).sample(pool, cfg.items_per_round)
    written, results, tokenizer = _write_and_evaluate(run, r, policy, cfg, items, make_domain, parallel)
    rewards = self_edit_rewards(results, cfg.reward_baseline, cfg.forgetting_penalty, cfg.laser,
                                lambda text: token_lengths(tokenizer, [text])[0], cfg.laser_target,
                                tuple(range(32, cfg.max_new_tokens + 1, 32)) or (cfg.max_new_tokens,))
    winners = select_winners(rewards, cfg.keep)
    examples = sft_examples(written.domain, items, written.selfedits, winners)
    (rdir / "sft_data.json").write_text(json.dumps(examples, indent=1, ensure_ascii=False))

    sft, t0 = {}, time.perf_counter()
    if examples:
        sft = sft_policy(sft_start(cfg, policy), examples, cfg.sft, rdir / "policy", seed=cfg.seed + r,
                         dtype=cfg.dtype, device=cfg.device)
        new_policy = str(rdir / "policy")
    else:
        penalty = f" − {cfg.forgetting_penalty:g} × probe drop" if cfg.forgetting_penalty else ""
        log.warning("round %d: no self-edit earned a positive reward (adapted − %s score%s); the policy is unchanged",
                    r, REWARD_BASELINES[cfg.reward_baseline], penalty)
        new_policy = policy
    metrics = round_metrics(r, policy, new_policy, items, written, results, rewards, winners, sft,
                            time.perf_counter() - t0)
    run.write_json(f"round-{r}/metrics.json", metrics)
    (rdir / "policy.json").write_text(json.dumps({"policy": new_policy, "winners": metrics["winners"]}))
    return new_policy


def round_metrics(r: int, policy: str, new_policy: str, items: list[Any], written: Written, results: list[Result],
                  rewards: dict[str, dict[int, float]], winners: dict[str, list[int]], sft: dict[str, Any],
                  sft_seconds: float) -> dict[str, Any]:
    """A round's ``metrics.json``: its rewards, scores, self-edit lengths and where the time went."""
    evals = [x for x in results if x.condition == SELFEDIT]
    base_probe = base_probes(results)
    drops = [d for d in (probe_drop(x, base_probe) for x in evals) if d is not None]
    all_rewards = [g for by_j in rewards.values() for g in by_j.values()]
    lengths = [len(e.split()) for it in items for e in written.selfedits[written.domain.item_id(it)]]
    return {
        "round": r, "policy": policy, "next_policy": new_policy, "items": len(items),
        "selfedits": len(all_rewards), "evaluations": len(evals),
        "mean_reward": float(np.mean(all_rewards)) if all_rewards else None,
        "positive_fraction": float(np.mean([g > 0 for g in all_rewards])) if all_rewards else None,
        "mean_base_score": float(np.mean([x.base for x in evals if x.base is not None] or [0])),
        "mean_adapted_score": float(np.mean([x.score for x in evals if x.score is not None] or [0])),
        "invalid": sum(x.status == "invalid_selfedit" for x in evals),
        "winners": sum(map(len, winners.values())), "mean_selfedit_words": float(np.mean(lengths)),
        "rewards": all_rewards, "selfedit_words": lengths, "sft": sft,
        "mean_probe_drop": float(np.mean(drops)) if drops else None,
        # Writing and inner-loop seconds come from the records, so a resumed round counts the work
        # of every session (inner loops summed over workers); the SFT is always run whole.
        "seconds": {"generate": sum(written.seconds.values()), "sft": sft_seconds,
                    "inner_loops": sum(v for x in results for k, v in x.seconds.items() if k != "generate")},
    }


def policy_name(spec: str) -> str:
    """The condition a policy spec is reported under: ``NAME`` of ``NAME=SPEC``, ``round-N`` of a
    ``RUN/round-N`` directory, else ``policy-`` and the spec's last part."""
    name, eq, rest = spec.partition("=")
    if eq and name and rest and "/" not in name:
        return name
    path = Path(split_spec(spec)[0])  # an adapter's ``:base=PATH`` is no part of its name
    return path.name if (path / "policy.json").is_file() else f"policy-{path.name}"


def resolve_policy(spec: str, start: str) -> tuple[str, str]:
    """(condition name, model spec) for a ``RUN/round-N`` directory or any model spec; ``NAME=SPEC``
    names the condition (two runs' ``round-0`` would otherwise share a name, hence their records).
    ``start``: the model the command was given, the only one a run's files may name besides its own
    rounds (``policy_of_round``)."""
    name, eq, rest = spec.partition("=")
    if eq and name and rest and "/" not in name:
        return name, resolve_policy(rest, start)[1]
    path = Path(spec)
    if not (path / "policy.json").is_file():
        return policy_name(spec), spec
    policy = policy_of_round(path.parent, int(path.name.rsplit("-", 1)[-1]), start)
    if policy == str(path / "policy") and not Path(policy).is_dir() and (path / "adapter").is_dir():
        # a fresh clone: the checkpoint is git-ignored, the adapter committed
        if (base := adapter_base(path / "adapter")) != split_spec(start)[0]:
            raise ValueError(f"{path}: its checkpoint is missing and its adapter was trained on "
                             f"{base!r}, not on the model given (--model {start})")
        # the adapter loads as a model merged into its base; a local one is named, as the user gave it
        return path.name, str(path / "adapter") + (f":base={base}" if local_spec(base) else "")
    return path.name, policy


def resolve_policies(specs: list[str], start: str,
                     tested: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``resolve_policy`` for each; refuses two policies under one condition name, whose records
    would be one policy's. ``tested``: the specs a resumed run has evaluated; a new spec under one
    of their names is refused (before any work), not shown with the earlier policy's records."""
    out = [resolve_policy(s, start) for s in specs]
    seen = {policy_name(s): s for s in tested}
    for (n, _), spec in zip(out, specs):
        if spec in tested:
            continue
        if n in seen and seen[n] in tested:
            other = spec.partition("=")[2] if spec.partition("=")[0] == n else spec
            raise ValueError(f"this run evaluated {n!r} as {seen[n]!r}; {spec!r} would be reported with those "
                             f"records. To evaluate it as well, give it another name (--policy {n}-new={other}); "
                             "a policy the run evaluated stays in its table without --policy, even if moved")
        if n in seen:
            raise ValueError(f"two policies would be named {n!r}; name them with NAME=SPEC "
                             f"(e.g. --policy penalty-{n}=RUN/{n})")
        seen[n] = spec
    return out
