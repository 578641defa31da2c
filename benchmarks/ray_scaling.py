"""Inner-loop evaluations per hour: in this process, and on 1 and 2 Ray workers, same jobs.

The jobs are passage-only evaluations (LoRA fine-tune on the passage, then the knowledge
measure) of train passages with the embedded model, each with a few seeds. Prints the wall
time and evaluations per hour of each setting, the speed-up over one process, and Ray's
overhead per job: the driver's wall time minus the time the workers spent inside jobs,
over the jobs (startup, shipping, scheduling; the actors' model load is reported apart).

    python benchmarks/ray_scaling.py --passages 4 --seeds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from selfadapt.knowledge.data import load_passages
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.models import EMBEDDED, load_model
from selfadapt.workers import InProcess, Job, Parallel, RayPool, start_local_niceness


def jobs(domain: KnowledgeDomain, passages, seeds: int) -> list[Job]:
    return [Job(f"passage/{p.index}/{s}", {"condition": "passage", "item": f"p{p.index}", "j": 0, "seed": s},
                domain, p) for p in passages for s in range(seeds)]


def inside(records: list[dict]) -> float:
    """Seconds the workers spent inside the jobs (fine-tune + measure)."""
    return sum(sum(r["seconds"].values()) for r in records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=EMBEDDED)
    ap.add_argument("--passages", type=int, default=4)
    ap.add_argument("--offset", type=int, default=200, help="train passages from here (away from other runs)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    import ray

    passages = load_passages("train", limit=args.passages, offset=args.offset)
    lora_cfg = LoRAConfig()
    loaded = load_model(args.model)
    domain = KnowledgeDomain(loaded.tokenizer, "implications")
    n = args.passages * args.seeds
    print(f"# {n} passage-only evaluations ({args.passages} train passages × {args.seeds} seeds), {args.model}, "
          f"{loaded.model.dtype}, {os.cpu_count()} CPUs, torch {torch.__version__}, {platform.processor() or ''}")
    rows = []
    records: list[dict] = []
    t0 = time.perf_counter()
    InProcess(ResidentLoRA(loaded.model, loaded.tokenizer, lora_cfg)).run(
        jobs(domain, passages, args.seeds), lambda job, rec: records.append(rec))
    wall = time.perf_counter() - t0
    rows.append(("in process", wall, inside(records), 0.0))
    del loaded
    start_local_niceness()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    for w in args.workers:
        records = []
        t0 = time.perf_counter()
        pool = RayPool(Parallel(workers=w), args.model, lora_cfg, dtype="auto", device="auto")
        ray.get([a.__ray_ready__.remote() for a in pool.actors])  # the actors have loaded the model
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        pool.run(jobs(domain, passages, args.seeds), lambda job, rec: records.append(rec))
        wall = time.perf_counter() - t1
        pool.close()
        rows.append((f"{w} Ray worker(s)", wall, inside(records), startup))
    base = rows[0][1]
    print("\n| setting | wall s | evaluations/hour | speed-up | s inside jobs | Ray overhead s/job | actor startup s |")
    print("|---|---|---|---|---|---|---|")
    for name, wall, work, startup in rows:
        workers = 1 if name == "in process" else int(name.split()[0])
        overhead = (wall * workers - work) / n if name != "in process" else 0.0
        print(f"| {name} | {wall:.0f} | {3600 * n / wall:.0f} | {base / wall:.2f}× | {work:.0f} | "
              f"{overhead:.2f} | {startup:.0f} |")
    print("\nRay overhead per job = (wall × workers − time inside jobs) / jobs: idle waiting, shipping, scheduling.")


if __name__ == "__main__":
    main()
