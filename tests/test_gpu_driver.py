"""Under Ray with the vLLM backend, the driver loads no model (issue 43, item 7).

The engine writes every self-edit (``prewrite``) and each Ray actor loads its own copy of the model,
so a driver copy (a 7B model on cuda:0, outside Ray's accounting) was loaded only to read the
self-edits back from the run and dropped. The driver needs the tokenizers alone. Checked on CPU:
a fake ``vllm`` package (``test_gpu_memory.engine_starts``) and a Ray pool that runs in this
process, loading its own model by spec as an actor does.
"""

from __future__ import annotations

import sys
from collections import Counter

import pytest
import test_gpu_memory

import selfadapt.models as models
import selfadapt.restem as restem
import selfadapt.workers as workers_mod
from selfadapt.arc.experiment import ArcEvalConfig, ArcSettings, run_arc_eval
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.restem import PolicySFTConfig, ReSTEMConfig, run_restem
from selfadapt.workers import InProcess, Parallel

engine_starts = test_gpu_memory.engine_starts  # the fake vLLM, a fixture


@pytest.fixture()
def driver_loads(monkeypatch, engine_starts):
    """The specs this process loads a model of, wherever ``selfadapt`` calls ``load_model``; the Ray
    pool is replaced by one in this process whose "actors" load their model outside the spy."""
    real, loads, pools = models.load_model, [], []

    def spy(spec, *args, **kwargs):
        loads.append(str(spec))
        return real(spec, *args, **kwargs)

    for module in [m for name, m in sys.modules.items() if name.startswith("selfadapt")]:
        if getattr(module, "load_model", None) is real:
            monkeypatch.setattr(module, "load_model", spy)

    class ActorsHere:
        """``RayPool`` without Ray: one "actor" that loads ``model`` by spec, as a Ray worker does."""

        def __init__(self, parallel, model, lora_cfg, *, dtype, device):
            assert isinstance(model, str)
            pools.append(model)
            loaded = real(model, dtype=dtype, device=device)
            self.inner = InProcess(ResidentLoRA(loaded.model, loaded.tokenizer, lora_cfg))

        def run(self, jobs, done):
            self.inner.run(jobs, done)

        def close(self):
            pass

    monkeypatch.setattr(workers_mod, "RayPool", ActorsHere)
    yield loads, pools


@pytest.mark.parametrize("student", [False, True])
def test_a_restem_round_under_ray_with_vllm_loads_no_model_in_the_driver(driver_loads, tiny_dir, passages, tmp_path,
                                                                        monkeypatch, student):
    loads, pools = driver_loads
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [] for i in rewards})  # no policy SFT
    cfg = ReSTEMConfig(model=str(tiny_dir), student=str(tiny_dir) if student else None, rounds=1, items_per_round=2,
                       k=2, seeds=1, max_new_tokens=8, lora=LoRAConfig(r=4, epochs=1),
                       sft=PolicySFTConfig(epochs=1, r=4, alpha=8), backend="vllm", dtype="float32", device="cpu",
                       runs_dir=str(tmp_path / "runs"))
    run = run_restem(cfg, passages, lambda tok: KnowledgeDomain(tok, "implications"), parallel=Parallel(workers=1))
    assert loads == [], f"the driver loaded {loads}: the engine wrote the self-edits, the actors load their own"
    assert pools == [str(tiny_dir)]
    records = run.records()
    writes = [r for r in records if r["condition"] == "write"]
    assert len(writes) == 2 and all(w["selfedits"] == ["The army seized Otrar."] * 2 for w in writes)
    assert Counter(r["condition"] for r in records) == {"write": 2, "base": 2, "selfedit": 2 * 2}
    assert all(r["status"] == "ok" for r in records if r["condition"] == "selfedit")
    assert (run.path / "round-0" / "policy.json").is_file() and (run.path / "summary.md").is_file()


def test_a_knowledge_eval_under_ray_with_vllm_loads_no_model_in_the_driver(driver_loads, tiny_dir, passages_file,
                                                                          tmp_path):
    """The base model's own self-edits (``baselines``) and a policy's (``evaluate_policy``)."""
    loads, pools = driver_loads
    cfg = KnowledgeEvalConfig(model=str(tiny_dir), dataset=str(passages_file), passages=2, external=[], controls=[],
                              policies=[f"a={tiny_dir}"], selfedits_per_passage=2, max_new_tokens=8,
                              answer_max_new_tokens=4, formats=["implications"], decodings=["free"],
                              lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu", backend="vllm",
                              runs_dir=str(tmp_path / "runs"))
    run, rows = run_knowledge_eval(cfg, parallel=Parallel(workers=1))
    assert loads == [], f"the driver loaded {loads}: the engine wrote the self-edits, the actors load their own"
    assert pools == [str(tiny_dir)] * 2  # the baselines', then the policy's
    assert [r["condition"] for r in rows] == ["base", "recital", "passage+form", "own-implications+form", "a-base",
                                              "a+form"]  # form equalized by default
    counts = Counter(r["condition"] for r in run.records())
    assert counts == {"base": 2, "recital": 2, "passage+form": 2, "write": 2 + 2, "own-implications+form": 2 * 2,
                      "a-base": 2, "a+form": 2 * 2}


def test_an_arc_eval_under_ray_with_vllm_loads_no_model_in_the_driver(driver_loads, tiny_dir, tmp_path):
    loads, pools = driver_loads
    cfg = ArcEvalConfig(model=str(tiny_dir), arc=ArcSettings(tasks=["66e6c45b"], cap=2, budget=2, votes=1),
                        selfedits=1, oracle=False, selfedit_tokens=8, lora=LoRAConfig(r=4, epochs=1),
                        dtype="float32", device="cpu", backend="vllm", runs_dir=str(tmp_path / "runs"))
    run, rows = run_arc_eval(cfg, parallel=Parallel(workers=1))
    assert loads == [], f"the driver loaded {loads}: the engine wrote the self-edits, the actors load their own"
    assert pools == [str(tiny_dir)]
    tasks = len({r["item"] for r in run.records()})
    assert Counter(r["condition"] for r in run.records()) == {"icl": tasks, "ttt-plain": tasks, "write": tasks,
                                                              "own": tasks}


def test_reading_self_edits_back_without_a_model_names_what_is_missing(tiny_tokenizer, passages, tmp_path):
    from selfadapt.generation import SamplingConfig
    from selfadapt.policy import write_into_run
    from selfadapt.runs import Run

    run, domain = Run.create(tmp_path, "x", {}), KnowledgeDomain(tiny_tokenizer, "implications")
    run.append("own/write/p0", {"condition": "write", "item": "p0", "selfedits": ["a"], "seconds": 1.0})
    with pytest.raises(ValueError, match=r"own/write: 1 item\(s\) have no self-edits in the run \(the first: p1\)"):
        write_into_run(run, "own/", None, tiny_tokenizer, domain, passages, 1, SamplingConfig(), seed=0)
    edits, seconds = write_into_run(run, "own/", None, tiny_tokenizer, domain, passages[:1], 1, SamplingConfig(),
                                    seed=0)
    assert edits == {"p0": ["a"]} and seconds == {"p0": 1.0}
