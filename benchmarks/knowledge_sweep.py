"""Choose the knowledge self-edit default on the train split: every format × free/grounded decoding.

The passages are run in chunks, each a resumable `eval knowledge` run under OUT/chunk-<offset>/,
so a killed sweep loses at most one evaluation and a later session picks it up; after every
chunk the records of all finished chunks are merged into one paired table (OUT/table.md,
OUT/paired.png). Rerun the same command to resume. ``--merge`` adds the records of an
earlier sweep to the table (e.g. the leading formats on more passages):

    python benchmarks/knowledge_sweep.py --passages 20 --chunk 4 --out benchmarks/runs/sweep-train
    python benchmarks/knowledge_sweep.py --offset 12 --passages 8 --formats self-qa implications \
        --out benchmarks/runs/sweep-train-top --merge benchmarks/runs/sweep-train
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from selfadapt.evaluate import BASE, markdown_table, summarize
from selfadapt.knowledge.experiment import (
    DECODINGS,
    RECITAL,
    REFERENCES,
    SIDE_METRICS,
    KnowledgeEvalConfig,
    own_name,
    run_knowledge_eval,
)
from selfadapt.knowledge.measure import REWARD_METRIC
from selfadapt.knowledge.selfedit import FORMATS
from selfadapt.plots import plot_paired
from selfadapt.runs import Run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--dataset", default="train")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS))
    ap.add_argument("--decodings", nargs="+", default=list(DECODINGS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/runs/sweep-train"))
    ap.add_argument("--merge", type=Path, nargs="*", default=[], help="earlier sweeps whose records join the table")
    args = ap.parse_args()
    if args.dataset == "eval200":
        raise SystemExit("the sweep chooses defaults; it never runs on eval200")
    names = [BASE, RECITAL, "passage"] + [own_name(f, d) for f in args.formats for d in args.decodings]
    records, walls, merged = [], {}, {}
    for sweep in args.merge:
        for path in sorted(sweep.glob("chunk-*/eval-knowledge-*")):
            config = yaml.safe_load((path / "config.yaml").read_text())
            merged |= {r["key"]: r for r in Run(path, config).records()}  # a key is one evaluation
            names += [own_name(f, d) for f in config["formats"] for d in config["decodings"]
                      if own_name(f, d) not in names]
    for start in range(args.offset, args.offset + args.passages, args.chunk):
        n = min(args.chunk, args.offset + args.passages - start)
        cfg = KnowledgeEvalConfig(dataset=args.dataset, passages=n, offset=start, formats=args.formats,
                                  decodings=args.decodings, external=[], runs_dir=str(args.out / f"chunk-{start}"),
                                  form=False)  # as the committed sweeps were made (before issue 46's form default)
        existing = sorted((args.out / f"chunk-{start}").glob("eval-knowledge-*"))
        t0 = time.perf_counter()
        run, _ = run_knowledge_eval(cfg, resume=existing[0] if existing else None)
        walls[start] = time.perf_counter() - t0
        records += run.records()
        table_records = list((merged | {r["key"]: r for r in records}).values())  # this sweep's records win
        rows = summarize(table_records, names, metrics=tuple(SIDE_METRICS), references=REFERENCES)
        table = markdown_table(rows, REWARD_METRIC, SIDE_METRICS, REFERENCES)
        done = len({r["item"] for r in table_records if r["condition"] == "passage"})
        note = f"; with {', '.join(map(str, args.merge))}" if args.merge else ""
        (args.out / "table.md").write_text(f"{args.dataset}, {done} passages (offset {args.offset}{note})\n\n"
                                           f"{table}\n")
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
        plot_paired(rows, "passage", args.out / "paired.png",
                    f"{args.dataset}, {done} passages: paired difference from passage-only")
        print(f"chunk {start}: {walls[start]:.0f} s this session\n{table}", flush=True)


if __name__ == "__main__":
    main()
