"""Ray workers sized by GPUs (issue 28), on logical GPUs that Ray counts but no CUDA backs: the
actors then load on CPU, which is all these tests need to check placement and failure."""

import gc
import weakref

import pytest

from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.lora import LoRAConfig
from selfadapt.workers import Job, Parallel, RayPool, spanning, start_local_niceness

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    start_local_niceness()
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_fractional_gpus_put_several_workers_on_one_gpu(tiny_dir, tiny, passages):
    pool = RayPool(Parallel(gpus_per_worker=0.5), str(tiny_dir), LoRAConfig(r=4, epochs=1), dtype="float32",
                   device="auto")
    domain = KnowledgeDomain(tiny.tokenizer, "implications")
    got = {}
    try:
        assert len(pool.actors) == 2  # 1 free GPU / 0.5
        jobs = [Job(f"base/p{p.index}", {"condition": "base", "item": f"p{p.index}", "j": 0}, domain, p, base=True)
                for p in passages]
        pool.run(jobs, lambda job, rec: got.__setitem__(job.key, rec))
    finally:
        pool.close()
    assert {r["status"] for r in got.values()} == {"ok"} and len(got) == 2


def test_more_workers_than_free_gpus_is_refused(tiny_dir):
    with pytest.raises(ValueError, match=r"3 workers × 0.5 GPU need 1.5 GPUs; the Ray cluster has 1 free"):
        RayPool(Parallel(workers=3, gpus_per_worker=0.5), str(tiny_dir), LoRAConfig(r=4), dtype="float32",
                device="auto")
    with pytest.raises(ValueError, match="gpus_per_worker must be in"):
        Parallel(gpus_per_worker=1.5)
    with pytest.raises(ValueError, match=r"1 workers × 2 GPU need 2 GPUs; the Ray cluster has 1 free"):
        RayPool(Parallel(workers=1, gpus_per_worker=2), str(tiny_dir), LoRAConfig(r=4), dtype="float32",
                device="auto")


def test_a_worker_with_several_gpus_loads_its_model_spread_over_them(tiny_dir):
    """Two GPUs per actor: the actor loads the spec with ``device_map=auto`` (over the GPUs Ray
    gave it; here logical ones, so accelerate puts the layers on the CPU), and a spec that places
    its model itself is left as it is."""
    assert spanning(str(tiny_dir)) == f"{tiny_dir}:device_map=auto"
    assert spanning(f"{tiny_dir}:revision=main") == f"{tiny_dir}:revision=main,device_map=auto"
    assert spanning(f"{tiny_dir}:device_map=balanced") == f"{tiny_dir}:device_map=balanced"
    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        pool = RayPool(Parallel(gpus_per_worker=2), str(tiny_dir), LoRAConfig(r=4), dtype="float32", device="auto")
        try:
            assert len(pool.actors) == 1
            spec, gpus = ray.get(pool.actors[0].placement.remote())
            assert spec == f"{tiny_dir}:device_map=auto" and len(gpus) == 2
        finally:
            pool.close()
    finally:
        ray.shutdown()
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)


def test_a_worker_that_cannot_load_stops_the_run_instead_of_restarting_forever(tmp_path):
    with pytest.raises(RuntimeError, match="could not load"):
        RayPool(Parallel(workers=1), str(tmp_path / "no-model"), LoRAConfig(r=4), dtype="float32", device="cpu")


def test_the_drivers_model_is_gone_before_the_actors_load(tiny_dir, passages_file, tmp_path, monkeypatch):
    from selfadapt import models, policy
    from selfadapt.knowledge import experiment

    refs, alive_at_pool = [], []
    real_load, real_init = models.load_model, RayPool.__init__

    def load(spec, **kw):
        loaded = real_load(spec, **kw)
        refs.append(weakref.ref(loaded.model))
        return loaded

    def init(self, *a, **kw):
        gc.collect()
        alive_at_pool.append(sum(r() is not None for r in refs))
        real_init(self, *a, **kw)

    monkeypatch.setattr(policy, "load_model", load)
    monkeypatch.setattr(RayPool, "__init__", init)
    cfg = experiment.KnowledgeEvalConfig(model=str(tiny_dir), dataset=str(passages_file), passages=1, external=[],
                                         controls=[], own=False, answer_max_new_tokens=4,
                                         lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="auto",
                                         runs_dir=str(tmp_path / "runs"))
    experiment.run_knowledge_eval(cfg, parallel=Parallel(gpus_per_worker=0.5))
    assert refs and alive_at_pool == [0]
