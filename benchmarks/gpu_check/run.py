"""The GPU check (issue 43): one call on a lent GPU machine runs the library's own GPU paths at real
model sizes and records, per phase, peak GPU memory, live model copies, seconds and speeds.

    python3 benchmarks/gpu_check/run.py --out $OUT      # on the GPU machine (README.md: the whole command)
    python benchmarks/gpu_check/run.py --tiny           # tiny shapes on the CPU, seconds (tests/test_gpu_check.py)
    python benchmarks/gpu_check/run.py --phases gen-batch,grpo-1.5b

A GPU machine is lent rarely and briefly, without network or the embedded model, so the models are
random weights of Qwen2.5-1.5B's and Qwen2.5-7B's shapes (transformers' Qwen2Config), built on the
device in bf16, with SmolLM2's tokenizer (committed in tokenizer/ beside this file; its 49,152 words
are the models' vocabulary). Random weights write garbage self-edits: the check is about memory,
time and crashes, not about what is learnt. The phases, cheapest and most independent first, so a
timeout loses the least (results.json is rewritten after every phase; one that fails is recorded
with its traceback and the next one runs):

- gen-batch:   self-edit writing tokens/s at batch 8 and at ReST-EM's default batch (1.5B)
- inner-loop:  inner-loop evaluations per hour, ours (one resident LoRA) and a SEAL-style reference
               (a fresh ``get_peft_model`` per evaluation, one sequence per step) in the same call (1.5B)
- restem-1.5b: one ReST-EM round on the knowledge domain, 4 passages × k=2, a forced winner so the
               policy SFT (TRL) runs, exactly as ``selfadapt train knowledge`` runs it
- grpo-1.5b:   one Reflect-Retry-Reward GRPO step (TRL's GRPOTrainer, ``rrr/grpo.py``)
- restem-7b:   the ReST-EM round at 7B: does one GPU hold the inner loop and then the policy SFT (both
               on the bf16 base; the SFT's LoRA fp32 under autocast, merged in fp32 on the CPU)?

"Live model copies" counts the transformers models alive in the process (``live_models``): at the
measuring points of gen-batch and inner-loop, and every few seconds (at a module call) while a ReST-EM
or GRPO phase runs, since the library loads and drops its models inside calls this script cannot see
into. It must stay 1: at 7B two copies of the policy do not fit one GPU next to the training.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network; nothing here needs one
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # keep the output's tail for this script's lines
os.environ.setdefault("USE_HUB_KERNELS", "NO")  # transformers' Hub kernels cannot be fetched without network
try:
    import selfadapt  # noqa: F401
except ImportError:  # the GPU machine gets the working tree, not an installed package
    sys.path.insert(0, str(ROOT / "src"))

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Qwen2Config

from selfadapt.generation import SamplingConfig, default_batch_size
from selfadapt.inner_loop import evaluate_selfedit
from selfadapt.knowledge import KnowledgeDomain, load_external_selfedits, load_passages
from selfadapt.knowledge.measure import qa_prompt
from selfadapt.knowledge.train import KnowledgeTrainConfig, run_knowledge_training
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import free_memory, pick_device, pick_dtype
from selfadapt.policy import write_selfedits
from selfadapt.restem import SELFEDIT, WINNER_RULES, PolicySFTConfig, ReSTEMConfig
from selfadapt.rewards import token_lengths
from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
from selfadapt.rrr.reflect import attempt
from selfadapt.rrr.tasks import get_task

TOKENIZER = HERE / "tokenizer"
GIB = 2**30

# Qwen2.5's shapes (their config.json), the vocabulary aside. "tiny" stands in for both with --tiny (tied
# or not as the shape it stands in for).
SHAPES = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
}


@dataclass
class Knobs:
    """How much work each phase does: the library's defaults on a GPU, token counts of a few on --tiny."""

    passages: int = 4  # ReST-EM items per round (C); k = 2 self-edits each
    epochs: int = LoRAConfig.epochs  # inner-loop LoRA epochs (10, as the CLI)
    sft_epochs: int = PolicySFTConfig.epochs  # the policy SFT's
    selfedit_tokens: int | None = None  # None: the self-edit format's own cap (self-QA: 384)
    gen_tokens: int = 128  # new tokens per row in gen-batch
    decodings: tuple[str, ...] = ("grounded", "free")  # gen-batch: ReST-EM's default, and without the constraint
    inner_passages: int = 3  # eval200 passages timed in inner-loop, each way
    num_generations: int = RRRGRPOConfig.num_generations  # RRRGRPOConfig's defaults: G reflections of each
    queries_per_step: int = RRRGRPOConfig.queries_per_step  # of so many failed queries per step
    reflection_tokens: int = RRRGRPOConfig.reflection_tokens
    retry_tokens: int = RRRGRPOConfig.retry_tokens
    warm_up: bool = True  # an untimed inner-loop evaluation before the timed ones
    sample_every: float = 3.0  # seconds between live-model samples in the ReST-EM and GRPO phases
    tiny: bool = False


FULL = Knobs()
TINY = Knobs(passages=1, epochs=1, sft_epochs=1, selfedit_tokens=64, gen_tokens=8, decodings=("grounded",),
             inner_passages=1, num_generations=2, queries_per_step=1, reflection_tokens=8, retry_tokens=8,
             warm_up=False, sample_every=1.0, tiny=True)  # 64 self-edit tokens: a grounded Q/A pair fits


@dataclass
class Ctx:
    device: torch.device
    dtype: torch.dtype
    tokenizer: object
    knobs: Knobs
    scratch: Path  # saved models for the ReST-EM phases (it reloads its policy from a path every round)
    gen_batch: int  # ReST-EM's default self-edit writing batch on this device


# ---------------------------------------------------------------------------------------------------------
# models and measurements


def build_model(ctx: Ctx, size: str) -> PreTrainedModel:
    """Random weights of ``size``'s shape, allocated and initialised on the device in its dtype: no
    download, no host copy (a 7B model initialised on the CPU takes minutes)."""
    tok = ctx.tokenizer
    cfg = Qwen2Config(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                      **(SHAPES[size] | SHAPES["tiny"] if ctx.knobs.tiny else SHAPES[size]))
    torch.manual_seed(0)
    with torch.device(ctx.device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=ctx.dtype)
    return model.eval()


def save_random_model(ctx: Ctx, size: str, where: Path) -> dict:
    """A random model saved as a model directory (weights and tokenizer, in the run's dtype): ReST-EM takes
    a model spec, since it reloads its policy every round (the inner loops and the SFT load it in the run's
    dtype, bf16 on CUDA). The built copy is gone on return."""
    t0 = time.perf_counter()
    model = build_model(ctx, size)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(where)
    ctx.tokenizer.save_pretrained(where)
    del model
    free_memory()
    return {"parameters": params, "build_and_save_s": time.perf_counter() - t0}


def live_models() -> int:
    """Transformers models alive in this process, garbage not yet collected included (it holds its memory
    too). A model's own base model (``Qwen2Model`` inside ``Qwen2ForCausalLM``) and PEFT's wrapper around
    it are not copies."""
    with warnings.catch_warnings():  # isinstance on deprecated objects (torch.distributed.reduce_op) warns
        warnings.simplefilter("ignore")
        models = [o for o in gc.get_objects() if isinstance(o, PreTrainedModel)]
    inner = {id(m.base_model) for m in models if m.base_model is not m}
    return sum(id(m) not in inner for m in models)


class Sampler:
    """Live model copies and allocated GPU memory over a phase: ``sample()`` where the phase can, and, where
    it cannot see inside the library's calls, at the first module call ``every`` seconds after the last
    sample (a global forward pre-hook). The scan runs on the main thread between module calls: from another
    thread, ``gc.get_objects()`` holds references to objects still being built (a tuple CPython is resizing)
    and breaks the code building them."""

    def __init__(self, every: float | None):
        self.every, self.samples, self.cost = every, [], 0.0
        self.t0 = self.last = time.perf_counter()
        self._hook = None

    def sample(self) -> None:
        t = time.perf_counter()
        n = live_models()
        alloc = torch.cuda.memory_allocated() / GIB if torch.cuda.is_available() else None
        self.samples.append([round(t - self.t0, 1), n, None if alloc is None else round(alloc, 2)])
        self.last = time.perf_counter()
        self.cost += self.last - t

    def _on_module_call(self, module, args) -> None:
        if time.perf_counter() - self.last >= self.every:
            self.sample()

    def __enter__(self) -> "Sampler":
        if self.every:
            self._hook = torch.nn.modules.module.register_module_forward_pre_hook(self._on_module_call)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook:
            self._hook.remove()

    def summary(self) -> dict:
        counts = [n for _, n, _ in self.samples]
        return {"live_models_max": max(counts) if counts else None, "live_model_samples": len(counts),
                "sampler_s": round(self.cost, 2),
                **({"timeline_s_models_gib": self.samples} if self.every else {})}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def default_gen_batch(device: torch.device) -> tuple[int, str]:
    """ReST-EM's self-edit writing batch as its config resolves it on this device; where that is 8 (the
    CPU), the CUDA default the comparison is about."""
    batch = ReSTEMConfig(device=device.type).sampling.batch_size
    if batch != 8:
        return batch, f"ReSTEMConfig on {device.type}"
    return default_batch_size(torch.device("cuda")), "generation.default_batch_size for CUDA"


# ---------------------------------------------------------------------------------------------------------
# phases: each returns its numbers; the runner adds seconds, peak GPU memory and live model copies


def phase_gen_batch(ctx: Ctx, live: Sampler) -> dict:
    """Self-edit writing tokens/s at batch 8 and at ReST-EM's default batch (1.5B).

    One batch of each size through ReST-EM's own writing call, in its default decoding (grounded self-QA:
    a stateful constraint per row, one token bitmask for the batch per step) and in free decoding: what a
    larger CUDA default buys."""
    model, tok = build_model(ctx, "1.5b"), ctx.tokenizer
    passages = load_passages("train", limit=8)
    domains = {d: KnowledgeDomain(tok, "self-qa", grounded=d == "grounded") for d in ctx.knobs.decodings}
    write_selfedits(model, tok, domains[ctx.knobs.decodings[0]], passages[:2], 1, SamplingConfig(8), seed=0)  # warm
    live.sample()
    out = {"max_new_tokens": ctx.knobs.gen_tokens, "default_batch": ctx.gen_batch}
    for decoding, domain in domains.items():
        for batch in sorted({8, ctx.gen_batch}):
            k = max(1, batch // len(passages))  # one batch of len(passages) × k rows
            sampling = SamplingConfig(ctx.knobs.gen_tokens, 1.0, 0.95, batch)
            sync()
            edits, seconds = write_selfedits(model, tok, domain, passages, k, sampling, seed=0)
            sync()
            tokens = sum(token_lengths(tok, [e for es in edits for e in es]))
            out[f"{decoding}_batch{batch}"] = {"rows": len(passages) * k, "tokens": tokens, "seconds": seconds,
                                               "tokens_per_s": tokens / seconds}
            print(f"  {decoding} batch {batch}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.0f} tok/s",
                  flush=True)
        out[f"{decoding}_speedup"] = (out[f"{decoding}_batch{ctx.gen_batch}"]["tokens_per_s"]
                                      / out[f"{decoding}_batch8"]["tokens_per_s"])
    live.sample()
    return out


def seal_reference(model, tok, examples, passage, lora: LoRAConfig, answer_tokens: int, seed: int,
                   live: Sampler) -> tuple[PreTrainedModel, int]:
    """One self-edit evaluation as a first SEAL implementation does it (benchmarks/speed.py's reference):
    a fresh PEFT wrapper, one sequence per step, greedy answers one question at a time, then unload.
    Returns the bare model again and the tokens trained."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=0.0,
                                                  target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    live.sample()
    optim = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lora.lr)
    texts = [ex if isinstance(ex, str) else ex[0] + ex[1] for ex in examples]
    rng, tokens, dev = random.Random(seed), 0, model.device
    peft_model.train()
    for _ in range(lora.epochs):
        for text in rng.sample(texts, len(texts)):
            ids = tok(text, return_tensors="pt", truncation=True, max_length=lora.max_length)["input_ids"].to(dev)
            peft_model(input_ids=ids, labels=ids).loss.backward()
            optim.step()
            optim.zero_grad()
            tokens += ids.shape[1]
    peft_model.eval()
    for q in passage.questions:
        ids = tok(qa_prompt(tok, passage.title, q.question), return_tensors="pt", add_special_tokens=False).to(dev)
        with torch.no_grad():
            peft_model.generate(**ids, max_new_tokens=answer_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return peft_model.unload(), tokens


def phase_inner_loop(ctx: Ctx, live: Sampler) -> dict:
    """Inner-loop evaluations per hour, ours and a SEAL-style reference (1.5B).

    One model, the same data (each passage and GPT-4.1's implications) and LoRA settings: ours
    (``evaluate_selfedit`` on a resident LoRA) against ``seal_reference``; their ratio is the speed-up."""
    model, tok = build_model(ctx, "1.5b"), ctx.tokenizer
    passages = load_passages("eval200", limit=ctx.knobs.inner_passages)
    edits = load_external_selfedits("gpt-4.1", passages)
    domain = KnowledgeDomain(tok, "implications")
    data = {p.index: domain.training_data(p, edits[p.index][0]).examples for p in passages}
    lora_cfg = LoRAConfig(epochs=ctx.knobs.epochs)
    if ctx.knobs.warm_up:  # CUDA kernels, the allocator: untimed
        warm = ResidentLoRA(model, tok, lora_cfg)
        evaluate_selfedit(warm, domain, passages[0], edits[passages[0].index][0], seed=0)
        model = warm.release()
        del warm

    ref_s, ref_tokens = [], 0
    for p in passages:
        sync()
        t0 = time.perf_counter()
        model, tokens = seal_reference(model, tok, data[p.index], p, lora_cfg, domain.measure.answer.max_new_tokens,
                                       0, live)
        sync()
        ref_s.append(time.perf_counter() - t0)
        ref_tokens += tokens
        print(f"  reference p{p.index}: {ref_s[-1]:.1f} s ({tokens} tokens trained)", flush=True)

    lora = ResidentLoRA(model, tok, lora_cfg)
    ours_s, ours_tokens = [], 0
    for p in passages:
        sync()
        t0 = time.perf_counter()
        res = evaluate_selfedit(lora, domain, p, edits[p.index][0], seed=0)
        sync()
        ours_s.append(time.perf_counter() - t0)
        ours_tokens += res.train.get("tokens", 0)
        live.sample()
        print(f"  ours p{p.index}: {ours_s[-1]:.1f} s ({res.status}, {res.train.get('steps')} steps, "
              f"{res.train.get('tokens')} tokens)", flush=True)
    ours, ref = sum(ours_s) / len(ours_s), sum(ref_s) / len(ref_s)
    return {"passages": len(passages), "epochs": lora_cfg.epochs,
            "ours": {"seconds_per_eval": ours, "evals_per_hour": 3600 / ours,
                     "trained_tokens_per_s": ours_tokens / sum(ours_s)},
            "reference": {"seconds_per_eval": ref, "evals_per_hour": 3600 / ref,
                          "trained_tokens_per_s": ref_tokens / sum(ref_s)},
            "speed_ratio": ref / ours}


FORCED = "gpu-check-forced"  # the best of k whatever its reward: random weights never beat the base score
WINNER_RULES.setdefault(FORCED, lambda rewards: [max(range(len(rewards)), key=rewards.__getitem__)])


def phase_restem(size: str):
    def phase(ctx: Ctx, live: Sampler) -> dict:
        """One ReST-EM round of ``selfadapt train knowledge``, a forced winner so the policy SFT runs (SIZE).

        ``run_knowledge_training`` as the CLI calls it: self-edits written by the policy, each evaluated by
        an inner loop, the winners SFT'd (TRL: an fp32 LoRA under autocast on the base in the run's dtype,
        merged in fp32 on the CPU) into the next policy, which is saved."""
        with tempfile.TemporaryDirectory(dir=ctx.scratch, prefix=f"restem-{size}-") as tmp:
            out = save_random_model(ctx, size, Path(tmp) / "model")
            print(f"  {out['parameters'] / 1e9:.2f}B parameters, built and saved in {out['build_and_save_s']:.0f} s",
                  flush=True)
            cfg = ReSTEMConfig(model=str(Path(tmp) / "model"), rounds=1, items_per_round=ctx.knobs.passages, k=2,
                               keep=FORCED, lora=LoRAConfig(epochs=ctx.knobs.epochs),
                               sft=PolicySFTConfig(epochs=ctx.knobs.sft_epochs), device=ctx.device.type,
                               runs_dir=str(Path(tmp) / "runs"))
            # without form equalization: the check was sized (and its earlier numbers taken) with SEAL's reward,
            # and form adds one passage-alone inner loop per passage on the same code path
            run = run_knowledge_training(cfg, KnowledgeTrainConfig(max_new_tokens=ctx.knobs.selfedit_tokens,
                                                                   form=False))
            m = json.loads((run.path / "round-0" / "metrics.json").read_text())
            records = run.records()
        evals = [r for r in records if r["condition"] == SELFEDIT]
        trained = [r for r in evals if r["status"] == "ok"]  # an invalid self-edit trains nothing
        eval_s = sum(v for r in trained for k, v in r["seconds"].items() if k != "generate")
        edits = [e for r in records if r["condition"] == "write" for e in r["selfedits"]]
        edit_tokens = sum(token_lengths(ctx.tokenizer, edits))
        return {**out, "gen_batch": cfg.sampling.batch_size, "selfedit_max_new_tokens": cfg.max_new_tokens,
                "stages_s": m["seconds"], "evaluations": m["evaluations"], "invalid": m["invalid"],
                "winners": m["winners"],
                "sft": {k: m["sft"].get(k) for k in ("examples", "steps", "losses", "max_length")},
                "selfedit_tokens": edit_tokens, "selfedit_tokens_per_s": edit_tokens / m["seconds"]["generate"],
                "inner_loop_evals_per_hour": 3600 * len(trained) / eval_s if trained else None,
                "inner_loop_train_steps": [r["train"]["steps"] for r in trained]}
    phase.__doc__ = phase.__doc__.replace("SIZE", size.upper())
    return phase


def phase_grpo(ctx: Ctx, live: Sampler) -> dict:
    """One Reflect-Retry-Reward GRPO step on Countdown (1.5B).

    ``make_trainer`` as ``selfadapt rrr train`` builds it (LoRA r 16), on the model's own failed first
    attempts: reflections by TRL's rollout, retries inside the reward, the update."""
    model, tok = build_model(ctx, "1.5b"), ctx.tokenizer
    task = get_task("countdown")
    queries = task.queries("train", 4)
    answers = attempt(model, tok, task, queries, SamplingConfig(ctx.knobs.retry_tokens, 0.0, batch_size=16))
    failures = [{"query": q, "attempt": a} for q, a in zip(queries, answers) if not task.verify(q, a).correct]
    cfg = RRRGRPOConfig(num_generations=ctx.knobs.num_generations, queries_per_step=ctx.knobs.queries_per_step,
                        max_steps=1, save_steps=10**6, reflection_tokens=ctx.knobs.reflection_tokens,
                        retry_tokens=ctx.knobs.retry_tokens)
    with tempfile.TemporaryDirectory(dir=ctx.scratch, prefix="grpo-") as tmp:
        trainer = make_trainer(model, tok, task, failures, cfg, Path(tmp))
        trainer.train()
    live.sample()
    logged = [h for h in trainer.state.log_history if "reward" in h or "loss" in h]
    return {"failures": len(failures), "num_generations": cfg.num_generations,
            "queries_per_step": cfg.queries_per_step, "step_times_s": trainer.step_times,
            "reward": logged[0].get("reward") if logged else None, "loss": logged[0].get("loss") if logged else None}


PHASES = {"gen-batch": phase_gen_batch, "inner-loop": phase_inner_loop, "restem-1.5b": phase_restem("1.5b"),
          "grpo-1.5b": phase_grpo, "restem-7b": phase_restem("7b")}
HOOK_SAMPLED = {"restem-1.5b", "grpo-1.5b", "restem-7b"}


# ---------------------------------------------------------------------------------------------------------
# the runner


def write_results(results: dict, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out / "results.json")  # a kill mid-write leaves the last whole file


def run_phase(name: str, ctx: Ctx, results: dict, out: Path) -> None:
    """Run one phase, recording its numbers or its error; the next phase runs either way."""
    print(f"\n== {name}: {PHASES[name].__doc__.splitlines()[0]}", flush=True)
    rec = results["phases"][name] = {"status": "running"}
    write_results(results, out)  # a timeout shows which phase it hit
    free_memory()
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        rec["gpu_allocated_at_start_gib"] = torch.cuda.memory_allocated() / GIB
    t0 = time.perf_counter()
    with Sampler(ctx.knobs.sample_every if name in HOOK_SAMPLED else None) as live:
        try:
            rec.update(PHASES[name](ctx, live))
            rec["status"] = "ok"
        except Exception as e:  # recorded, not raised: the other phases still measure
            rec.update(status="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            print(rec["traceback"], flush=True)
    rec["seconds"] = time.perf_counter() - t0
    rec.update(live.summary())
    if cuda:
        rec["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / GIB
        rec["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    else:
        rec["peak_gpu_gib"] = None
    free_memory()
    if cuda:
        rec["gpu_allocated_at_end_gib"] = torch.cuda.memory_allocated() / GIB
    write_results(results, out)
    peak = "" if rec["peak_gpu_gib"] is None else f", peak {rec['peak_gpu_gib']:.1f} GiB"
    print(f"== {name}: {rec['status']} in {rec['seconds']:.0f} s{peak}, live models max {rec['live_models_max']}",
          flush=True)


def environment(device: torch.device) -> dict:
    versions = {}
    for dist in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pyarrow", "llguidance",
                 "tokenizers", "huggingface_hub", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"python": platform.python_version(), "device": str(device), "gpu": gpu, "versions": versions,
            "gpu_total_gib": torch.cuda.get_device_properties(device).total_memory / GIB if gpu else None}


def pick_scratch(tiny: bool) -> Path:
    """Where the ReST-EM phases save their models (the 7B round writes ~28 GB): RAM-backed /dev/shm when it
    has the room, as disk on a lent machine may be slow, else the temporary directory."""
    shm = Path("/dev/shm")
    if not tiny and shm.is_dir() and shutil.disk_usage(shm).free > 40 * GIB:
        return shm
    return Path(tempfile.gettempdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"),
                    help="where results.json goes (default: $OUT, else ./gpu_check_out)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and token counts, on the CPU unless --device")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {','.join(PHASES)}")
    ap.add_argument("--device", default=None, help="auto (CUDA if there is one), cuda or cpu; --tiny: cpu")
    ap.add_argument("--scratch", type=Path, default=None, help="where models are saved (default: /dev/shm or tmp)")
    args = ap.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")

    device = pick_device(args.device or ("cpu" if args.tiny else "auto"))
    knobs = TINY if args.tiny else FULL
    if args.tiny and device.type == "cpu":
        torch.set_num_threads(1)  # tiny models are overhead-bound: more threads only spin (2.5x slower on 2 busy cores)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    tokenizer.padding_side = "left"  # as selfadapt's loading leaves it
    gen_batch, gen_batch_source = default_gen_batch(device)
    ctx = Ctx(device, pick_dtype("auto", device), tokenizer, knobs, args.scratch or pick_scratch(args.tiny), gen_batch)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "tiny": args.tiny,
               "dtype": str(ctx.dtype).removeprefix("torch."), "scratch": str(ctx.scratch),
               "gen_batch_default": {"value": gen_batch, "source": gen_batch_source}, "knobs": asdict(knobs),
               "environment": environment(device), "torch_threads": torch.get_num_threads(), "phases": {}}
    print(f"gpu check on {device} ({results['environment']['gpu'] or platform.processor() or 'cpu'}), "
          f"{results['dtype']}, phases {', '.join(phases)}; results in {args.out / 'results.json'}", flush=True)
    t0 = time.perf_counter()
    for name in phases:
        run_phase(name, ctx, results, args.out)
    results["total_seconds"] = time.perf_counter() - t0
    write_results(results, args.out)
    failed = [n for n in phases if results["phases"][n]["status"] != "ok"]
    print(f"\ndone in {results['total_seconds']:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all ok"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
