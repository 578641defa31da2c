"""Time per Reflect-Retry-Reward GRPO step on the embedded model, split by phase.

    python benchmarks/rrr_step.py                  # 3 steps, 2 failed Countdown queries × G=4 reflections
    python benchmarks/rrr_step.py --steps 5 -G 8 --failures RUN/failures.jsonl

Phases per step: reflection generation (TRL's rollout), retry generation (inside the
reward), verification, and optimisation (log-probs, reference KL, backward, AdamW step).
Without ``--failures`` the failed attempts are the model's own greedy answers to the
first training queries it gets wrong. The first step includes warm-up; the table shows
every step and the mean of the steps after it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from selfadapt.generation import SamplingConfig
from selfadapt.models import load_model
from selfadapt.rrr.failures import load_failures
from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
from selfadapt.rrr.reflect import attempt
from selfadapt.rrr.tasks import get_task

PHASES = ("reflection_generation", "retry_generation", "verify", "optimisation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--task", default="countdown")
    ap.add_argument("--failures", help="a failures.jsonl (default: greedy failures found now)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("-G", "--generations", type=int, default=4)
    ap.add_argument("--queries-per-step", type=int, default=2)
    ap.add_argument("--reflection-tokens", type=int, default=96)
    ap.add_argument("--retry-tokens", type=int, default=192)
    ap.add_argument("--lora-r", type=int, default=16)
    args = ap.parse_args()

    t0 = time.perf_counter()
    m = load_model(args.model)
    load_s = time.perf_counter() - t0
    if args.failures:
        task, failures = load_failures(args.failures)
    else:
        task = get_task(args.task)
        queries = task.queries("train", 16)
        answers = attempt(m.model, m.tokenizer, task, queries, SamplingConfig(args.retry_tokens, 0.0, batch_size=16))
        failures = [{"query": q, "attempt": a} for q, a in zip(queries, answers) if not task.verify(q, a).correct]
    cfg = RRRGRPOConfig(num_generations=args.generations, queries_per_step=args.queries_per_step,
                        max_steps=args.steps, reflection_tokens=args.reflection_tokens,
                        retry_tokens=args.retry_tokens, lora_r=args.lora_r, save_steps=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(m.model, m.tokenizer, task, failures, cfg, Path(tmp))
        trainer.train()
    times = trainer.step_times
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {m.model.dtype}; model {args.model} "
          f"(load {load_s:.1f} s); {task.name}, {len(failures)} failed queries available")
    print(f"per step: {args.queries_per_step} queries × G={args.generations} reflections "
          f"(≤{args.reflection_tokens} tokens) + as many retries (≤{args.retry_tokens} tokens); LoRA r={args.lora_r}")
    print(f"{'step':<6}" + "".join(f"{p:>23}" for p in PHASES) + f"{'total':>9}")
    for t in times:
        print(f"{t['step']:<6}" + "".join(f"{t[p]:23.1f}" for p in PHASES) + f"{t['total']:9.1f}")
    rest = times[1:] or times
    mean = {p: sum(t[p] for t in rest) / len(rest) for p in (*PHASES, "total")}
    print(f"{'mean':<6}" + "".join(f"{mean[p]:17.1f} ({mean[p] / mean['total']:3.0%})" for p in PHASES)
          + f"{mean['total']:9.1f}   (steps {rest[0]['step']}–{rest[-1]['step']})")
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    print(f"mean retry reward per step: {', '.join(f'{r:.2f}' for r in rewards)}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
