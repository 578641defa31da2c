"""Inner-loop evaluations on Ray workers (local Ray, tiny model): the same records as in this
process, nothing lost or doubled when a worker dies, and a killed driver's run resumes."""

from pathlib import Path

import pytest

from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.lora import LoRAConfig, ResidentLoRA
from selfadapt.runs import Run
from selfadapt.workers import InProcess, Job, Parallel, RayPool, start_local_niceness

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

@pytest.fixture(scope="module", autouse=True)
def local_ray():
    start_local_niceness()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture()
def cfg(tiny_dir, passages_file, tmp_path):
    return KnowledgeEvalConfig(
        model=str(tiny_dir), dataset=str(passages_file), passages=2, external=[], selfedits_per_passage=2,
        max_new_tokens=12, answer_max_new_tokens=6, formats=["implications"], decodings=["free"],
        lora=LoRAConfig(r=4, epochs=2), controls=[],
        dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))


def flat(record: dict) -> dict:
    """Scores and per-question values, flattened so that approx can compare them."""
    out = {k: v for k, v in record.items() if k not in ("records", "train", "extra", "seconds", "key")}
    for i, q in enumerate(record.get("records") or []):
        out |= {f"q{i}.{k}": v for k, v in q.items() if isinstance(v, (int, float, str)) or v is None}
    for k, v in (record.get("train") or {}).items():
        out[f"train.{k}"] = v
    return out


def assert_same_records(a: list[dict], b: list[dict]) -> None:
    """Equal text and flags; equal numbers up to float noise (threads differ between processes)."""
    fa, fb = {r["key"]: flat(r) for r in a}, {r["key"]: flat(r) for r in b}
    assert fa.keys() == fb.keys()
    for key in fa:
        assert fa[key].keys() == fb[key].keys(), key
        for name, value in fa[key].items():
            if isinstance(value, float):
                assert value == pytest.approx(fb[key][name], rel=1e-4, abs=1e-5), (key, name)
            else:
                assert value == fb[key][name], (key, name)


def test_one_and_two_workers_write_the_records_of_one_process(cfg):
    local, _ = run_knowledge_eval(cfg)
    one, _ = run_knowledge_eval(cfg, parallel=Parallel(workers=1))
    two, rows = run_knowledge_eval(cfg, parallel=Parallel(workers=2))
    assert len(local.records()) == 2 + 2 + 2 + 2 + 4  # base, recital, passage, write, own
    assert_same_records(local.records(), one.records())
    assert_same_records(local.records(), two.records())
    assert [r["condition"] for r in rows] == ["base", "recital", "passage+form", "own-implications+form"]


def jobs_for(domain, passages, key_prefix=""):
    heads = [(f"{key_prefix}base/{p.index}", {"condition": "base", "item": f"p{p.index}", "j": 0}, p, None, True)
             for p in passages]
    heads += [(f"{key_prefix}passage/{p.index}/{s}", {"condition": "passage", "item": f"p{p.index}", "j": 0,
                                                      "seed": s}, p, None, False)
              for p in passages for s in range(3)]
    return [Job(key, head, domain, item, selfedit, base=base) for key, head, item, selfedit, base in heads]


def test_a_killed_worker_loses_and_doubles_nothing(tiny, tiny_dir, passages):
    domain = KnowledgeDomain(tiny.tokenizer, "implications")
    lora_cfg = LoRAConfig(r=4, epochs=2)
    expected: dict[str, dict] = {}
    InProcess(ResidentLoRA(tiny.model, tiny.tokenizer, lora_cfg)).run(
        jobs_for(domain, passages), lambda job, rec: expected.__setitem__(job.key, rec))

    pool = RayPool(Parallel(workers=2), str(tiny_dir), lora_cfg, dtype="float32", device="cpu")
    pids = ray.get([a.pid.remote() for a in pool.actors])
    got: dict[str, list[dict]] = {}

    def done(job, record):
        got.setdefault(job.key, []).append(record)
        if len(got) == 1:  # the other worker is mid-job: kill both, Ray restarts them
            for actor in pool.actors:
                ray.kill(actor, no_restart=False)

    try:
        pool.run(jobs_for(domain, passages), done)
        restarted = ray.get([a.pid.remote() for a in pool.actors])
    finally:
        pool.close()
    assert not set(pids) & set(restarted)  # both workers are new processes
    assert {k: len(v) for k, v in got.items()} == {k: 1 for k in expected}
    assert_same_records([{"key": k, **v[0]} for k, v in got.items()], [{"key": k, **v} for k, v in expected.items()])


def test_a_job_failing_three_times_is_an_error_naming_its_item(tiny_dir, tiny, passages):
    domain = KnowledgeDomain(tiny.tokenizer, "implications")
    broken = Job("passage/x/0", {"condition": "passage", "item": "p99", "j": 0, "seed": 0}, domain,
                 item="not a passage")  # evaluation raises inside the worker
    good = jobs_for(domain, passages[:1])[0]
    pool = RayPool(Parallel(workers=1), str(tiny_dir), LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    got = {}
    try:
        pool.run([broken, good], lambda job, rec: got.__setitem__(job.key, rec))
    finally:
        pool.close()
    assert got[good.key]["status"] == "ok"
    assert got[broken.key]["status"] == "error" and "3 times on item p99" in got[broken.key]["reason"]


def test_a_killed_driver_resumes_with_workers(cfg, monkeypatch):
    real, appended = Run.append, []

    def dies_after_seven(self, key, record):
        if len(appended) == 7:
            raise KeyboardInterrupt  # the driver killed between two records
        appended.append(key)
        real(self, key, record)

    monkeypatch.setattr(Run, "append", dies_after_seven)
    with pytest.raises(KeyboardInterrupt):
        run_knowledge_eval(cfg, parallel=Parallel(workers=2))
    monkeypatch.setattr(Run, "append", real)
    (path,) = Path(cfg.runs_dir).iterdir()
    run, _ = run_knowledge_eval(cfg, resume=path, parallel=Parallel(workers=2))
    keys = [r["key"] for r in run.records()]
    assert keys[:7] == appended and len(keys) == len(set(keys)) == 12


def test_restem_rounds_on_workers_match_one_process(tiny_dir, passages, tmp_path, monkeypatch):
    """Round 1's workers load round 0's policy (its path): records as in one process."""
    import selfadapt.restem as restem
    from selfadapt.restem import PolicySFTConfig, ReSTEMConfig, run_restem

    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    runs = []
    for name, parallel in (("local", None), ("ray", Parallel(workers=2))):
        cfg = ReSTEMConfig(model=str(tiny_dir), rounds=2, items_per_round=2, k=2, max_new_tokens=12,
                           lora=LoRAConfig(r=4, epochs=1), sft=PolicySFTConfig(epochs=1, r=4, alpha=8),
                           dtype="float32", device="cpu", runs_dir=str(tmp_path / name))
        runs.append(run_restem(cfg, passages, lambda tok: KnowledgeDomain(tok, "implications"), parallel=parallel))
    local, on_ray = ([r for r in run.records() if r.get("round") == 1 and "policy" in r] for run in runs)
    assert {r["policy"].split("/")[-2:] == ["round-0", "policy"] for r in local + on_ray} == {True}
    for records in (local, on_ray):
        for r in records:
            r.pop("policy")  # the two runs live in different directories
    assert_same_records(local, on_ray)


def test_a_metric_travels_to_workers_as_its_spec(tiny_dir, tiny, passages, tmp_path):
    """``--metric``: the domain carries the spec, and the worker imports and runs the function itself."""
    path = tmp_path / "pid_metric.py"
    path.write_text("import os\n\n\ndef pid(prompts, completions, **kwargs):\n"
                    "    return [float(os.getpid())] * len(completions)\n")
    domain = KnowledgeDomain(tiny.tokenizer, "implications", metric=f"{path}:pid")
    pool = RayPool(Parallel(workers=1), str(tiny_dir), LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    got = {}
    try:
        (pid,) = ray.get([a.pid.remote() for a in pool.actors])
        pool.run(jobs_for(domain, passages[:1])[:1], lambda job, rec: got.__setitem__(job.key, rec))
    finally:
        pool.close()
    (rec,) = got.values()
    assert rec["status"] == "ok" and rec["score"] == float(pid)
    assert {q["metric"] for q in rec["records"]} == {float(pid)}
