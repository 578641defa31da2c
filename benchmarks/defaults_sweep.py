"""Inner-loop defaults (epochs, learning rate) chosen on train passages, never on eval200.

Each setting is one ``selfadapt eval knowledge`` run on the same train passages with the
default controls (so: base, recital, passage, format-control, own grounded self-QA). The
own self-edits are sampled with the same seed by the same base model, so every setting
trains on the same data, paired by passage. A setting is good when own self-edits beat
the format control (they teach facts, not form) and passage-only stays at or above the
unadapted model (the update does not erase what the model knew about the topic).

    for s in "1e-3 10" "1e-3 3" "3e-4 10" "3e-4 3"; do set -- $s
      selfadapt eval knowledge --no-form-equalized --dataset train --offset 200 --passages 40 --no-external \
        --lr $1 --epochs $2 --workers 2 --runs-dir benchmarks/runs/defaults27/lr$1-ep$2; done
    python benchmarks/defaults_sweep.py benchmarks/runs/defaults27/*/eval-knowledge-* --metric cal_prob
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from selfadapt.evaluate import paired, per_item
from selfadapt.runs import read_jsonl

OWN = "own-self-qa-grounded"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--metric", action="append", help="default: cal_prob and mc_prob")
    args = ap.parse_args()
    for metric in args.metric or ["cal_prob", "mc_prob"]:
        print(f"### {metric}\n")
        print("| lr | epochs | passages | passage | format-control | own | own − format (95% CI) | W/T/L | "
              "passage − base (95% CI) | own − passage (95% CI) | train s / evaluation |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for run in args.runs:
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            records = [r for _, r in read_jsonl(run / "records.jsonl", partial_last=True)]
            by = {c: per_item(records, c, metric) for c in ("base", "passage", "format-control", OWN)}
            if not by["passage"]:
                continue
            items = set.intersection(*(set(v) for v in by.values()))
            by = {c: {i: v[i] for i in items} for c, v in by.items()}
            mean = {c: 100 * np.mean(list(v.values())) for c, v in by.items()}
            own_fmt, pas_base, own_pas = (paired(by[OWN], by["format-control"]), paired(by["passage"], by["base"]),
                                          paired(by[OWN], by["passage"]))
            trained = [r["seconds"]["train"] for r in records
                       if isinstance(r.get("seconds"), dict) and r["seconds"].get("train")]
            print(f"| {cfg['lora']['lr']:g} | {cfg['lora']['epochs']} | {len(items)} | {mean['passage']:.1f} | "
                  f"{mean['format-control']:.1f} | {mean[OWN]:.1f} | {own_fmt.cell()} | {own_fmt.wtl} | "
                  f"{pas_base.cell()} | {own_pas.cell()} | {np.mean(trained):.1f} |")
        print()


if __name__ == "__main__":
    main()
