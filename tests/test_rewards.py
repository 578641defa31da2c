"""Rewards as plug-ins: hand-made truth tables, NOVER against a direct likelihood, composition in GRPO."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_rrr import ParityTask

from selfadapt.models import render_chat
from selfadapt.rewards import REWARDS, RewardContext, build_rewards, parse_reward_specs, registry
from selfadapt.rewards.likelihood import NoverReward, group_ranks, reasoning_perplexity
from selfadapt.rewards.verifier import RetryReward
from selfadapt.rrr import reflect as reflect_mod
from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
from selfadapt.rrr.reflect import retry_messages
from selfadapt.rrr.tasks import CountdownTask, FunctionCallingTask


@pytest.mark.parametrize("specs,expected", [
    (["retry=1"], {"retry": 1.0}),
    (["retry", "nover=0.5"], {"retry": 1.0, "nover": 0.5}),
    ([" nover = 2 "], {"nover": 2.0}),
])
def test_reward_specs(specs, expected):
    assert parse_reward_specs(specs) == expected


@pytest.mark.parametrize("specs,message", [
    (["bogus=1"], "unknown reward 'bogus'"), (["retry=1", "retry=2"], "given twice"),
    (["retry=x"], "not a number"), ([], "at least one"),
])
def test_bad_reward_specs(specs, message):
    with pytest.raises(ValueError, match=message):
        parse_reward_specs(specs)


def test_group_ranks_by_hand():
    assert group_ranks([3.0, 1.0, 2.0], ["a", "a", "a"]) == [0.0, 1.0, 0.5]  # lowest perplexity ranks first
    assert group_ranks([1.0, 1.0], ["a", "a"]) == [0.5, 0.5]
    assert group_ranks([5.0, 9.0, 1.0], ["a", "b", "a"]) == [0.0, 0.5, 1.0]  # a group of one gets 0.5
    assert group_ranks([2.0, 1.0, 1.0, 3.0], ["g"] * 4) == [pytest.approx(1 / 3), pytest.approx(5 / 6),
                                                               pytest.approx(5 / 6), 0.0]


def test_reasoning_perplexity_by_hand():
    assert reasoning_perplexity(-2.0, 2, 1) == pytest.approx(math.e)  # N(1) = 1
    assert reasoning_perplexity(-2.0, 2, 100) == pytest.approx(math.exp(1 / (1 + math.log(100))))
    assert reasoning_perplexity(0.0, 3, 10) == 1.0


def test_references_are_correct_answers():
    cd = CountdownTask(pool=20)
    for q in cd.queries("test"):
        assert cd.verify(q, cd.reference(q)).correct
    fc = FunctionCallingTask()
    for q in fc.queries("test")[:40]:
        assert fc.verify(q, fc.reference(q)).correct


def test_retry_reward_truth_table(tiny, monkeypatch, tmp_path):
    task = ParityTask()
    queries = task.queries("train", 4)
    retries = ["ab", "abc", "", "abcd"]  # even, odd, even, even
    monkeypatch.setattr(reflect_mod, "generate",
                        lambda model, tok, prompts, cfg, seed=None, constraints=None: retries[: len(prompts)])
    ctx = RewardContext(task, tiny.tokenizer, log_path=tmp_path / "r.jsonl", model=tiny.model)
    values = RetryReward(ctx)(["p"] * 4, [[{"content": f"reflection {i}"}] for i in range(4)],
                              query=[json.dumps(q) for q in queries], attempt=["x"] * 4)
    assert values == [1.0, 0.0, 1.0, 1.0]
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["reward"], r["id"], r["value"], r["retry"]) for r in logged] == [
        ("retry", q["id"], v, r) for q, v, r in zip(queries, values, retries)]


def test_a_failed_judge_call_leaves_the_rollout_neutral_not_wrong(tiny, monkeypatch, tmp_path):
    """TinyV asks the judge about retries the verifier rejects; when the call fails, the rollout
    has no verdict: its reward is None (TRL leaves it out of the group's baseline, advantage 0)."""
    from selfadapt.judge import JudgeError

    class FlakyJudge:
        def judge(self, items):
            return [True, JudgeError("timeout")][: len(items)]

    task = ParityTask()
    queries = task.queries("train", 3)
    monkeypatch.setattr(reflect_mod, "generate",
                        lambda model, tok, prompts, cfg, seed=None, constraints=None: ["ab", "abc", "abc"])
    ctx = RewardContext(task, tiny.tokenizer, log_path=tmp_path / "r.jsonl", model=tiny.model, judge=FlakyJudge())
    values = RetryReward(ctx)(["p"] * 3, [[{"content": f"r{i}"}] for i in range(3)],
                              query=[json.dumps(q) for q in queries], attempt=["x"] * 3)
    assert values == [1.0, 1.0, None]  # verifier yes; verifier no, judge yes; verifier no, judge failed
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert logged[2]["value"] is None and "timeout" in logged[2]["judge_error"]


def test_a_reward_without_a_policy_says_so(tiny):
    ctx = RewardContext(ParityTask(), tiny.tokenizer)
    with pytest.raises(RuntimeError, match="no policy"):
        RetryReward(ctx)(["p"], ["r"], query=[json.dumps({"id": "q0", "text": "t"})], attempt=["a"])


def test_nover_reward_against_a_direct_likelihood(tiny, tmp_path):
    task, tok = ParityTask(), tiny.tokenizer
    q = task.queries("train", 1)[0]
    reflections = ["The Mongol army", "silver", "The quick brown fox jumps"]
    ctx = RewardContext(task, tok, log_path=tmp_path / "r.jsonl", model=tiny.model)
    values = NoverReward(ctx)(["p"] * 3, reflections, query=[json.dumps(q)] * 3, attempt=["odd"] * 3)
    perplexities = []
    for r in reflections:  # the reference's log-likelihood after the episode and this reflection, by hand
        p = tok(render_chat(tok, retry_messages(task, q, "odd", r)), add_special_tokens=False)["input_ids"]
        c = tok(task.reference(q), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
        lp = sum(float(logp[len(p) + i - 1, t]) for i, t in enumerate(c))
        perplexities.append(reasoning_perplexity(lp, len(c), len(tok(r, add_special_tokens=False)["input_ids"])))
    assert values == group_ranks(perplexities, ["q0"] * 3)
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["perplexity"] for r in logged] == pytest.approx(perplexities, rel=1e-4)
    assert sorted(values) == [0.0, 0.5, 1.0]


def test_composed_rewards_weight_the_advantage_and_log_every_component(tiny, tmp_path):
    task = ParityTask()
    failures = [{"query": q, "attempt": "The Mongol army"} for q in task.queries("train", 2)]
    cfg = RRRGRPOConfig(num_generations=4, queries_per_step=2, max_steps=1, reflection_tokens=12, retry_tokens=8,
                        lora_r=4, lora_alpha=8, rewards={"retry": 1.0, "nover": 0.5})
    torch.manual_seed(0)
    trainer = make_trainer(tiny.model, tiny.tokenizer, task, failures, cfg, tmp_path / "ckpt",
                           rollouts=tmp_path / "rollouts.jsonl")
    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)
    logged = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    by = {name: torch.tensor([r["value"] for r in logged if r["reward"] == name]) for name in ("retry", "nover")}
    assert len(by["retry"]) == len(by["nover"]) == 8
    total = (by["retry"] + 0.5 * by["nover"]).view(2, 4)
    expected = ((total - total.mean(1, keepdim=True)) / (total.std(1, keepdim=True) + 1e-4)).view(-1)
    assert torch.allclose(batch["advantages"], expected, atol=1e-4)


def test_a_registered_reward_plugs_in(tiny):
    class Brevity:
        __name__ = "brevity"

        def __init__(self, ctx):
            self.ctx = ctx

        def __call__(self, prompts, completions, **columns):
            return [-len(c) / 100 for c in completions]

    REWARDS["brevity"] = Brevity
    try:
        assert "brevity" in registry()
        funcs, weights = build_rewards(parse_reward_specs(["retry=1", "brevity=0.1"]), RewardContext(None, None))
        assert [f.__name__ for f in funcs] == ["retry", "brevity"] and weights == [1.0, 0.1]
        assert funcs[1]([], ["ab", "abcd"]) == [-0.02, -0.04]
        RRRGRPOConfig(rewards={"brevity": 1.0})
    finally:
        del REWARDS["brevity"]
    with pytest.raises(ValueError, match="unknown reward .brevity."):
        RRRGRPOConfig(rewards={"brevity": 1.0})


def test_nover_scores_the_reference_after_the_answer_prefix(tiny, tmp_path):
    class Prefilled(ParityTask):
        def prefix(self, query):
            return "an "

    task, tok = Prefilled(), tiny.tokenizer
    q = task.queries("train", 1)[0]
    ctx = RewardContext(task, tok, model=tiny.model)
    _, rows = NoverReward(ctx).score([q], ["odd"], ["silver"])
    p = tok(render_chat(tok, retry_messages(task, q, "odd", "silver")) + "an ", add_special_tokens=False)["input_ids"]
    c = tok("even answer", add_special_tokens=False)["input_ids"]  # the reference minus the prefix written for it
    with torch.no_grad():
        logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
    lp = sum(float(logp[len(p) + i - 1, t]) for i, t in enumerate(c))
    assert rows[0]["perplexity"] == pytest.approx(reasoning_perplexity(lp, len(c), len(tok("silver")["input_ids"])),
                                                  rel=1e-4)
