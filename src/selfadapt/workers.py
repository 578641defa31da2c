"""Where inner-loop evaluations run: in this process, or on Ray actors that keep a model resident.

A job is one evaluation: an item's unadapted score, or one (condition, item, self-edit,
seed) fine-tune and test. Jobs are independent, so ReST-EM's hundreds of them per round
spread over workers: the GPUs of a node or a cluster, or CPU threads split between actors.
Ray schedules and restarts the actors; what is ours is small: the driver hands out jobs,
re-queues a job whose actor died, records a job that failed three times as an error
naming its item, and stays the only writer of ``records.jsonl``. So resume and the config
check work the same with or without Ray, and the records are the same in content.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from .domain import Domain, Evaluation, ItemError
from .inner_loop import evaluate_base, evaluate_selfedit
from .lora import LoRAConfig, ResidentLoRA
from .models import free_memory, split_spec

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass
class Job:
    """One evaluation. ``head`` holds the record's identity (condition, item, j, seed, tags);
    ``base`` asks for the unadapted score, else the model is adapted on ``selfedit`` (None:
    the item alone) and ``before`` is the item's unadapted evaluation."""

    key: str
    head: dict[str, Any]
    domain: Domain
    item: Any
    selfedit: str | None = None
    base: bool = False
    before: Evaluation | None = None


def run_job(lora: ResidentLoRA, job: Job) -> dict[str, Any]:
    """The record of one job; the same code runs in this process and in a Ray actor."""
    if job.base:
        try:
            ev = evaluate_base(lora, job.domain, job.item)
            rec = {"status": "ok", "score": ev.score, "before": ev.score, "records": ev.records,
                   "seconds": ev.seconds, "extra": ev.extra}
        except ItemError as e:
            log.error("%s", e)
            rec = {"status": "item_error", "score": None, "reason": str(e)}
        return {**job.head, **rec}
    res = evaluate_selfedit(lora, job.domain, job.item, job.selfedit, seed=job.head["seed"], before=job.before)
    return {**job.head, "selfedit": job.selfedit, **res.to_dict()}


Done = Callable[[Job, dict[str, Any]], None]


class Workers(Protocol):
    def run(self, jobs: list[Job], done: Done) -> None:
        """Run every job, calling ``done(job, record)`` in this process as each one finishes."""


@dataclass
class InProcess:
    """The default: one resident model in this process, jobs one after another."""

    lora: ResidentLoRA

    def run(self, jobs: list[Job], done: Done) -> None:
        for job in jobs:
            done(job, run_job(self.lora, job))


@dataclass
class Parallel:
    """How to spread evaluations: ``workers`` Ray actors (0: in this process), on a local Ray
    started for the run or on the cluster at ``address``; ``gpus_per_worker`` GPUs each (a
    fraction puts several small-model actors on one GPU, 2 or more spread one actor's model over
    that many with ``device_map="auto"``; default 1 where there are GPUs).
    Not part of a run's config: the records do not depend on it, so a run may resume with
    other workers."""

    workers: int = 0
    address: str | None = None
    gpus_per_worker: float | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        g = self.gpus_per_worker
        if g is not None and not (0 < g <= 1 or (g > 1 and float(g).is_integer())):
            raise ValueError(f"gpus_per_worker must be in (0, 1] or a whole number of GPUs, got {g}: a fraction "
                             "puts several actors on one GPU, a whole number spreads one actor's model over that many")

    @property
    def enabled(self) -> bool:
        return self.workers > 0 or bool(self.address) or self.gpus_per_worker is not None


@contextmanager
def workers_for(parallel: Parallel | None, lora: ResidentLoRA | None, model: str, lora_cfg: LoRAConfig, *,
                dtype: str = "auto", device: str = "auto") -> Iterator[Workers]:
    """In-process workers on ``lora``, or a Ray pool whose actors each load ``model`` (the
    path or spec of the current policy: a new ReST-EM round sends the new path, not weights)."""
    if parallel is None or not parallel.enabled:
        if lora is None:
            raise ValueError("in-process evaluation needs the resident model")
        yield InProcess(lora)
        return
    if not isinstance(model, str):
        raise ValueError("a model object runs in this process only; give Ray workers a model spec (a directory "
                         "saved with save_pretrained, or a Hub id) to load")
    free_memory()  # the driver's own copy, dropped by the caller (``policy.selfedits_and_workers``)
    pool = RayPool(parallel, model, lora_cfg, dtype=dtype, device=device)
    try:
        yield pool
    finally:
        pool.close()


def start_local_niceness() -> None:
    """Ray's raylet renices its workers (to keep the driver responsive); here the workers do the
    run's work, and reniced they starve behind any other busy process. Call before ``ray.init``."""
    os.environ.setdefault("RAY_worker_niceness", "0")


class _Worker:
    """A Ray actor: the model is loaded once and every job reuses it (the ``ResidentLoRA`` path)."""

    def __init__(self, model: str, lora_cfg: LoRAConfig, dtype: str, device: str, threads: int | None):
        import torch

        from .models import load_model

        if threads:
            torch.set_num_threads(threads)
        loaded = load_model(model, dtype=dtype, device=device)
        self.lora, self.spec = ResidentLoRA(loaded.model, loaded.tokenizer, lora_cfg), model

    def run(self, domain: Domain, job: Job) -> dict[str, Any]:
        job.domain = domain
        return run_job(self.lora, job)

    def pid(self) -> int:
        return os.getpid()

    def placement(self) -> tuple[str, list]:
        """The spec this actor loaded and the GPUs Ray gave it (logged when the pool starts)."""
        import ray

        return self.spec, [str(g) for g in ray.get_gpu_ids()]


def spanning(model: str) -> str:
    """The spec an actor with several GPUs loads: its layers spread over the GPUs Ray gave it
    (``device_map="auto"`` over the actor's ``CUDA_VISIBLE_DEVICES``), unless the spec places them itself."""
    options = split_spec(model)[1]
    if "device_map" in options:
        return model
    return f"{model},device_map=auto" if options else f"{model}:device_map=auto"


def _free_gpus(ray: Any, need: float, wait: float = 30.0) -> float:
    """GPUs no actor holds (not all of the cluster's), waiting up to ``wait`` seconds for ``need``:
    actors killed by the previous pool (a ReST-EM round) give theirs back asynchronously."""
    deadline = time.monotonic() + wait
    while True:
        free = ray.available_resources().get("GPU", 0)
        if free + 1e-9 >= need or time.monotonic() > deadline:
            return free
        time.sleep(0.2)


class RayPool:
    """Actors that Ray restarts when they die. A job whose actor died is run again by Ray on the
    restarted actor (Ray waits for the restart); a job that raised is re-queued by the driver.
    Either way a job gets three attempts, then it is recorded as an error naming its item."""

    def __init__(self, parallel: Parallel, model: str, lora_cfg: LoRAConfig, *, dtype: str, device: str):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--workers/--ray-address need Ray: pip install 'selfadapt[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            start_local_niceness()
            ray.init(address=parallel.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        total = ray.cluster_resources().get("GPU", 0) if device != "cpu" else 0
        per = parallel.gpus_per_worker or (1 if total else 0)
        if per:
            free = _free_gpus(ray, (parallel.workers or 1) * per)
            n = parallel.workers or max(1, int(free / per + 1e-9))
            if n * per > free + 1e-9:
                raise ValueError(f"{n} workers × {per:g} GPU need {n * per:g} GPUs; the Ray cluster has {free:g} "
                                 "free (--gpus-per-worker 0.5 puts two workers on a GPU)")
            options, threads = {"num_gpus": per}, None
        else:
            n = parallel.workers or 1
            cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
            threads = max(1, cpus // n)  # the machine's threads split between the actors
            options = {"num_cpus": threads}
        # A worker that dies while loading (out of memory) is restarted a bounded number of times,
        # then the run stops with that error; ``max_restarts=-1`` had the driver wait forever.
        remote = ray.remote(max_restarts=MAX_ATTEMPTS - 1, max_task_retries=MAX_ATTEMPTS - 1)(_Worker)
        spec = spanning(model) if per > 1 else model
        self.actors = [remote.options(**options).remote(spec, lora_cfg, dtype, device, threads) for _ in range(n)]
        try:
            placed = ray.get([a.placement.remote() for a in self.actors])
        except ray.exceptions.RayActorError as e:
            self.close()
            raise RuntimeError(f"a Ray worker could not load {model!r} ({type(e).__name__}; out of memory? fewer "
                               "--workers or a larger --gpus-per-worker): see the worker's log for the cause") from None
        log.info("Ray: %d worker(s) on %s (%s)", n, parallel.address or "a local Ray",
                 f"{per:g} GPU each: " + "; ".join(",".join(g) for _, g in placed) if per
                 else f"{threads} CPU thread(s) each")

    def run(self, jobs: list[Job], done: Done) -> None:
        ray = self.ray
        domains: dict[int, Any] = {}  # each domain (tokenizer and all) is shipped once, not per job

        def submit(actor: Any, job: Job) -> None:
            if id(job.domain) not in domains:  # not ``setdefault``: its argument, a put, is made every time
                domains[id(job.domain)] = ray.put(job.domain)
            ref = domains[id(job.domain)]
            light = Job(job.key, job.head, None, job.item, job.selfedit, job.base, job.before)  # type: ignore[arg-type]
            inflight[actor.run.remote(ref, light)] = (actor, job)

        queue, idle, inflight = deque(jobs), list(self.actors), {}
        attempts: Counter[str] = Counter()
        while queue or inflight:
            while queue and idle:
                submit(idle.pop(), queue.popleft())
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            actor, job = inflight.pop(ref)
            idle.append(actor)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # Ray already ran it on the restarted actor, thrice
                log.warning("%s: its worker died %d times", job.key, MAX_ATTEMPTS)
                record = {**job.head, "status": "error", "score": None,
                          "reason": f"failed {MAX_ATTEMPTS} times on item {job.head['item']}: the worker died ({e})"}
            except ray.exceptions.RayTaskError as e:
                attempts[job.key] += 1
                log.warning("%s: attempt %d failed (%s)", job.key, attempts[job.key], type(e).__name__)
                if attempts[job.key] < MAX_ATTEMPTS:
                    queue.append(job)
                    continue
                record = {**job.head, "status": "error", "score": None,
                          "reason": f"failed {MAX_ATTEMPTS} times on item {job.head['item']}: {e}"}
            done(job, record)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()

