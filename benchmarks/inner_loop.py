"""Time split of one SEAL self-edit evaluation on the embedded model, and peak RSS.

    python benchmarks/inner_loop.py                 # eval200 passage 0, implications
    python benchmarks/inner_loop.py --passage 3 --format self-qa --repeats 3

Stages: model load (once), write the self-edit, build training data, LoRA training,
answer the questions without the passage, grade. Prints what it measured.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import torch

from selfadapt.generation import SamplingConfig
from selfadapt.inner_loop import evaluate_selfedit
from selfadapt.knowledge import FORMATS, KnowledgeDomain, load_passages
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import load_model
from selfadapt.policy import write_selfedits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--passage", type=int, default=0, help="eval200 index")
    ap.add_argument("--format", default="implications", choices=sorted(FORMATS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2, help="self-edit evaluations to time (after loading)")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    t0 = time.perf_counter()
    m = load_model(args.model, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    passage = load_passages("eval200", limit=1, offset=args.passage)[0]
    lora = ResidentLoRA(m.model, m.tokenizer, LoRAConfig(epochs=args.epochs, batch_size=args.batch_size))
    domain = KnowledgeDomain(m.tokenizer, args.format)
    sampling = SamplingConfig(FORMATS[args.format].max_new_tokens, 1.0, 0.95, 1)

    splits: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        t = time.perf_counter()
        (edits,), _ = write_selfedits(lora.model, m.tokenizer, domain, [passage], 1, sampling, seed=rep)
        gen_s = time.perf_counter() - t
        res = evaluate_selfedit(lora, domain, passage, edits[0], seed=rep)
        total = time.perf_counter() - t
        row = {"generate": gen_s, **res.seconds, "total": total}
        for k, v in row.items():
            splits.setdefault(k, []).append(v)
        print(f"repeat {rep}: status={res.status} score={res.score:.2f} "
              f"sequences={res.train.get('sequences')} steps={res.train.get('steps')} "
              f"tokens={res.train.get('tokens')} self-edit tokens={len(m.tokenizer(edits[0])['input_ids'])}")

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, dtype {m.model.dtype}")
    print(f"model: {args.model}, load {load_s:.1f} s; passage {args.passage} ({passage.title!r}), "
          f"{len(passage.questions)} questions, format {args.format}, {args.epochs} epochs")
    print(f"{'stage':<10} {'mean s':>8} {'min s':>8}  (over {args.repeats} self-edits)")
    for k in ("generate", "build", "train", "answer", "grade", "total"):
        if k in splits:
            print(f"{k:<10} {statistics.mean(splits[k]):8.2f} {min(splits[k]):8.2f}")
    print(f"peak RSS {rss_mb:.0f} MiB")
    print("reproduce: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
