"""What an `rrr train` run learned, per step: mean reward per component, groups with any
spread (non-zero advantage), retries correct, reflection length, the NOVER reference
answer's perplexity (the raw signal behind its group-relative reward, whose mean is 0.5 by
construction); and whether the saved
adapter moved at all (the largest |B| of its LoRA matrices: 0 means it is the initial one).

    python benchmarks/rrr_training_summary.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import load_file

from selfadapt.runs import read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args()
    for run in args.runs:
        if not (run / "rollouts.jsonl").is_file():
            print(f"\n## {run.name}\n\nno rollouts yet ({run / 'rollouts.jsonl'} does not exist)")
            continue
        rows = [r for _, r in read_jsonl(run / "rollouts.jsonl", partial_last=True)]
        history = json.loads((run / "metrics.json").read_text())["history"] if (run / "metrics.json").exists() else []
        steps = sorted({r["step"] for r in rows})
        group = yaml.safe_load((run / "config.yaml").read_text())["grpo"]["num_generations"]
        print(f"\n## {run.name}\n")
        names = list(dict.fromkeys(r["reward"] for r in rows))
        print("| step | " + " | ".join(f"mean {n}" for n in names) + " | groups with spread | retries correct | "
              "mean reflection tokens | reference perplexity | DISCO scale |")
        print("|---|" + "---|" * (len(names) + 5))
        for step in steps:
            mine = [r for r in rows if r["step"] == step]
            by = {n: [r for r in mine if r["reward"] == n] for n in names}
            totals: dict[str, list[float]] = defaultdict(list)
            first = by[names[0]]
            for i, r in enumerate(first):
                totals[f"{r['id']}#{i // group}"].append(sum(by[n][i]["value"] for n in names if i < len(by[n])))
            spread = sum(len(set(v)) > 1 for v in totals.values())
            retry = by.get("retry") or []
            lengths = [r["length"] for n in names for r in by[n] if "length" in r][: len(first)]
            log = next((h for h in history if h.get("step") == step + 1), {})
            length = f"{np.mean(lengths):.0f}" if lengths else "–"
            scale = f"{log['disco/scale']:.3f}" if "disco/scale" in log else "–"
            ppl = [r["perplexity"] for r in by.get("nover") or [] if r.get("perplexity") is not None]
            perplexity = f"{np.mean(ppl):.3f}" if ppl else "–"
            print(f"| {step} | " + " | ".join(f"{np.mean([r['value'] for r in by[n]]):.3f}" for n in names) +
                  f" | {spread} / {len(totals)} | {sum(r.get('correct', False) for r in retry)} / {len(retry)} | "
                  f"{length} | {perplexity} | {scale} |")
        adapter = run / "policy" / "adapter_model.safetensors"
        if adapter.exists():
            b = [np.abs(v).max() for k, v in load_file(str(adapter)).items() if "lora_B" in k]
            print(f"\nadapter: {len(b)} LoRA B matrices, largest |B| = {max(b):.3g}")


if __name__ == "__main__":
    main()
