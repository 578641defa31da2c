"""The self-edit policy: the model writing training data for itself."""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .domain import Domain
from .evaluate import WRITE, Condition, progress_bar, run_conditions
from .generation import SamplingConfig, generate
from .likelihood import completion_scores
from .lora import LoRAConfig, ResidentLoRA
from .models import LoadedModel, load_model, load_tokenizer
from .runs import Run
from .vllm_backend import VLLMEngine, VLLMSampler, check_backend
from .workers import Parallel, Workers, workers_for


def write_selfedits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    domain: Domain,
    items: list[Any],
    k: int,
    sampling: SamplingConfig,
    *,
    seed: int,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[list[str]], float]:
    """Sample ``k`` self-edits per item, batched across items; returns them and the seconds taken.

    ``model`` is a transformers model or a ``VLLMSampler``. With a resident LoRA model, its
    adapter must be zero (the base policy) when this is called; the caller owns that.
    """
    if k < 1:
        raise ValueError("k (self-edits per item) must be >= 1")
    prompts = [domain.selfedit_prompt(item) for item in items for _ in range(k)]
    rows = [domain.selfedit_constraint(item) for item in items for _ in range(k)]  # one per row: they keep state
    constraints = None if all(c is None for c in rows) else rows
    t0 = time.perf_counter()
    sample = model.generate if isinstance(model, VLLMSampler) else functools.partial(generate, model, tokenizer)
    texts = sample(prompts, sampling, seed=seed, on_batch=on_batch, constraints=constraints)
    return [texts[i * k : (i + 1) * k] for i in range(len(items))], time.perf_counter() - t0


def selfedit_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, domain: Domain, item: Any,
                      selfedits: list[str]) -> list[float | None]:
    """log p(self-edit | prompt) under the policy (unconstrained), None for an empty one: what
    ReST-EM shifts, recorded so a run shows how the policy's choices move."""
    prompt = domain.selfedit_prompt(item)
    pairs = [(prompt, s) for s in selfedits if s]
    if not pairs:  # every self-edit empty; ``completion_scores`` needs at least one pair
        return [None] * len(selfedits)
    scored = iter(model.logprobs(pairs) if isinstance(model, VLLMSampler)
                  else [c.logprob for c in completion_scores(model, tokenizer, pairs, batch_size=8)])
    return [next(scored) if s else None for s in selfedits]


def write_into_run(
    run: Run,
    prefix: str,
    model: PreTrainedModel | ResidentLoRA | VLLMSampler | None,
    tokenizer: PreTrainedTokenizerBase,
    domain: Domain,
    items: list[Any],
    k: int,
    sampling: SamplingConfig,
    *,
    seed: int,
    tags: dict[str, Any] | None = None,
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Self-edits for every item, written once per run (``{prefix}write/{item}``) and reloaded on resume.

    Returns item id → self-edits and item id → seconds spent writing them. A ``ResidentLoRA`` writes
    as the base policy (its adapter skipped); ``model`` None only reads back (``selfedits_and_workers``).
    """
    todo = [it for it in items if not run.done(f"{prefix}write/{domain.item_id(it)}")]
    if todo and model is None:
        raise ValueError(f"{prefix}write: {len(todo)} item(s) have no self-edits in the run (the first: "
                         f"{domain.item_id(todo[0])}) and there is no model to write them: with the vLLM backend, "
                         "prewrite writes every self-edit first")
    if todo and isinstance(model, ResidentLoRA):
        with model.base():
            return write_into_run(run, prefix, model.model, tokenizer, domain, items, k, sampling, seed=seed, tags=tags)
    if todo:
        with progress_bar() as bar:
            task = bar.add_task(f"{prefix}writing self-edits", total=len(todo) * k)
            texts, seconds = write_selfedits(model, tokenizer, domain, todo, k, sampling, seed=seed,
                                             on_batch=lambda n: bar.advance(task, n))
        for it, t in zip(todo, texts):
            iid = domain.item_id(it)
            run.append(f"{prefix}write/{iid}", {"condition": WRITE, "item": iid, **(tags or {}),
                                                "selfedits": t, "logprobs": selfedit_logprobs(model, tokenizer,
                                                                                              domain, it, t),
                                                "seconds": seconds / len(todo)})
    written = {domain.item_id(it): run.get(f"{prefix}write/{domain.item_id(it)}") for it in items}
    return {i: w["selfedits"] for i, w in written.items()}, {i: w["seconds"] for i, w in written.items()}


@dataclass
class Writing:
    """One ``write_into_run`` to do ahead (``prewrite``): the domain is made from the engine's tokenizer."""

    prefix: str
    make_domain: Callable[[PreTrainedTokenizerBase], Domain]
    items: list[Any]
    k: int
    sampling: SamplingConfig
    seed: int
    tags: dict[str, Any] | None = None


def prewrite(run: Run, backend: str, spec: str, writings: list[Writing], *, dtype: str = "auto",
             device: str = "auto") -> None:
    """With ``backend="vllm"``, every writing done now on one vLLM engine that lives only for this
    call, before the caller loads its transformers model (two copies of a 7B model do not fit a
    GPU); ``selfedits_and_workers`` then reads the self-edits back from the run. A no-op for
    ``hf``, and when everything is written already (a resumed run starts no engine)."""
    check_backend(backend)
    if backend == "hf" or not writings:
        return
    tokenizer = load_tokenizer(spec)  # item ids need a domain, a domain a tokenizer
    todo = [w for w, domain in ((w, w.make_domain(tokenizer)) for w in writings)
            if not all(run.done(f"{w.prefix}write/{domain.item_id(it)}") for it in w.items)]
    if not todo:
        return
    with VLLMEngine(spec, dtype=dtype, device=device, seed=todo[0].seed) as engine:
        for w in todo:
            write_into_run(run, w.prefix, engine, engine.tokenizer, w.make_domain(engine.tokenizer), w.items, w.k,
                           w.sampling, seed=w.seed, tags=w.tags)


@dataclass
class Written:
    """One ``Writing``'s self-edits: the domain that wrote them (and reads them back), item id →
    self-edits, item id → seconds spent writing them."""

    domain: Domain
    selfedits: dict[str, list[str]]
    seconds: dict[str, float]


@dataclass
class Prepared:
    """What ``selfedits_and_workers`` yields."""

    tokenizer: PreTrainedTokenizerBase  # the policy's, which wrote the self-edits
    student_tokenizer: PreTrainedTokenizerBase  # the adapted model's: the policy's own without a student
    written: list[Written]  # one per ``Writing``, in their order
    workers: Workers  # the inner loops, on the student (or the policy itself): here or on Ray actors


@contextmanager
def selfedits_and_workers(run: Run, spec: str | LoadedModel, writings: list[Writing], lora: LoRAConfig, *,
                          student: str | None = None, parallel: Parallel | None = None, backend: str = "hf",
                          dtype: str = "auto", device: str = "auto") -> Iterator[Prepared]:
    """The self-edits of ``writings``, written by ``spec`` (or read back from the run), and the
    workers that evaluate them on ``student`` (default: ``spec`` adapts itself, as in SEAL).

    Every model lives only in this call, one copy at a time where it can: the vLLM engine
    writes first and is gone before a transformers copy loads (``prewrite``); with Ray the
    driver drops its copy before the actors load theirs (a driver copy on cuda:0 is outside
    Ray's accounting); and none is alive when the caller loads the next model (the policy SFT,
    a trained policy). A model object given as ``spec`` leaves as it came."""
    prewrite(run, backend, spec, writings, dtype=dtype, device=device)
    on_ray = parallel is not None and parallel.enabled
    if backend != "vllm" or not on_ray:  # this process writes the self-edits (hf) or runs the inner loops
        policy = load_model(spec, dtype=dtype, device=device)
        adapted = policy if student is None else load_model(student, dtype=dtype, device=device)
        resident = ResidentLoRA(adapted.model, adapted.tokenizer, lora)
        tokenizer, student_tokenizer = policy.tokenizer, adapted.tokenizer
        writer = resident if student is None else policy.model  # the policy as itself: its adapter skipped
        del policy, adapted
    else:  # vLLM wrote every self-edit and the Ray actors load their own models: the tokenizers suffice
        tokenizer, resident, writer = load_tokenizer(spec), None, None
        student_tokenizer = tokenizer if student is None else load_tokenizer(student)
    callers = resident if isinstance(spec, LoadedModel) else None  # LoRA layers put into the caller's model
    try:
        written = []
        for w in writings:
            domain = w.make_domain(tokenizer)
            selfedits, seconds = write_into_run(run, w.prefix, writer, tokenizer, domain, w.items, w.k, w.sampling,
                                                seed=w.seed, tags=w.tags)
            written.append(Written(domain, selfedits, seconds))
        del writer
        if on_ray:
            resident = None  # the actors load their own copies
        with workers_for(parallel, resident, student or spec, lora, dtype=dtype, device=device) as workers:
            yield Prepared(tokenizer, student_tokenizer, written, workers)
    finally:
        if callers is not None:
            callers.release()  # out of the caller's model again, even when the body failed


Arrange = Callable[[Domain, Condition], tuple[Domain, list[Any], Condition]]


def evaluate_policy(
    run: Run,
    name: str,
    spec: str,
    make_domain: Callable[[PreTrainedTokenizerBase], Domain],
    items: list[Any],
    k: int,
    sampling: SamplingConfig,
    lora: LoRAConfig,
    *,
    seed: int,
    base_name: str,
    dtype: str = "auto",
    device: str = "auto",
    arrange: Arrange | None = None,
    parallel: Parallel | None = None,
    backend: str = "hf",
) -> list[str]:
    """SEAL's test of a trained policy: it writes its own self-edits, then adapts itself on them.

    Records go under ``{name}/``, its unadapted score under ``base_name``; returns the two
    condition names for the table. ``arrange`` lets a setting regroup items and self-edits
    before evaluation (CPT: one update on all). ``backend``: what writes the self-edits (``prewrite``).
    """
    writing = Writing(f"{name}/", make_domain, items, k, sampling, seed)
    with selfedits_and_workers(run, spec, [writing], lora, parallel=parallel, backend=backend, dtype=dtype,
                               device=device) as prepared:
        (written,) = prepared.written
        condition = Condition(name, written.selfedits, written.seconds)
        domain = written.domain
        if arrange:
            domain, items, condition = arrange(domain, condition)
        run_conditions(run, prepared.workers, domain, items, [condition], seed=seed, prefix=f"{name}/",
                       base_name=base_name)
    return [base_name, name]
