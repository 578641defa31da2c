"""The GPU path's generation costs, counted on CPU (issue 43): batch size by device, constrained
decoding that reads each token once and masks the whole batch in one call per step, vLLM handed
every prompt at once with CUDA graphs on, and Ray shipping each domain once. Spies and fakes
count the calls; vLLM and a Ray cluster are not needed."""

from __future__ import annotations

import json
import re
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import typer
from conftest import build_model
from typer.testing import CliRunner

import selfadapt.generation as generation
from selfadapt.arc.domain import _GRAMMAR
from selfadapt.constrained import GrammarConstraint, lark_grammar
from selfadapt.generation import SamplingConfig, generate
from selfadapt.knowledge.grounded import SpanQA, Static, allowed_token_ids
from selfadapt.models import encode_text

CONTEXT = "The Mongol army seized the town of Otrar. The Shah fled."
PROMPTS = ["The Mongol army", "Question: What metal was used? Answer:", "fox", "Genghis Khan ordered Subutai",
           "The", "Implications:"]


def constraints(tok) -> list:
    """One row of each kind, each its own object: span QA (two settings), a static set, JSON and Lark
    grammars, and none."""
    return [SpanQA(tok, CONTEXT, pairs=2, question_tokens=6, answer_tokens=4),
            Static(allowed_token_ids(tok, ["Genghis", CONTEXT])),
            None,
            GrammarConstraint(tok, _GRAMMAR()),
            GrammarConstraint(tok, lark_grammar('start: "<answer>" /[a-z ]+/ "</answer>"'), prefix="<answer>"),
            SpanQA(tok, CONTEXT, pairs=1, question_tokens=3, answer_tokens=8)]


def spy_generate(model, monkeypatch) -> list[torch.Tensor]:
    """Every ``model.generate`` output (prompt and new tokens), in call order."""
    outputs, real = [], model.generate

    def spy(**kwargs):
        outputs.append(real(**kwargs))
        return outputs[-1]

    monkeypatch.setattr(model, "generate", spy)
    return outputs


# 6a: the batch size


def test_generation_batch_size_is_resolved_by_the_model_device(tiny, monkeypatch):
    by_device = generation.default_batch_size
    assert by_device(torch.device("cuda")) > by_device(torch.device("cpu")) == 8
    assert SamplingConfig().batch_size is None
    outputs = spy_generate(tiny.model, monkeypatch)
    devices = []
    monkeypatch.setattr(generation, "default_batch_size", lambda device: devices.append(device) or 3)
    generate(tiny.model, tiny.tokenizer, PROMPTS + ["fox"], SamplingConfig(2, 0.0))
    assert [len(g) for g in outputs] == [3, 3, 1] and devices == [tiny.model.device]
    outputs.clear()
    generate(tiny.model, tiny.tokenizer, PROMPTS, SamplingConfig(2, 0.0, batch_size=4))
    assert [len(g) for g in outputs] == [4, 2]  # a batch size that is set wins


@pytest.mark.parametrize("command, module, runner", [
    (["eval", "knowledge"], "selfadapt.knowledge.experiment", "run_knowledge_eval"),
    (["train", "knowledge"], "selfadapt.knowledge.train", "run_knowledge_training"),
    (["eval", "arc"], "selfadapt.arc.experiment", "run_arc_eval"),
    (["train", "arc"], "selfadapt.arc.experiment", "run_arc_training"),
])
def test_gen_batch_size_flag_reaches_the_run_config(tmp_path, monkeypatch, command, module, runner):
    from selfadapt.cli import app

    built = []

    def capture(cfg, *args, **kwargs):  # the command stops once it has built its config
        built.append(cfg)
        raise typer.Exit(3)

    monkeypatch.setattr(f"{module}.{runner}", capture)
    for flag, expected in (([], 8), (["--gen-batch-size", "32"], 32)):  # the default resolved: 8 on a CPU
        res = CliRunner().invoke(app, [*command, "--runs-dir", str(tmp_path), *flag])
        assert res.exit_code == 3, res.output
        assert built[-1].gen_batch_size == expected
    assert CliRunner().invoke(app, [*command, "--gen-batch-size", "0"]).exit_code == 2


def no_device_default(monkeypatch) -> list[int]:
    """Every ``model.generate`` batch's rows, with the device default of the batch size made to fail:
    a run that is resumed on another device must sample as its records were."""
    from transformers import GenerationMixin

    rows, real = [], GenerationMixin.generate
    monkeypatch.setattr(generation, "default_batch_size",
                        lambda device: pytest.fail("a resumable run's batch size left to the device"))
    monkeypatch.setattr(GenerationMixin, "generate",
                        lambda self, **kw: rows.append(len(kw["input_ids"])) or real(self, **kw))
    return rows


def test_rrr_runs_sample_in_the_batches_their_config_records(tiny_dir, tmp_path, monkeypatch):
    """``rrr build-failures`` in its ``batch_size``, ``rrr probe`` and ``rrr eval`` in their ``chunk``
    (both in the run's config), on any device."""
    from selfadapt.rrr import experiment

    rows = no_device_default(monkeypatch)
    common = dict(model=str(tiny_dir), dtype="float32", device="cpu", runs_dir=str(tmp_path))
    experiment.run_build_failures(experiment.FailuresConfig(task="countdown", queries=2, attempts=3, max_new_tokens=3,
                                                            batch_size=4, **common))
    assert rows == [4, 2]
    rows.clear()
    settings = dict(answer_tokens=3, reflection_tokens=3, chunk=2, **common)
    experiment.run_rrr_probe(experiment.ProbeConfig(tasks=["countdown:numbers=2"], queries=3, **settings))
    assert rows and max(rows) == 2
    rows.clear()
    experiment.run_rrr_eval(experiment.RRREvalConfig(task="countdown:numbers=2", queries=3, general=3, **settings))
    assert rows and max(rows) == 2


def test_continual_self_edits_sample_in_a_set_batch(tiny_dir, tmp_path, monkeypatch):
    """``eval continual`` writes one self-edit per update, a batch of one whatever the device."""
    import selfadapt.knowledge.continual as continual
    from selfadapt.lora import LoRAConfig

    no_device_default(monkeypatch)
    written = []

    def write(model, tok, domain, items, k, sampling, *, seed):
        written.append((len(items) * k, sampling.batch_size))
        return [["Q: Who fled?\nA: The Shah"]], 0.0

    monkeypatch.setattr(continual, "write_selfedits", write)
    data = tmp_path / "two.json"
    data.write_text(json.dumps([{"title": f"T{i}", "context": CONTEXT, "questions": [{"question": "Who fled?",
                                                                                       "answer": "The Shah"}]}
                                for i in range(2)]))
    cfg = continual.ContinualConfig(model=str(tiny_dir), dataset=str(data), passages=2, conditions=["own"],
                                    lora=LoRAConfig(r=2, epochs=1), dtype="float32", device="cpu",
                                    runs_dir=str(tmp_path / "runs"))
    continual.run_continual_eval(cfg)
    assert written == [(1, 1), (1, 1)]


# 6b: constrained decoding


class CountingMatcher:
    """An llguidance matcher that keeps every token it consumes."""

    def __init__(self, inner):
        self.inner, self.consumed = inner, []

    def consume_token(self, token: int) -> bool:
        self.consumed.append(token)
        return self.inner.consume_token(token)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class ReadingSpanQA(SpanQA):
    """Span QA that keeps every token it reads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: list[int] = []

    def advance(self, token: int) -> None:
        self.read.append(token)
        super().advance(token)


def test_constrained_decoding_reads_each_token_once_and_masks_the_batch_in_one_call(tiny, monkeypatch):
    tok = tiny.tokenizer
    allocated, applied = [], []
    real_allocate, real_apply = generation.allocate_token_bitmask, generation.apply_bitmask
    monkeypatch.setattr(generation, "allocate_token_bitmask",
                        lambda *shape: allocated.append((shape, real_allocate(*shape))) or allocated[-1][1])
    monkeypatch.setattr(generation, "apply_bitmask",
                        lambda scores, mask: applied.append((scores.shape[0], mask)) or real_apply(scores, mask))
    outputs = spy_generate(tiny.model, monkeypatch)
    rows = constraints(tok)
    rows[0] = ReadingSpanQA(tok, CONTEXT, pairs=2, question_tokens=6, answer_tokens=4)
    for c in rows[3:5]:
        c.matcher = CountingMatcher(c.matcher)
    generate(tiny.model, tok, PROMPTS, SamplingConfig(40, 0.0, batch_size=len(PROMPTS)), constraints=rows)
    (out,) = outputs
    width = max(len(encode_text(tok, p)) for p in PROMPTS)
    new = [row[width:].tolist() for row in out]
    # one host bitmask for the batch, filled, copied and applied once per generated position
    ((shape, bitmask),) = allocated
    assert shape == (len(PROMPTS), tiny.model.config.vocab_size)
    assert len(applied) == len(new[0]) and all(rows == len(PROMPTS) and mask is bitmask for rows, mask in applied)
    # each generated token read once: the last one is never needed
    assert rows[0].read in [row[:-1] for row in new]
    for c in rows[3:5]:
        row = next(r for r in new if r[: len(c.matcher.consumed)] == c.matcher.consumed)
        upto = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row) - 1
        assert c.matcher.consumed == row[:upto]


def test_host_unpacking_masks_what_llguidances_kernel_masks():
    """Off CUDA the bitmask is unpacked on the host; on CUDA llguidance's kernel applies it."""
    from llguidance.torch import allocate_token_bitmask, apply_token_bitmask_inplace

    torch.manual_seed(0)
    bitmask = allocate_token_bitmask(3, 90)
    bitmask[0] = torch.from_numpy(np.random.default_rng(0).integers(0, 2**32, 3, dtype=np.uint32).view(np.int32))
    bitmask[1] = 0
    bitmask[1, 0] = 5  # tokens 0 and 2
    bitmask[1, 2] = -(1 << 31) | 1 << 6  # token 70, and in the sign bit token 95, past the logits
    scores = torch.randn(3, 90)
    expected = scores.clone()
    with torch.compiler.set_stance("force_eager"):  # the kernel as written, without compiling it here
        apply_token_bitmask_inplace(expected, bitmask)
    generation.apply_bitmask(scores, bitmask)
    assert torch.equal(scores, expected)
    assert torch.isfinite(scores[1]).tolist() == [i in (0, 2, 70) for i in range(90)]
    assert torch.isfinite(scores[2]).all()


def random_bitmask(rows: int, vocab: int) -> torch.Tensor:
    """A bitmask over ``vocab`` tokens: random rows, then one with no bit, one with every bit, and
    one with tokens 0, 2, 70 and, in the sign bit of its last word, the last token of the bitmask (past
    ``vocab`` unless it is a multiple of 32)."""
    from llguidance.torch import allocate_token_bitmask

    bitmask = allocate_token_bitmask(rows + 3, vocab)
    words = bitmask.shape[1]
    bitmask[:rows] = torch.from_numpy(
        np.random.default_rng(0).integers(0, 2**32, (rows, words), dtype=np.uint32).view(np.int32))
    bitmask[rows] = 0
    bitmask[rows + 1] = -1
    bitmask[rows + 2] = 0
    bitmask[rows + 2, 0] = 5
    bitmask[rows + 2, 2] = 1 << 6
    bitmask[rows + 2, -1] |= -(1 << 31)
    return bitmask


@pytest.mark.parametrize("vocab", [90, 96, 151_936])
def test_eager_fallback_masks_what_host_unpacking_masks(vocab):
    """The fallback for a CUDA box where llguidance's kernel cannot be compiled unpacks the bits with
    torch operations (where the bitmask is: on the device there); on CPU it masks exactly what the
    host path does."""
    bitmask = random_bitmask(4, vocab)
    scores = torch.randn(len(bitmask), vocab)
    host, eager = scores.clone(), scores.clone()
    generation.apply_bitmask(host, bitmask)
    generation.apply_bitmask_eager(eager, bitmask)
    assert torch.equal(host, eager)
    finite = torch.isfinite(eager)
    assert not finite[4].any() and finite[5].all()
    last = 32 * bitmask.shape[1] - 1
    assert finite[6].nonzero().flatten().tolist() == [0, 2, 70] + [last] * (last < vocab)
    narrow = scores.clone()  # a bitmask narrower than the logits: the tokens past it masked
    generation.apply_bitmask_eager(narrow, bitmask[:, :2])
    assert torch.isinf(narrow[:, 64:]).all() and torch.equal(narrow[:, :64], eager[:, :64])


def test_a_kernel_that_cannot_compile_falls_back_to_eager_masking_once(monkeypatch, caplog):
    """On CUDA llguidance's ``torch.compile``d kernel needs Inductor, Triton and a C compiler: where
    compiling fails, constrained decoding goes on with the eager masking, warned of once, and the
    compile is not tried again."""
    calls = []

    def broken(scores, bitmask):
        calls.append(1)
        raise RuntimeError("backend='inductor' raised: CalledProcessError: gcc not found")

    monkeypatch.setattr(generation, "apply_token_bitmask_inplace", broken)
    monkeypatch.setattr(generation, "_kernel_failed", False)
    bitmask = random_bitmask(2, 90)
    scores = torch.randn(len(bitmask), 90)
    expected = scores.clone()
    generation.apply_bitmask(expected, bitmask)  # the host path
    for _ in range(3):  # the CUDA branch, with the bitmask already where the scores are
        masked = scores.clone()
        with caplog.at_level("WARNING", logger="selfadapt.generation"):
            generation._apply_on_device(masked, bitmask)
        assert torch.equal(masked, expected)
    assert len(calls) == 1 and generation._kernel_failed
    (warning,) = [r for r in caplog.records if r.name == "selfadapt.generation"]
    assert "gcc not found" in warning.getMessage() and "eager" in warning.getMessage()


def test_the_compiled_kernel_is_used_while_it_works(monkeypatch):
    calls = []
    monkeypatch.setattr(generation, "apply_token_bitmask_inplace", lambda scores, bitmask: calls.append(bitmask))
    monkeypatch.setattr(generation, "apply_bitmask_eager", lambda *a: pytest.fail("eager masking used"))
    monkeypatch.setattr(generation, "_kernel_failed", False)
    bitmask = random_bitmask(1, 90)
    generation._apply_on_device(torch.zeros(len(bitmask), 90), bitmask)
    assert calls == [bitmask]


class Opaque:
    """A constraint seen through the plain callable contract only: it is handed the row's tokens
    so far at every step, the way every constraint was read before they kept their own state."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, generated):
        return self.inner(generated)


@pytest.mark.parametrize("padded", [0, 20])  # an embedding padded past the tokenizer: its extra ids never allowed
@pytest.mark.parametrize("cfg, seed", [(SamplingConfig(60, 0.0, batch_size=3), None),
                                       (SamplingConfig(60, 1.5, 1.0, 6), 1)])
def test_stepwise_constraints_decode_what_rereading_the_prefix_does(tiny_tokenizer, padded, cfg, seed):
    model = build_model(len(tiny_tokenizer) + padded)
    stepwise = generate(model, tiny_tokenizer, PROMPTS, cfg, seed=seed, constraints=constraints(tiny_tokenizer))
    reread = generate(model, tiny_tokenizer, PROMPTS, cfg, seed=seed,
                      constraints=[c and Opaque(c) for c in constraints(tiny_tokenizer)])
    assert stepwise == reread
    assert stepwise[3].startswith('{"data_generation": {') and re.fullmatch("[a-z ]*(</answer>)?", stepwise[4])
    assert stepwise[0].startswith("Q:") and "\nA: " in stepwise[0]


# 6c: vLLM


class FakeLLM:
    """vLLM's ``LLM`` as this project calls it: the engine's settings and every ``generate`` call
    recorded; progress reported as vLLM's ``_run_engine`` does (a bar with a total, one update
    per finished request), after a bar over the requests it adds."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        FakeLLM.made.append(kwargs)
        self.calls = []
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: None))

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append((requests, params, use_tqdm))
        if callable(use_tqdm):
            for _ in use_tqdm(requests, desc="Adding requests"):
                pass
            bar = use_tqdm(total=len(requests), desc="Processed prompts", dynamic_ncols=True, postfix="")
        outs = []
        for i, r in enumerate(requests):
            outs.append(SimpleNamespace(outputs=[SimpleNamespace(text=f" {i} ")]))
            if callable(use_tqdm):
                bar.postfix = f"est. speed {i / max(bar.format_dict['elapsed'], 1e-9):.2f}"
                bar.update(1)
        if callable(use_tqdm):
            bar.close()
        return outs


@pytest.fixture()
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = FakeLLM, lambda **kw: SimpleNamespace(**kw)
    inputs, params = types.ModuleType("vllm.inputs"), types.ModuleType("vllm.sampling_params")
    inputs.TokensPrompt, params.StructuredOutputsParams = dict, lambda **kw: SimpleNamespace(**kw)
    for name, module in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.sampling_params", params)):
        monkeypatch.setitem(sys.modules, name, module)
    for var in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND"):  # set by the CPU defaults
        monkeypatch.setenv(var, "")
    FakeLLM.made.clear()
    return FakeLLM


def test_vllm_captures_cuda_graphs_on_gpus_and_runs_eagerly_on_cpu(fake_vllm, tiny_dir):
    from selfadapt.vllm_backend import VLLMEngine

    for device in ("cpu", "cuda"):
        with VLLMEngine(str(tiny_dir), dtype="float32", device=device):
            pass
    cpu, gpu = fake_vllm.made
    assert cpu["enforce_eager"] is True and cpu["enable_chunked_prefill"] is False
    assert gpu["enforce_eager"] is False and "enable_chunked_prefill" not in gpu and "gpu_memory_utilization" in gpu


def test_vllm_gets_every_prompt_at_once_and_reports_each_finished_one(fake_vllm, tiny):
    from selfadapt.vllm_backend import VLLMSampler

    llm = FakeLLM()
    prompts = [f"The fox {'jumps ' * (i % 5)}" for i in range(150)]
    done = []
    out = VLLMSampler(llm, tiny.tokenizer).generate(prompts, SamplingConfig(8, 1.0), seed=7, on_batch=done.append)
    ((requests, params, _),) = llm.calls
    assert [r["prompt_token_ids"] for r in requests] == [encode_text(tiny.tokenizer, p) for p in prompts]
    assert [p.seed for p in params] == [7 + i for i in range(len(prompts))]
    assert out == [str(i) for i in range(len(prompts))]  # in prompt order, stripped
    assert done == [1] * len(prompts)  # each finished request, not the ones being added
    VLLMSampler(llm, tiny.tokenizer).generate(prompts[:2], SamplingConfig(8, 0.0))
    assert llm.calls[-1][2] is False  # no progress asked for: no bar


# 7: Ray


def test_ray_pool_puts_each_domain_in_the_object_store_once():
    from selfadapt.workers import Job, RayPool

    puts, results = [], {}

    class Actor:
        def __init__(self):
            self.run = SimpleNamespace(remote=self.remote)

        def remote(self, domain_ref, job):
            ref = f"result-{len(results)}"
            results[ref] = {"key": job.key, "domain": domain_ref}
            return ref

    fake_ray = SimpleNamespace(put=lambda obj: puts.append(obj) or f"domain-{len(puts)}",
                               wait=lambda refs, num_returns: (refs[:num_returns], refs[num_returns:]),
                               get=results.__getitem__)
    pool = object.__new__(RayPool)  # its constructor starts Ray; ``run`` needs only the actors
    pool.ray, pool.actors = fake_ray, [Actor(), Actor()]
    domains = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    jobs = [Job(f"j{i}", {"item": i}, domains[i % 2], i) for i in range(8)]
    records = {}
    pool.run(jobs, lambda job, record: records.__setitem__(job.key, record))
    assert puts == domains
    assert {k: r["domain"] for k, r in records.items()} == {f"j{i}": f"domain-{i % 2 + 1}" for i in range(8)}
