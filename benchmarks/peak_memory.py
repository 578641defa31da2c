"""Peak memory of `eval knowledge --policy` and one `train knowledge` round with a 1B model, before and
after the memory fixes (one model copy at a time, selective log-softmax, adapter disabled for sampling):
RESULTS.md, "Peak memory with a 1B model".

    python benchmarks/peak_memory.py                       # before = the commit before the first fix
    python benchmarks/peak_memory.py --before COMMIT

A randomly initialised model of Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads, 8 KV heads,
MLP 8192) with the embedded model's tokenizer (49k vocabulary: 1.0B parameters), saved in bf16, is
built once under /tmp. Each workload runs in its own process, the "before" one from a git worktree
of the old commit; the peak resident set size is GNU time's (`%M`). On CPU the weights sit in host
memory, so "two copies at once" shows up in RSS as it would in GPU memory. Since issue 46 the current
tree's `train knowledge` adds form-equalized updates (a few more training sequences, one more inner loop
per passage); the models it holds at once, what this measures, are the same.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path(tempfile.gettempdir()) / "selfadapt-llama-1b-random"
FIRST_FIX = "ae43af3"  # the first of the memory fixes: "before" is its parent


def build_model() -> None:
    if (MODEL / "config.json").is_file():
        return
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from selfadapt.models import load_tokenizer

    tok = load_tokenizer("smollm2")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      torch_dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(MODEL)
    tok.save_pretrained(MODEL)
    print(f"built {MODEL}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters", flush=True)


WORKLOADS = {
    "eval knowledge --policy": ["eval", "knowledge", "--model", str(MODEL), "--passages", "1", "--no-external",
                                "--no-control", "--max-new-tokens", "16", "--epochs", "1", "--dtype", "bfloat16",
                                "--policy", f"random-1b={MODEL}"],
    "train knowledge, 1 round": ["train", "knowledge", "--model", str(MODEL), "--rounds", "1", "-c", "1", "-k", "2",
                                 "--max-new-tokens", "16", "--epochs", "1", "--dtype", "bfloat16"],
}


def peak_rss(src: Path, args: list[str], runs_dir: Path) -> tuple[float, int]:
    """(peak RSS in GiB, exit status) of `selfadapt ARGS` run from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    code = "import sys; from selfadapt.cli import app; sys.argv = ['selfadapt'] + sys.argv[1:]; app()"
    out = subprocess.run(["/usr/bin/time", "-f", "PEAK %M", sys.executable, "-c", code, *args,
                          "--runs-dir", str(runs_dir)], env=env, capture_output=True, text=True)
    peak = [ln for ln in out.stderr.splitlines() if ln.startswith("PEAK ")]
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)
    return int(peak[-1].split()[1]) / 2**20, out.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=f"{FIRST_FIX}^")
    args = ap.parse_args()
    build_model()
    before = Path(tempfile.gettempdir()) / "selfadapt-before"
    if not before.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before], check=True)
    rows = []
    for name, cmd in WORKLOADS.items():
        for label, src in (("before", before / "src"), ("after", ROOT / "src")):
            runs = Path(tempfile.mkdtemp(prefix="peak-"))
            gib, rc = peak_rss(src, cmd, runs)
            shutil.rmtree(runs, ignore_errors=True)
            rows.append((name, label, gib, rc))
            print(f"{name} [{label}]: peak RSS {gib:.2f} GiB (exit {rc})", flush=True)
    print(f"\nmodel: {MODEL} (bf16 weights ≈ 2.0 GiB per copy); before = {args.before}\n")
    print("| workload | before: peak RSS GiB | after: peak RSS GiB |\n|---|---|---|")
    for name in WORKLOADS:
        b, a = [f"{g:.2f}" + ("" if rc == 0 else f" (exit {rc})") for n, _, g, rc in rows if n == name]
        print(f"| `selfadapt {name}` | {b} | {a} |")


if __name__ == "__main__":
    main()
