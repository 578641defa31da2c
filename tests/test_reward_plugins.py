"""LASER, LASER-D, DISCO, TinyV on retries and mixed-domain runs: hand-made truth tables and
the trainer's own advantages."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_rrr import ParityTask

from selfadapt.restem import self_edit_rewards
from selfadapt.rewards import RewardContext, build_rewards
from selfadapt.rewards.disco import disco_scales, domain_weights, self_consistency
from selfadapt.rewards.length import AdaptiveTarget, LaserDReward, bucket, laser
from selfadapt.rewards.verifier import RetryReward
from selfadapt.rrr import Verdict
from selfadapt.rrr import reflect as reflect_mod
from selfadapt.rrr.failures import load_failures
from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
from selfadapt.rrr.tasks import CountdownTask, MixedTask


def test_laser_truth_table():
    assert laser([10, 10, 80, 80], [True, False, True, False], 64) == [1.0, 0.0, 0.0, 0.0]
    assert laser([64, 65], [True, True], 64) == [1.0, 0.0]  # at most the target
    assert laser([30, 30], [True, True], [16, 32]) == [0.0, 1.0]  # a target per completion


def test_buckets():
    assert [bucket(a) for a in (1.0, 2 / 3, 0.5, 1 / 3, 0.25, 0.0)] == ["easy", "easy", "medium", "medium",
                                                                       "hard", "hard"]


def test_laser_d_targets_follow_a_hand_made_sequence_of_groups():
    t = AdaptiveTarget(grid=(16, 32, 64, 128), coverage=1.0, window=8)
    assert t.target("easy") == 128  # unseen: the longest
    # An easy group (3 of 4 correct), the short ones correct: 4 · P(correct ∧ len ≤ 16) = 1 → 16.
    assert t.update([[(10, True), (30, True), (60, True), (100, False)]]) == ["easy"]
    assert t.target("easy") == 16
    # A hard group, its one success 50 tokens long: only 64 keeps an expected correct one.
    assert t.update([[(50, True), (10, False), (20, False), (30, False)]]) == ["hard"]
    assert (t.target("hard"), t.target("easy")) == (64, 16)
    # The easy bucket's short successes turn long: the window of 8 forgets the old group, the target grows.
    t.update([[(120, True), (120, True), (120, True), (10, False)]])
    assert t.target("easy") == 32  # window: (10 ✓, 30 ✓, 60 ✓, 100 ✗, 120 ✓ ×3, 10 ✗): 4 · 2/8 ≥ 1 at 32
    t.update([[(120, True), (120, True), (120, True), (10, False)]])
    assert t.target("easy") == 128
    # A bucket with no success within the grid keeps the longest target.
    t.update([[(10, False), (20, False), (30, True), (200, True)]])  # medium (2 of 4)
    assert t.target("medium") == 32
    with pytest.raises(ValueError, match="increasing"):
        AdaptiveTarget(grid=(32, 16))


def _episode(task, n, reflections):
    queries = task.queries("train", n)
    return dict(prompts=["p"] * len(reflections), completions=reflections,
                query=[json.dumps(queries[i % n]) for i in range(len(reflections))], attempt=["x"] * len(reflections))


def test_laser_rewards_share_one_retry_per_rollout(tiny, monkeypatch, tmp_path):
    calls = []

    def fake_generate(model, tok, prompts, cfg, seed=None, constraints=None):
        calls.append(len(prompts))
        return ["ab", "abc", "ab", "ab"][: len(prompts)]  # correct, wrong, correct, correct

    monkeypatch.setattr(reflect_mod, "generate", fake_generate)
    tok = tiny.tokenizer
    reflections = ["a", "The Mongol army seized the town of Otrar in 1219.", "silver", "The Mongol army seized"]
    lengths = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in reflections]
    ctx = RewardContext(ParityTask(), tok, log_path=tmp_path / "r.jsonl", model=tiny.model,
                        laser_target=sorted(lengths)[1])
    funcs, _ = build_rewards({"retry": 1.0, "laser": 0.5}, ctx)
    batch = _episode(ParityTask(), 4, reflections)
    assert funcs[0](**batch) == [1.0, 0.0, 1.0, 1.0]
    assert funcs[1](**batch) == [1.0 if ok and n <= ctx.laser_target else 0.0
                                 for ok, n in zip([True, False, True, True], lengths)]
    assert calls == [4]  # laser reused the retries that retry generated


def test_laser_d_reward_uses_the_groups_bucket(tiny, monkeypatch):
    monkeypatch.setattr(reflect_mod, "generate",
                        lambda model, tok, prompts, cfg, seed=None, constraints=None: ["ab", "ab", "abc", "abc"])
    ctx = RewardContext(ParityTask(), tiny.tokenizer, model=tiny.model, length_grid=(2, 4, 200))
    reward = LaserDReward(ctx)
    # One query, four reflections: two correct retries (medium bucket).
    values, rows = reward.score([{"id": "q0", "text": "t"}] * 4, ["x"] * 4, ["a", "The Mongol army seized", "b", "c"])
    assert {r["bucket"] for r in rows} == {"medium"}
    target = rows[0]["target"]
    assert values == laser([r["length"] for r in rows], [True, True, False, False], target)
    assert target == reward.targets.target("medium")


def test_retry_reward_with_a_tinyv_judge_records_flips(tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(reflect_mod, "generate",
                        lambda model, tok, prompts, cfg, seed=None, constraints=None: ["ab", "abc", "abcde"])
    asked = []

    class Judge:
        def judge(self, items):
            asked.extend(items)
            return [r == "abc" for _, _, r in items]  # the judge accepts one rejected retry

    ctx = RewardContext(ParityTask(), tiny.tokenizer, log_path=tmp_path / "r.jsonl", model=tiny.model, judge=Judge())
    values = RetryReward(ctx)(**_episode(ParityTask(), 3, ["r0", "r1", "r2"]))
    assert values == [1.0, 1.0, 0.0]
    assert [r for _, _, r in asked] == ["abc", "abcde"]  # only the verifier's negatives
    assert asked[0][1] == "an even answer"  # judged against the task's reference
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["rule"], r["judge"], r["flip"]) for r in logged] == [(True, None, False), (False, True, True),
                                                                   (False, False, False)]


def test_disco_weights_on_an_imbalanced_batch():
    w = domain_weights(["countdown"] * 3 + ["function-calling"])
    assert w == {"countdown": pytest.approx(math.log(1 + 4 / 3)), "function-calling": pytest.approx(math.log(5))}
    assert domain_weights(["a"] * 3 + ["b"], "inverse") == {"a": pytest.approx(4 / 3), "b": pytest.approx(4.0)}
    assert self_consistency([1, 1, 1, 1]) == 1.0 and self_consistency([1, 0, 1, 0]) == 0.5
    assert self_consistency([1, 0, 0, 0]) == 0.75 and self_consistency([0.1, 0.2, 0.3, 0.4]) == 0.25
    scales = disco_scales([1, 0, 1, 0, 0, 0, 0, 0], ["countdown"] * 4 + ["function-calling"] * 4, 4, w, eps=0.1)
    assert scales == pytest.approx([w["countdown"] / 0.6] * 4 + [w["function-calling"] / 1.1] * 4)
    with pytest.raises(ValueError, match="do not form groups"):
        disco_scales([1, 0, 1], ["a"] * 3, 2, {"a": 1.0})
    with pytest.raises(ValueError, match="unknown DISCO domain weight"):
        domain_weights(["a"], "sqrt")
    with pytest.raises(ValueError, match="unknown DISCO"):
        RRRGRPOConfig(disco="sqrt")


class Even(ParityTask):
    name = "even"


class Odd(ParityTask):
    name = "odd"

    def verify(self, query, response):
        return Verdict(len(response) % 2 == 1, "odd")


def test_disco_scales_the_trainers_advantages(tiny, tmp_path):
    task = MixedTask({"even": Even(), "odd": Odd()})
    failures = [{"task": spec, "query": {**q, "task": spec, "id": f"{spec}-{q['id']}"}, "attempt": "The Mongol army"}
                for spec, n in (("even", 3), ("odd", 1)) for q in ParityTask().queries("train", n)]
    cfg = RRRGRPOConfig(num_generations=4, queries_per_step=2, max_steps=1, reflection_tokens=12, retry_tokens=8,
                        lora_r=4, lora_alpha=8, disco="log", disco_eps=0.1)
    torch.manual_seed(0)
    trainer = make_trainer(tiny.model, tiny.tokenizer, task, failures, cfg, tmp_path / "ckpt",
                           rollouts=tmp_path / "rollouts.jsonl")
    assert trainer.disco == domain_weights(["even"] * 3 + ["odd"])
    rows = [trainer.train_dataset[i] for i in (0, 3) for _ in range(4)]  # one even group, one odd group
    assert [r["domain"] for r in rows] == ["even"] * 4 + ["odd"] * 4
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)
    raw = torch.tensor([json.loads(line)["value"] for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()])
    scale = torch.tensor(disco_scales(raw.tolist(), [r["domain"] for r in rows], 4, trainer.disco, 0.1))
    scaled = (raw * scale).view(2, 4)
    expected = (scaled - scaled.mean(1, keepdim=True)).view(-1)  # no division by the group's std
    assert torch.allclose(batch["advantages"], expected, atol=1e-5)
    # what TRL logs as the reward is the reward (the retries' success rate), not DISCO's scaled value
    logged = trainer._metrics["train"]
    assert logged["rewards/retry/mean"][-1] == pytest.approx(raw.mean().item())
    assert logged["reward"][-1] == pytest.approx(raw.mean().item())
    assert logged["disco/reward"][-1] == pytest.approx((raw * scale).mean().item())


def test_mixed_task_routes_each_query():
    task = MixedTask({"even": Even(), "odd": Odd()})
    assert task.verify({"task": "even", "id": "a", "text": "t"}, "ab").correct
    assert task.verify({"task": "odd", "id": "a", "text": "t"}, "abc").correct
    assert [q["task"] for q in task.queries("train", 2)] == ["even", "even", "odd", "odd"]
    with pytest.raises(ValueError, match="needs 'task'"):
        task.messages({"id": "a", "text": "t"})
    with pytest.raises(ValueError, match="at least two"):
        MixedTask({"even": Even()})


def _failures_file(path, task, queries):
    path.write_text("".join(json.dumps({"task": task, "id": q["id"], "query": q, "attempt": "wrong"}) + "\n"
                            for q in queries))
    return path


def test_failure_files_of_two_tasks_make_a_mixed_run(tmp_path):
    cd = CountdownTask()
    a = _failures_file(tmp_path / "a.jsonl", "countdown", cd.queries("train", 3))
    b = _failures_file(tmp_path / "b.jsonl", "countdown:numbers=2", CountdownTask(numbers=2).queries("train", 1))
    task, failures = load_failures([a, b])
    assert isinstance(task, MixedTask) and set(task.tasks) == {"countdown", "countdown:numbers=2"}
    assert [f["query"]["task"] for f in failures] == ["countdown"] * 3 + ["countdown:numbers=2"]
    assert all(task.verify(f["query"], cd.reference(f["query"]) if f["task"] == "countdown"
                           else task.reference(f["query"])).correct for f in failures)
    single, _ = load_failures([a, a])
    assert isinstance(single, CountdownTask)
    with pytest.raises(ValueError, match="no failure dataset"):
        load_failures([])


def test_laser_bonus_on_self_edits():
    recs = [{"key": f"s{j}", "condition": "selfedit", "item": "p0", "j": j, "gain": g, "selfedit": text}
            for j, (g, text) in enumerate([(0.2, "a b c"), (0.1, "a"), (-0.1, "a")])]
    plain = self_edit_rewards(recs)
    fixed = self_edit_rewards(recs, laser_bonus=0.5, laser_target=2)
    assert fixed == {"p0": {0: pytest.approx(0.2), 1: pytest.approx(0.6), 2: pytest.approx(-0.1)}}
    assert plain["p0"][0] > plain["p0"][1] and fixed["p0"][1] > fixed["p0"][0]  # the short helpful edit wins
    # LASER-D: 2 of 3 helped (easy); 3 · P(helped ∧ len ≤ 1) = 1, so the target is 1 word.
    adaptive = self_edit_rewards(recs, laser_bonus=0.5, grid=(1, 2, 4))
    assert adaptive == fixed


TRL_REWARDS = '''
seen = []


def brevity(prompts, completions, **kwargs):  # as TRL's docs write a reward function
    seen.append(kwargs)
    return [-len(c[-1]["content"]) / 100 for c in completions]


def named(prompts, completions, query, task):  # no **kwargs: only what it names
    return [float(task.name == "parity")] * len(completions)


def some_none(prompts, completions, **kwargs):  # TRL: None is "no reward for this completion"
    return [None] + [1.0] * (len(completions) - 1)


def all_none(prompts, completions, **kwargs):
    return [None] * len(completions)


def too_few(prompts, completions, **kwargs):
    return [1.0]


def forgot_to_return(prompts, completions, **kwargs):
    pass


def words(prompts, completions, **kwargs):
    return ["good"] * len(completions)
'''


def test_a_reward_function_as_trl_writes_it_loads_from_a_file_spec(tiny, tmp_path):
    from selfadapt.rewards import parse_reward_specs

    path = tmp_path / "my_rewards.py"
    path.write_text(TRL_REWARDS)
    ctx = RewardContext(ParityTask(), tiny.tokenizer, log_path=tmp_path / "r.jsonl", model=tiny.model)
    weights = parse_reward_specs([f"{path}:brevity=0.5", f"{path}:named", f"{path}:some_none"])
    funcs, w = build_rewards(weights, ctx)
    assert w == [0.5, 1.0, 1.0] and [f.__name__ for f in funcs] == ["brevity", "named", "some_none"]
    batch = _episode(ParityTask(), 2, [[{"role": "assistant", "content": t}] for t in ("ab", "abcd")])

    class State:
        global_step = 3

    assert funcs[0](**batch, trainer_state=State()) == [-0.02, -0.04]
    assert funcs[1](**batch) == [1.0, 1.0]
    assert funcs[2](**batch) == [None, 1.0]
    (kwargs,) = funcs[0].func.__globals__["seen"]
    assert kwargs["query"] == batch["query"] and kwargs["attempt"] == ["x", "x"]  # the dataset's columns
    assert kwargs["task"] is ctx.task and kwargs["tokenizer"] is ctx.tokenizer and kwargs["model"] is tiny.model
    assert kwargs["trainer_state"].global_step == 3
    logged = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["step"], r["reward"], r["value"]) for r in logged[:2]] == [(3, "brevity", -0.02), (3, "brevity", -0.04)]
    assert logged[0]["id"] == json.loads(batch["query"][0])["id"]
    for name, message in [("all_none", "all_none returned None for all 2 completions"),
                          ("too_few", "too_few returned 1 values for 2 completions"),
                          ("forgot_to_return", "forgot_to_return returned NoneType, not a list"),
                          ("words", "words returned 'good' .str.")]:
        (func,), _ = build_rewards(parse_reward_specs([f"{path}:{name}"]), ctx)
        with pytest.raises(ValueError, match=message):
            func(**batch)


def test_a_trl_reward_function_trains_in_the_grpo_trainer(tiny, tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(TRL_REWARDS)
    failures = [{"task": "parity", "query": q, "attempt": "The Mongol army"} for q in ParityTask().queries("train", 2)]
    cfg = RRRGRPOConfig(num_generations=2, queries_per_step=2, max_steps=1, reflection_tokens=6, retry_tokens=4,
                        lora_r=4, lora_alpha=8, rewards={"retry": 1.0, f"{path}:brevity": 0.5})
    trainer = make_trainer(tiny.model, tiny.tokenizer, ParityTask(), failures, cfg, tmp_path / "ckpt",
                           rollouts=tmp_path / "rollouts.jsonl")
    assert trainer.reward_func_names == ["retry", "brevity"]
    trainer.model.train()
    trainer._generate_and_score_completions([trainer.train_dataset[i] for i in (0, 0, 1, 1)])
    logged = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    brevity = [r["value"] for r in logged if r["reward"] == "brevity"]
    assert len(brevity) == 4 and all(v <= 0 for v in brevity)
    assert trainer._metrics["train"]["rewards/brevity/mean"][-1] == pytest.approx(sum(brevity) / 4, abs=1e-6)
