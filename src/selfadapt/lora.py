"""The one place that applies a self-edit: a LoRA fine-tune of a resident base model.

SEAL evaluates thousands of self-edits, each with its own short fine-tune. Re-wrapping
the model, building a ``Trainer`` or saving to disk per self-edit costs more than the
fine-tune itself on a small model, so the base model is wrapped with PEFT once and each
self-edit gets: re-initialised LoRA weights (seeded), a fresh AdamW over LoRA parameters
only, and a plain loop of padded batches. Zeroing ``lora_B`` afterwards makes the model
exactly the base model again.

On a bf16 model PEFT keeps the LoRA weights in fp32 and casts every adapted layer's input
up and its output back: a sixth of a CPU training step was dtype copies. With ``amp`` the
step runs under autocast instead: LoRA matmuls in bf16 like the base, fp32 master weights
and optimizer state (so small updates at lr 1e-4 are not rounded away), and more tokens/s
(RESULTS.md, "A SEAL-style inner loop against ours").
On CPU the steps run eager attention (``cpu_training_attention``).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Union

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.helpers import disable_input_dtype_casting
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .models import EMBEDDED, EMBEDDED_HUB_ID, adapter_location, encode_text, hub_base, load_model, save_checkpoint
from .settings import setting

ADAPTER = "default"


class NonFiniteLossError(RuntimeError):
    """Training diverged (NaN/inf loss); the self-edit gets no reward instead of a crash."""


@dataclass
class LoRAConfig:
    """The inner-loop fine-tune. Defaults follow the SEAL knowledge setting, sized for CPU."""

    r: int = setting(32, "LoRA rank.")
    alpha: int = setting(64, "LoRA alpha.")
    dropout: float = setting(0.0, "LoRA dropout.")
    target_modules: list[str] = setting(
        help="LoRA target modules.",
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    lr: float = setting(1e-3, "Inner-loop learning rate.")
    epochs: int = setting(10, "Inner-loop epochs.")
    batch_size: int = setting(16, "Inner-loop batch: at most this many sequences (and max_batch_tokens padded "
                              "tokens).")
    max_batch_tokens: int = setting(1024, "At most this many tokens in a batch once padded.")
    max_length: int = setting(512, "Longer training sequences are cut to this many tokens.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    max_steps: int | None = setting(None, "Stop after this many optimizer steps, inside an epoch if need be.")
    amp: bool = setting(True, "bf16 models: train LoRA under autocast with fp32 master weights (faster); "
                        "--no-amp computes the adapters in fp32.")

    def __post_init__(self) -> None:
        if self.r < 1 or self.epochs < 0 or self.batch_size < 1 or self.max_length < 2:
            raise ValueError("LoRA r, batch_size >= 1, epochs >= 0 and max_length >= 2 required")
        if self.max_batch_tokens < self.max_length:
            raise ValueError("max_batch_tokens must be >= max_length (a batch must fit one sequence)")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0 (it scales the update), got {self.alpha}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or None), got {self.max_steps}")


def causal_lm_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                   soft: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The causal-LM loss (mean over labelled tokens), projecting onto the vocabulary only at the
    positions where a label follows in some row: a QA example is ~70 prompt tokens and ~5 answer
    tokens, and SmolLM2-135M's 49k-word head is a fifth of its forward compute per position.
    The positions go in as a 1-D ``logits_to_keep`` (what every transformers 5.x causal LM takes);
    a model that does not take it gets the full logits.

    ``labels`` belong on the CPU: the positions are then found without waiting on the GPU, and a CPU
    index is valid for hidden states on any device (under ``device_map="auto"`` they end on the
    last GPU, not on the input's).

    ``soft`` (a batch's soft targets, ``make_batches``): each labelled token's loss is then
    ``distilled_loss``'s, and a batch without them is computed as it always was."""
    targets = labels[:, 1:].cpu()
    keep = (targets != -100).any(dim=0).nonzero().squeeze(1)  # position p predicts token p + 1
    try:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    except TypeError:
        logits = None
    if logits is None or logits.shape[1] != len(keep):
        if soft is None:
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss
        logits, keep = model(input_ids=ids, attention_mask=mask).logits[:, :-1], torch.arange(targets.shape[1])
    if soft is None:
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1),
                                                 targets[:, keep].flatten().to(logits.device))
    return distilled_loss(logits, targets[:, keep], *(t[:, 1:][:, keep] for t in soft))


def distilled_loss(logits: torch.Tensor, targets: torch.Tensor, top_ids: torch.Tensor, top_logprobs: torch.Tensor,
                   weight: torch.Tensor) -> torch.Tensor:
    """The mean over labelled tokens (``targets`` not -100) of ``(1 - weight)`` × cross-entropy plus
    ``weight`` × KL(teacher ∥ model), the teacher's distribution given by its top tokens and their
    renormalised log-probabilities at each position. The model's probabilities are not renormalised
    over the teacher's top tokens: the KL is then least only where the model puts all its mass on them,
    as the teacher did."""
    dev = logits.device
    top_ids, top_logprobs, weight, targets = (t.to(dev) for t in (top_ids, top_logprobs, weight, targets))
    logp = torch.log_softmax(logits.float(), -1)
    labelled = targets != -100
    ce = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # xlogy: a teacher token of probability 0 adds 0, not 0 × -inf
    kl = (torch.special.xlogy(top_logprobs.exp(), top_logprobs.exp()) - top_logprobs.exp() * logp.gather(-1, top_ids)
          ).sum(-1)
    return (ce + weight * (kl - ce))[labelled].mean()


@contextmanager
def cpu_training_attention(model: PreTrainedModel) -> Iterator[None]:
    """Eager attention inside on a CPU model, its own after. torch's flash-attention kernel for CPU is
    slow in backward on short sequences, and eager is faster there; generation stays faster with
    SDPA, so only training switches (RESULTS.md, "A page in under 2 minutes")."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    before = base.config._attn_implementation
    if model.device.type != "cpu" or before != "sdpa":
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)


@dataclass
class TrainStats:
    steps: int
    tokens: int
    seconds: float
    losses: list[float]
    capped: bool = False  # ``max_steps`` cut batches the epochs still had
    epochs: list[int] = field(default_factory=list)  # the epoch of each step (of ``losses``)

    @property
    def final_loss(self) -> float | None:
        """The mean loss of the last epoch's steps: one batch of a few examples says little of the fit (a
        last batch near 0 while taught answers of other batches are still far from fitted)."""
        last = ([x for x, e in zip(self.losses, self.epochs) if e == self.epochs[-1]] if self.epochs
                else self.losses[-1:])
        return sum(last) / len(last) if last else None


@dataclass(frozen=True, eq=False)
class Distilled:
    """A (prompt, completion) example whose completion tokens also carry soft targets: a teacher's
    likeliest next tokens at each of them (``top_ids``) and their log-probabilities renormalised over
    those (``top_logprobs``), both of shape (completion tokens, k). Its loss on a completion token is
    ``(1 - weight)`` × the cross-entropy of the token plus ``weight`` × KL(teacher ∥ model): the gold
    span alone says nothing of which answers the teacher held near it and which far, a distribution
    does (``teaching``: the model that reads the document teaches the one that must answer without it).
    With ``weight`` 0 it trains exactly as the plain pair."""

    prompt: str
    completion: str
    top_ids: torch.Tensor
    top_logprobs: torch.Tensor
    weight: float


# a text (loss on all of it), (prompt, completion): loss on the completion, or such a pair with soft targets
Example = Union[str, tuple[str, str], Distilled]
Encoded = tuple  # (ids, loss start) or (ids, loss start, (top ids, top log-probs, weight) from the loss start on)


def encode(tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int) -> list[Encoded]:
    """(token ids, number of leading tokens without loss) per example, truncated to ``max_length``; a
    ``Distilled`` one with a positive weight has its soft targets third, one row per trained token.

    A (prompt, completion) pair is tokenized part by part, so the loss boundary falls exactly
    where the completion starts; every sequence starts with one BOS where the tokenizer uses
    one (``models.encode_text``), as at test time. Sequences with fewer than 2 tokens, or no trained token
    left after truncation, carry no loss and are dropped.
    """
    out: list[Encoded] = []
    for ex in examples:
        soft = isinstance(ex, Distilled) and ex.weight > 0
        if isinstance(ex, str):
            ids, start = encode_text(tokenizer, ex), 0
        else:
            prompt = encode_text(tokenizer, ex.prompt if isinstance(ex, Distilled) else ex[0])
            answer = tokenizer(ex.completion if isinstance(ex, Distilled) else ex[1],
                               add_special_tokens=False)["input_ids"]
            if soft and len(ex.top_ids) != len(answer):
                raise ValueError(f"{len(ex.top_ids)} soft targets for a completion of {len(answer)} tokens")
            ids, start = prompt + answer, len(prompt)
        ids = ids[:max_length]
        if len(ids) >= 2 and start < len(ids):
            first = max(start, 1)
            rows = slice(first - start, len(ids) - start)  # the soft targets of the tokens left to train
            out.append((ids, first, (ex.top_ids[rows], ex.top_logprobs[rows], ex.weight)) if soft else (ids, first))
    return out


def make_batches(
    encoded: list[Encoded], pad_id: int, batch_size: int, max_tokens: int, rng: random.Random
) -> list[tuple[torch.Tensor, ...]]:
    """Group by length into batches of at most ``batch_size`` sequences and ``max_tokens``
    padded tokens, right-pad each to its longest sequence, shuffle the batch order.
    A batch is (ids, mask, labels), and where a sequence of it has soft targets (``encode``) also
    (top ids, top log-probs, weight) at the labels' positions: weight 0 wherever there are none.

    Length grouping with a token budget matters on CPU, where compute is proportional to
    padded tokens: a passage (~200 tokens) in a batch of one-line implications (~30
    tokens) would make most of the batch padding. Labels are the input ids where the
    attention mask is 1 and -100 elsewhere (and before each sequence's loss start), so
    padding never enters the loss even when the pad token is the EOS token.
    """
    chunks: list[list[Encoded]] = []
    for seq in sorted(encoded, key=lambda e: (len(e[0]), rng.random())):
        # Sorted ascending, so the new sequence is the longest: the padded size is count × its length.
        if chunks and len(chunks[-1]) < batch_size and (len(chunks[-1]) + 1) * len(seq[0]) <= max_tokens:
            chunks[-1].append(seq)
        else:
            chunks.append([seq])
    batches = []
    for chunk in chunks:
        width = len(chunk[-1][0])
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for row, (seq, start, *_) in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            labels[row, start : len(seq)] = ids[row, start : len(seq)]
        soft = [(row, start, len(seq), *targets) for row, (seq, start, *targets) in enumerate(chunk) if targets]
        if soft:
            k = soft[0][3][0].shape[1]
            top_ids = torch.zeros((len(chunk), width, k), dtype=torch.long)
            top_logprobs = torch.zeros((len(chunk), width, k))
            weight = torch.zeros((len(chunk), width))
            for row, start, end, (teacher_ids, teacher_logprobs, w) in soft:
                top_ids[row, start:end], top_logprobs[row, start:end], weight[row, start:end] = (
                    teacher_ids, teacher_logprobs, w)
            batches.append((ids, mask, labels, (top_ids, top_logprobs, weight)))
        else:
            batches.append((ids, mask, labels))
    rng.shuffle(batches)
    return batches


class ResidentLoRA:
    """A base model wrapped with LoRA once, adapted and reset many times."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: LoRAConfig):
        self.cfg = cfg
        self.tokenizer = tokenizer
        peft_cfg = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules="all-linear" if cfg.target_modules == ["all-linear"] else cfg.target_modules,
            task_type="CAUSAL_LM",
        )
        self.model: PeftModel = model if isinstance(model, PeftModel) else get_peft_model(model, peft_cfg)
        self.model.eval()
        self._layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        self.reset()

    @property
    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if "lora_" in n]

    def release(self) -> PreTrainedModel:
        """Take the LoRA layers out of the base model again (they were put into it in place):
        for a model object a user handed in, which must leave as it came."""
        return self.model.unload()

    def reset(self) -> None:
        """Make the model exactly the base model again (LoRA update B·A = 0)."""
        with torch.no_grad():
            for layer in self._layers:
                layer.lora_B[ADAPTER].weight.zero_()

    def train(
        self,
        examples: list[Example],
        *,
        seed: int,
        lr: float | None = None,
        epochs: int | None = None,
        on_step: Callable[[int, float], None] | None = None,
        fresh: bool = True,
    ) -> TrainStats:
        """Fine-tune fresh LoRA weights on ``examples`` (a ``Distilled`` one fits its soft targets too);
        the model stays adapted until ``reset``.

        ``lr``/``epochs`` override the config for this call (an ARC self-edit picks them).
        ``fresh=False`` continues from the current LoRA weights (one adapter, several documents).
        """
        cfg = replace(self.cfg, lr=lr or self.cfg.lr, epochs=self.cfg.epochs if epochs is None else epochs)
        torch.manual_seed(seed)
        for layer in self._layers if fresh else []:
            layer.reset_lora_parameters(ADAPTER, True)
        params = self.lora_parameters
        optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = random.Random(seed)
        encoded = encode(self.tokenizer, examples, cfg.max_length)
        if not encoded:
            raise ValueError("no training sequence of 2+ tokens")
        losses: list[float] = []
        step_epochs: list[int] = []
        tokens = steps = 0
        amp = cfg.amp and self.model.dtype == torch.bfloat16
        dev = self.model.device
        t0 = time.perf_counter()
        self.model.train()
        try:
            batches = ((epoch, batch) for epoch in range(cfg.epochs)  # each reshuffled, up to max_steps in all
                       for batch in make_batches(encoded, self.tokenizer.pad_token_id, cfg.batch_size,
                                                 cfg.max_batch_tokens, rng))
            with cpu_training_attention(self.model):
                for epoch, (ids, mask, labels, *soft) in itertools.islice(batches, cfg.max_steps):
                    with (torch.autocast(dev.type, dtype=torch.bfloat16) if amp else nullcontext(),
                          disable_input_dtype_casting(self.model, amp)):
                        # the labels stay on the CPU, where ``causal_lm_loss`` finds the positions to keep
                        loss = causal_lm_loss(self.model, ids.to(dev), mask.to(dev), labels, *soft)
                    value = loss.item()
                    if not math.isfinite(value):
                        raise NonFiniteLossError(f"loss became {value} at step {steps + 1}")
                    loss.backward()
                    optim.step()
                    optim.zero_grad(set_to_none=True)
                    losses.append(value)
                    step_epochs.append(epoch)
                    steps += 1
                    tokens += int(mask.sum())
                    if on_step:
                        on_step(steps, value)
                capped = steps == cfg.max_steps and next(batches, None) is not None
        except NonFiniteLossError:
            self.reset()
            raise
        finally:
            self.model.eval()
        return TrainStats(steps=steps, tokens=tokens, seconds=time.perf_counter() - t0, losses=losses, capped=capped,
                          epochs=step_epochs)

    def planned_steps(self, examples: list[Example]) -> int:
        """The steps ``train`` takes on ``examples`` with this config: a progress bar's total."""
        encoded = encode(self.tokenizer, examples, self.cfg.max_length)
        per_epoch = len(make_batches(encoded, self.tokenizer.pad_token_id, self.cfg.batch_size,
                                     self.cfg.max_batch_tokens, random.Random(0)))  # a count rng cannot change
        total = per_epoch * self.cfg.epochs
        return min(total, self.cfg.max_steps or total)

    @contextmanager
    def adapted(self, examples: list[Example], *, seed: int, lr: float | None = None,
                epochs: int | None = None) -> Iterator[TrainStats]:
        """``with lora.adapted(examples, seed=s) as stats:`` — adapted inside, base model after."""
        stats = self.train(examples, seed=seed, lr=lr, epochs=epochs)
        try:
            yield stats
        finally:
            self.reset()

    @contextmanager
    def base(self) -> Iterator[None]:
        """Inside, ``self.model`` is the base model with the adapter skipped, not computed as
        B = 0: for sampling self-edits and scoring the unadapted model, where the LoRA matmuls
        would only add zeros. (It yields nothing: a name bound by ``as`` would keep the model
        alive after the block.)"""
        with self.model.disable_adapter():
            yield

    def update(self) -> dict[str, torch.Tensor]:
        """The current LoRA weights (A and B of every layer): one update, to save and replay."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if "lora_" in n}

    @torch.no_grad()
    def merge(self, update: dict[str, torch.Tensor] | None = None) -> None:
        """Add an update (default: the current LoRA weights) into the base weights for good,
        then zero the adapter: later updates start from the merged model (continual learning)."""
        if update is not None:
            params = dict(self.model.named_parameters())
            for name, value in update.items():
                params[name].copy_(value)
        for layer in self._layers:
            base = layer.get_base_layer().weight
            base += layer.get_delta_weight(ADAPTER).to(base.dtype)
        self.reset()

    def save(self, out: Path) -> None:
        """Save the current adapter as a PEFT directory (safetensors only)."""
        self.model.save_pretrained(str(out), safe_serialization=True)


def adapter_base(adapter_dir: Path) -> str:
    """The model spec an adapter was trained on: the one selfadapt recorded (``selfadapt.json``),
    else the base PEFT named (the embedded model by its Hub id)."""
    from .runs import read_json

    adapter_dir = Path(adapter_dir)
    meta = read_json(adapter_dir / "selfadapt.json") if (adapter_dir / "selfadapt.json").is_file() else {}
    base = meta.get("model") or read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if not isinstance(base, str) or adapter_location(base):  # one level: an adapter names a model, not another adapter
        raise ValueError(f"{adapter_dir}: its base model {base!r} is not a model spec")
    return EMBEDDED if base == EMBEDDED_HUB_ID else base


def load_adapter(model: PreTrainedModel | PeftModel, adapter_dir: Path, name: str = "default") -> PeftModel:
    """Attach a saved adapter under ``name`` (a second one to a ``PeftModel`` is added beside
    the first); only safetensors weights are accepted (no pickle). A damaged config or weights
    file is named (PEFT's own errors do not say which file)."""
    from .runs import read_json

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a PEFT adapter directory (no adapter_config.json)")
    read_json(adapter_dir / "adapter_config.json")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_model.safetensors; other formats are refused")
    try:
        with safe_open(weights, "pt"):
            pass
    except Exception as e:  # SafetensorError: a copy cut short or not safetensors at all
        raise ValueError(f"{weights}: not a readable safetensors file, damaged or incomplete ({e})") from None
    if isinstance(model, PeftModel):
        model.load_adapter(str(adapter_dir), adapter_name=name, use_safetensors=True)
        return model.eval()
    return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name, use_safetensors=True).eval()


def merge_adapter(base: str, adapter: Path, out: Path) -> None:
    """An adapter merged into fp32 weights of ``base`` and saved in ``out`` as an ordinary checkpoint,
    with the base's tokenizer (exact, and the adapter itself is left as it is)."""
    m = load_model(base, dtype="float32", device="cpu")
    save_checkpoint(load_adapter(m.model, adapter).merge_and_unload(), m.tokenizer, out)


def name_base_model(adapter: Path, spec: str, path: str) -> None:
    """Name the base model in ``adapter_config.json`` as a user would find it, not by this
    machine's cache path: the Hub id for the embedded model (whose weights here are the
    dequantised Q4_1 GGUF), else the spec as given (a Hub id or the user's own directory)."""
    cfg_file = adapter / "adapter_config.json"
    config = json.loads(cfg_file.read_text())
    config["base_model_name_or_path"] = hub_base(spec) or str(Path(path).resolve())
    cfg_file.write_text(json.dumps(config, indent=2))
