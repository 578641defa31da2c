"""Seconds per self-edit evaluation: a plain SEAL-style loop against selfadapt's inner loop.

    python benchmarks/speed.py                       # first 3 eval200 passages, GPT-4.1 implications
    python benchmarks/speed.py --passages 1 --profile
    python benchmarks/speed.py --fewer-epochs 3    # also ours at 3 epochs: fewer trained tokens

One process, one model (the embedded SmolLM2-135M-Instruct unless --model), one dtype, the
same self-edits. Each passage's training data is the passage plus GPT-4.1's implications
(``KnowledgeDomain(..., "implications").training_data``), LoRA r 32 / alpha 64 on all
projections, lr 1e-3, 10 epochs, seed 0.

- reference: what a first implementation of SEAL's inner loop does: a fresh
  ``get_peft_model`` per self-edit, one sequence per step, then greedy answers to the
  passage's questions, one at a time, then ``unload``.
- ours: ``selfadapt.inner_loop.evaluate_selfedit`` on one resident LoRA (length-grouped
  batches under a token budget, bf16 autocast with fp32 master weights) and the knowledge
  measure (multiple choice sharing each question's KV cache, batched short answers).
- ours --no-amp: the same with PEFT's fp32 adapter math, to show what autocast buys.
- ours, N epochs (``--fewer-epochs N``): ours training fewer tokens, the only way past the
  matmul bound; its ratio is printed apart (``ratio at N epochs``), since the workload's 10
  epochs are SEAL's setting and ``ratio:`` compares the same trained tokens.

Accuracy is the knowledge measure's reward (``mc_prob``) of each adapted model, computed the
same way for all (outside the timings for the reference, whose own answers are greedy
generations, graded by SQuAD F1). Prints seconds per self-edit evaluation, the ratio, trained
and generated tokens/s, the bf16 matmul rate measured in the same run and our fraction of
it, and peak memory.
"""

from __future__ import annotations

import argparse
import platform
import random
import resource
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model

from selfadapt.grading import grade
from selfadapt.inner_loop import evaluate_selfedit
from selfadapt.knowledge import KnowledgeDomain, load_passages
from selfadapt.knowledge.data import load_external_selfedits
from selfadapt.knowledge.measure import qa_prompt
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import load_model


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def matmul_rate(dtype: torch.dtype, m: int = 1024, k: int = 576, n: int = 1536, seconds: float = 3.0) -> float:
    """GFLOP/s of one [m×k]@[k×n] matmul, the shape of an MLP projection over a 1024-token batch."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def flops_per_trained_token(model: torch.nn.Module, lora_params: int) -> float:
    """Forward 2 FLOPs per matmul weight, backward 2 more for the input gradients (the base is
    frozen: no weight gradients) and 4 more per LoRA weight (its weight gradients). The
    embedding is a lookup; the tied LM head is a matmul. Attention scores are left out (≤512 tokens)."""
    matmul = sum(mod.weight.numel() for mod in model.modules() if isinstance(mod, torch.nn.Linear))
    return 4 * matmul + 6 * lora_params


def reference(model, tokenizer, examples, passage, lora_cfg: LoRAConfig, answer_tokens: int, seed: int):
    """One SEAL-style self-edit evaluation; returns (train s, answer s, tokens, generated, f1, peft model)."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=0.0,
                                                  target_modules=lora_cfg.target_modules, task_type="CAUSAL_LM"))
    optim = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lora_cfg.lr)
    texts = [ex if isinstance(ex, str) else ex[0] + ex[1] for ex in examples]
    rng, tokens = random.Random(seed), 0
    t0 = time.perf_counter()
    peft_model.train()
    for _ in range(lora_cfg.epochs):
        for text in rng.sample(texts, len(texts)):
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=lora_cfg.max_length)["input_ids"]
            peft_model(input_ids=ids, labels=ids).loss.backward()
            optim.step()
            optim.zero_grad()
            tokens += ids.shape[1]
    train_s = time.perf_counter() - t0
    peft_model.eval()
    t0, generated, f1 = time.perf_counter(), 0, []
    for q in passage.questions:
        ids = tokenizer(qa_prompt(tokenizer, passage.title, q.question), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = peft_model.generate(**ids, max_new_tokens=answer_tokens, do_sample=False,
                                      pad_token_id=tokenizer.pad_token_id)[0, ids["input_ids"].shape[1]:]
        generated += len(out)
        f1.append(grade(tokenizer.decode(out, skip_special_tokens=True).split("\n")[0], q.answer).f1)
    return train_s, time.perf_counter() - t0, tokens, generated, statistics.mean(f1), peft_model


def profile_ours(lora: ResidentLoRA, examples, top: int) -> None:
    """Self CPU time of the top ops over one training of our loop."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        lora.train(examples, seed=0)
    lora.reset()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--passages", type=int, default=3, help="first N eval200 passages")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--fewer-epochs", type=int, action="append", default=[],
                    help="also time ours at this many epochs (repeatable)")
    ap.add_argument("--profile", action="store_true", help="also print the op profile of one of our trainings")
    args = ap.parse_args()

    loaded = load_model(args.model, dtype=args.dtype)
    model, tok = loaded.model, loaded.tokenizer
    passages = load_passages("eval200", limit=args.passages)
    edits = load_external_selfedits("gpt-4.1", passages)
    domain = KnowledgeDomain(tok, "implications")
    data = {p.index: domain.training_data(p, edits[p.index][0]).examples for p in passages}
    lora_cfg = LoRAConfig(epochs=args.epochs)
    answer_tokens = domain.measure.answer.max_new_tokens
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, dtype {model.dtype}; model {args.model}; "
          f"{args.passages} passages, {sum(len(d) for d in data.values())} training sequences")
    rate = matmul_rate(model.dtype)
    print(f"bf16 matmul [1024x576]@[576x1536]: {rate:.0f} GFLOP/s" if model.dtype == torch.bfloat16
          else f"{model.dtype} matmul: {rate:.0f} GFLOP/s")

    rows = {}
    ref = {"seconds": [], "train": 0.0, "tokens": 0, "answer": 0.0, "generated": 0, "acc": [], "f1": []}
    for p in passages:
        train_s, answer_s, tokens, generated, f1, peft_model = reference(model, tok, data[p.index], p, lora_cfg,
                                                                        answer_tokens, seed=0)
        ref["seconds"].append(train_s + answer_s)
        ref["train"] += train_s
        ref["tokens"] += tokens
        ref["answer"] += answer_s
        ref["generated"] += generated
        ref["f1"].append(f1)
        ref["acc"].append(domain.evaluate(peft_model, tok, p).score)  # untimed: the common accuracy
        model = peft_model.unload()
        print(f"reference p{p.index}: train {train_s:.1f} s ({tokens} tokens), answer {answer_s:.1f} s, "
              f"mc_prob {ref['acc'][-1]:.3f}, greedy F1 {f1:.3f}", flush=True)
    rows["reference"] = ref
    rss_ref = rss_gib()

    lora = None
    runs = [("ours", args.epochs, True), ("ours --no-amp", args.epochs, False)]
    runs += [(f"ours, {e} epochs", e, True) for e in args.fewer_epochs]
    for name, epochs, amp in runs:
        cfg = LoRAConfig(epochs=epochs, amp=amp)
        lora = ResidentLoRA(model, tok, cfg) if lora is None else lora
        lora.cfg = cfg
        row = {"seconds": [], "train": 0.0, "tokens": 0, "answer": 0.0, "generated": 0, "acc": [], "f1": []}
        for p in passages:
            t0 = time.perf_counter()
            res = evaluate_selfedit(lora, domain, p, edits[p.index][0], seed=0)
            row["seconds"].append(time.perf_counter() - t0)
            row["train"] += res.seconds["train"]
            row["tokens"] += res.train["tokens"]
            row["answer"] += res.seconds["answer"]
            row["generated"] += sum(len(tok(r["response"], add_special_tokens=False)["input_ids"]) for r in res.records)
            row["acc"].append(res.score)
            row["f1"].append(statistics.mean(r["f1"] for r in res.records))
            print(f"{name} p{p.index}: train {res.seconds['train']:.1f} s ({res.train['tokens']} tokens, "
                  f"{res.train['steps']} steps), answer {res.seconds['answer']:.1f} s, mc_prob {res.score:.3f}",
                  flush=True)
        rows[name] = row
    if args.profile:
        lora.cfg = LoRAConfig(epochs=1)
        profile_ours(lora, data[passages[0].index], top=15)

    flops = flops_per_trained_token(lora.model, sum(p.numel() for p in lora.lora_parameters))
    base = statistics.mean(ref["seconds"])
    print(f"\n{'loop':<15} {'s/self-edit':>11} {'train tok/s':>11} {'GFLOP/s':>8} {'of matmul':>9} "
          f"{'gen tok/s':>9} {'mc_prob':>7} {'F1':>6}")
    for name, row in rows.items():
        tps = row["tokens"] / row["train"]
        print(f"{name:<15} {statistics.mean(row['seconds']):11.1f} {tps:11.0f} {tps * flops / 1e9:8.0f} "
              f"{tps * flops / 1e9 / rate:9.0%} {row['generated'] / row['answer']:9.1f} "
              f"{statistics.mean(row['acc']):7.3f} {statistics.mean(row['f1']):6.3f}")
    print(f"(F1: the reference's own greedy answers; ours: the measure's few-shot short answers. "
          f"{flops / 1e6:.0f} MFLOP per trained token)")
    print(f"peak RSS: {rss_ref:.2f} GiB after the reference, {rss_gib():.2f} GiB after ours (one process)")
    print(f"ratio: {base / statistics.mean(rows['ours']['seconds']):.1f}")
    for e in args.fewer_epochs:
        print(f"ratio at {e} epochs (fewer trained tokens): "
              f"{base / statistics.mean(rows[f'ours, {e} epochs']['seconds']):.1f}")
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
