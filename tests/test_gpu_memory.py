"""The GPU path's memory and devices, checked on CPU (issue 43).

vLLM's worker refuses to start below its free-memory threshold, so every engine must start with
no transformers model left over from earlier work, collected and its cache emptied. A fake
``vllm`` package stands in for the engine: it records, when constructed, what is still alive.
The inner loop's logits index must be valid wherever the model's last layers sit (``device_map``).
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from types import SimpleNamespace

import pytest
import torch
from conftest import build_model
from transformers import PreTrainedModel

import selfadapt.restem as restem
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.lora import LoRAConfig, ResidentLoRA, causal_lm_loss
from selfadapt.restem import PolicySFTConfig, ReSTEMConfig, run_restem


def live_models() -> int:
    """Transformers models the garbage collector still tracks, reachable or only awaiting collection
    (either way their weights still hold GPU memory)."""
    return sum(issubclass(type(o), PreTrainedModel) for o in gc.get_objects())


class CudaCache:
    """What a CUDA caching allocator keeps from vLLM: the memory of the models freed since
    ``torch.cuda.empty_cache`` was last called."""

    def __init__(self):
        self.held = 0

    def model_freed(self) -> None:
        self.held += 1

    def empty(self) -> None:
        self.held = 0


@pytest.fixture()
def engine_starts(monkeypatch):
    """A fake ``vllm`` package; yields one (live models, models whose memory the cache still holds)
    per engine started. Every transformers model reports its release to a ``CudaCache``, which
    ``torch.cuda.empty_cache`` empties (called as on a GPU)."""
    cache, starts = CudaCache(), []
    init = PreTrainedModel.__init__

    def tracked_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        weakref.finalize(self, cache.model_freed).atexit = False

    class LLM:
        def __init__(self, model, **kwargs):
            starts.append((live_models(), cache.held))
            self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: None))

        def generate(self, requests, params, use_tqdm=False):
            if isinstance(params, list):  # sampling: one fixed self-edit per request
                return [SimpleNamespace(outputs=[SimpleNamespace(text="The army seized Otrar.")]) for _ in requests]
            return [SimpleNamespace(prompt_logprobs=[None] + [{t: SimpleNamespace(logprob=-1.0)}
                                                              for t in r["prompt_token_ids"][1:]])
                    for r in requests]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kw: SimpleNamespace(**kw)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict
    params = types.ModuleType("vllm.sampling_params")
    params.StructuredOutputsParams = lambda **kw: SimpleNamespace(**kw)
    for name, module in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.sampling_params", params)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # restored after: ``cpu_defaults`` sets these for good
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    monkeypatch.setattr(PreTrainedModel, "__init__", tracked_init)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", cache.empty)
    yield starts


def assert_clean_starts(starts: list[tuple[int, int]], before: int, engines: int) -> None:
    assert len(starts) == engines
    for i, (live, held) in enumerate(starts):
        assert live == before, f"engine {i} started next to {live - before} uncollected model(s) of earlier work"
        assert held == 0, f"engine {i} started while the CUDA cache held {held} freed model(s)"


def test_every_restem_round_starts_its_engine_with_no_model_left(engine_starts, tiny_dir, passages, tmp_path,
                                                                 monkeypatch):
    """Round 1's engine came after round 0's inner loops and policy SFT, whose models (PEFT and the
    trainer hold reference cycles) were never collected: at 3B vLLM refused to start."""
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})  # an SFT per round
    cfg = ReSTEMConfig(model=str(tiny_dir), rounds=2, items_per_round=2, k=1, seeds=1, max_new_tokens=8,
                       lora=LoRAConfig(r=4, epochs=1), sft=PolicySFTConfig(epochs=1, r=4, alpha=8), backend="vllm",
                       dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))
    gc.collect()
    before = live_models()
    run = run_restem(cfg, passages, lambda tok: KnowledgeDomain(tok, "implications"))
    assert (run.path / "round-1" / "policy").is_dir()  # both rounds wrote, evaluated and fine-tuned
    assert_clean_starts(engine_starts, before, engines=2)


def test_each_policy_evaluated_starts_its_engine_with_no_model_left(engine_starts, tiny_dir, tmp_path):
    """``eval knowledge --backend vllm --policy ...``: a policy's engine came after the baselines' (or
    the previous policy's) model, never collected; at 7B vLLM refused to start."""
    cfg = KnowledgeEvalConfig(model=str(tiny_dir), dataset="eval200", passages=1, external=[], controls=[],
                              policies=[f"a={tiny_dir}", f"b={tiny_dir}"], max_new_tokens=8, answer_max_new_tokens=4,
                              lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu", backend="vllm",
                              runs_dir=str(tmp_path / "runs"))
    gc.collect()
    before = live_models()
    _, rows = run_knowledge_eval(cfg)
    assert {"a+form", "b+form"} <= {r["condition"] for r in rows}  # form equalized by default
    assert_clean_starts(engine_starts, before, engines=3)  # the base model's own self-edits, then each policy's


class StopStep(Exception):
    pass


def spy_forward(model: PreTrainedModel, calls: list[dict], stop: bool = False) -> None:
    """Record the keyword arguments of each forward call of ``model`` (an instance attribute, so a
    PEFT wrapper around it reaches the spy); ``stop`` ends the step there with ``StopStep``."""
    forward = model.forward

    def spy(*args, **kwargs):
        calls.append(kwargs)
        if stop:
            raise StopStep
        return forward(*args, **kwargs)

    model.forward = spy


def test_the_inner_loop_builds_the_logits_index_on_the_cpu_wherever_the_model_is(tiny_tokenizer):
    """Under ``device_map="auto"`` (``--gpus-per-worker 2``) the hidden states end on the last GPU and
    the batch goes to the first: an index built from the labels there cannot index them, and every
    inner loop failed. A CPU index is valid on any device; the model here sits on the meta device,
    standing in for a GPU that is not the labels' (the step stops at the model's forward)."""
    model, calls = build_model(len(tiny_tokenizer)).to("meta"), []
    spy_forward(model, calls, stop=True)
    lora = ResidentLoRA(model, tiny_tokenizer, LoRAConfig(r=4, epochs=1))
    with pytest.raises(StopStep):
        lora.train([("Which town was seized?", " Otrar"), "The Shah fled."], seed=0)
    keep, ids = calls[0]["logits_to_keep"], calls[0]["input_ids"]
    assert keep.device.type == "cpu" and keep.dtype == torch.long and keep.ndim == 1 and len(keep) > 0
    assert ids.device.type == "meta"  # the batch itself went to the model's device


def test_the_loss_from_cpu_labels_equals_the_full_logits_loss(tiny_tokenizer):
    """The kept positions are exactly those a label follows, and the loss is the model's own."""
    model, calls = build_model(len(tiny_tokenizer)), []
    spy_forward(model, calls)
    ids = torch.randint(0, len(tiny_tokenizer), (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100
    loss = causal_lm_loss(model, ids, mask, labels)
    keep = calls[0]["logits_to_keep"]
    assert keep.device.type == "cpu" and keep.tolist() == list(range(3, 9))  # position p predicts token p + 1
    assert torch.allclose(loss, model(input_ids=ids, attention_mask=mask, labels=labels).loss, atol=1e-6)
