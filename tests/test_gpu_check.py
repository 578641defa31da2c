"""The GPU check (benchmarks/gpu_check/run.py) in its --tiny form: every phase runs on the CPU through the
library's real paths and leaves numbers, so the one call a lent GPU machine gets is not spent on a crash."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from transformers import AutoTokenizer

from selfadapt.restem import WINNER_RULES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check" / "run.py"
PHASES = ["gen-batch", "inner-loop", "restem-1.5b", "grpo-1.5b", "restem-7b"]


def number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One --tiny run in its own process (as on the GPU machine): its exit status, output and results."""
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out), "--scratch", str(out)],
                          cwd=out, capture_output=True, text=True, timeout=900)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else None
    return proc, results


def test_every_phase_runs_without_error(tiny_run):
    proc, results = tiny_run
    assert results is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(results["phases"]) == PHASES
    errors = {n: p.get("error") for n, p in results["phases"].items() if p["status"] != "ok"}
    assert not errors, {n: results["phases"][n].get("traceback") for n in errors}
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert number(results["total_seconds"]) and results["gen_batch_default"]["value"] >= 8


def test_every_phase_has_one_live_model_and_its_numbers(tiny_run):
    phases = tiny_run[1]["phases"]
    for name, p in phases.items():
        assert number(p["seconds"]) and p["seconds"] > 0, name
        assert p["live_model_samples"] >= 1 and p["live_models_max"] == 1, (name, p.get("timeline_s_models_gib"))
        assert "peak_gpu_gib" in p  # None on the CPU

    gen = phases["gen-batch"]
    for batch in sorted({8, gen["default_batch"]}):
        assert gen[f"grounded_batch{batch}"]["tokens"] > 0 and number(gen[f"grounded_batch{batch}"]["tokens_per_s"])
    assert number(gen["grounded_speedup"])

    inner = phases["inner-loop"]
    for way in ("ours", "reference"):
        assert number(inner[way]["evals_per_hour"]) and inner[way]["evals_per_hour"] > 0
    assert number(inner["speed_ratio"])

    for name in ("restem-1.5b", "restem-7b"):
        r = phases[name]
        assert all(number(r["stages_s"][k]) and r["stages_s"][k] > 0 for k in ("generate", "inner_loops", "sft")), name
        assert r["evaluations"] == 2 and r["winners"] >= 1 and r["sft"]["steps"] >= 1, name
        assert number(r["inner_loop_evals_per_hour"]) and number(r["selfedit_tokens_per_s"]), name
    assert phases["restem-7b"]["parameters"] > phases["restem-1.5b"]["parameters"]  # the untied stand-in

    (step,) = phases["grpo-1.5b"]["step_times_s"]
    assert all(number(step[k]) for k in ("reflection_generation", "retry_generation", "optimisation", "total"))


def test_live_models_counts_copies_not_wrappers():
    """The "must be 1" check could not fail if the count missed a second copy: it sees one, the PEFT-wrapped
    one as one, and two."""
    spec = importlib.util.spec_from_file_location("gpu_check_run", SCRIPT)
    run = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ), mock.patch.dict(WINNER_RULES), mock.patch.dict(sys.modules):
        sys.modules[spec.name] = run  # its dataclasses look their module up; its settings stay in the script
        spec.loader.exec_module(run)
    tok = AutoTokenizer.from_pretrained(run.TOKENIZER)
    ctx = run.Ctx(torch.device("cpu"), torch.float32, tok, run.TINY, Path("."), 8)
    gc.collect()  # other tests' garbage would be collected mid-test
    base = run.live_models()
    a = run.build_model(ctx, "1.5b")
    assert a.config.vocab_size == len(tok)
    assert run.live_models() == base + 1
    lora = run.ResidentLoRA(a, tok, run.LoRAConfig())
    assert run.live_models() == base + 1
    b = run.build_model(ctx, "7b")
    assert run.live_models() == base + 2
    del a, b, lora
