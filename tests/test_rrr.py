"""Reflect, Retry, Reward on the tiny model: tasks, failure sets, reflect→retry, GRPO masking."""

from __future__ import annotations

import json

import pytest
import torch

from selfadapt.generation import SamplingConfig
from selfadapt.models import render_chat
from selfadapt.rrr import Verdict
from selfadapt.rrr.failures import FILE, build_failures, load_failures
from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
from selfadapt.rrr.reflect import REFLECT, RETRY, ReflectConfig, accuracy, reflect_and_retry, retry_messages
from selfadapt.rrr.tasks import CountdownTask, FunctionCallingTask, get_task, task_spec
from selfadapt.runs import Run


class ParityTask:
    """A verifier a random model passes about half the time, so GRPO groups get mixed rewards."""

    name = "parity"

    def queries(self, split, n=None):
        return [{"id": f"q{i}", "text": f"Say something {i}"} for i in range(n or 4)]

    def messages(self, query):
        return [{"role": "user", "content": query["text"]}]

    def verify(self, query, response):
        return Verdict(len(response) % 2 == 0, "even" if len(response) % 2 == 0 else "odd")

    def reference(self, query):
        return "an even answer"

    def check(self, query):
        if not isinstance(query, dict) or "text" not in query:
            raise ValueError("needs 'text'")


def test_countdown_task_splits_are_disjoint_and_stable():
    task = CountdownTask(pool=40)
    train, test = task.queries("train"), task.queries("test")
    assert len(train) == 30 and len(test) == 10
    assert not {q["id"] for q in train} & {q["id"] for q in test}
    assert task.queries("test", 3) == test[:3]
    q = test[0]
    assert "<answer>" in task.messages(q)[0]["content"]
    from selfadapt.rrr.countdown import solve

    assert task.verify(q, f"<answer>{solve(tuple(q['numbers']), q['target'])}</answer>").correct
    with pytest.raises(ValueError, match="split"):
        task.queries("dev")


def test_function_calling_task_round_trip():
    task = FunctionCallingTask()
    train, test = task.queries("train"), task.queries("test")
    assert train and test and not {q["id"] for q in train} & {q["id"] for q in test}
    q = test[0]
    msgs = task.messages(q)
    assert msgs[0]["role"] == "system" and q["functions"][0]["name"] in msgs[0]["content"]
    name = next(iter(q["ground_truth"][0]))
    assert not task.verify(q, '{"name": "nope", "arguments": {}}').correct
    assert name in task.verify(q, '{"name": "nope", "arguments": {}}').reason
    with pytest.raises(ValueError, match="function-calling query"):
        task.check({"id": 3})


def test_get_task_rejects_unknown():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("chess")


def test_reflect_and_retry_records(tiny):
    task = ParityTask()
    cfg = ReflectConfig(SamplingConfig(6, 0.0, batch_size=4), SamplingConfig(6, 0.0, batch_size=4))
    records = reflect_and_retry(tiny.model, tiny.tokenizer, task, task.queries("test", 6), cfg)
    assert len(records) == 6
    for r in records:
        if r["first_correct"]:
            assert "reflection" not in r and r["second_correct"]
        else:
            assert set(r) >= {"reflection", "retry", "second_reason"}
            assert r["second_correct"] == (len(r["retry"]) % 2 == 0)
    acc = accuracy(records)
    assert acc["first"] == sum(r["first_correct"] for r in records) / 6 <= acc["second"]


def test_retry_conversation_order():
    task = ParityTask()
    msgs = retry_messages(task, {"id": "a", "text": "Q"}, "wrong", "I should count.")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in msgs] == ["Q", "wrong", REFLECT, "I should count.", f"{RETRY}\n\nQ"]


def test_failure_set_keeps_only_never_solved_and_resumes(tiny, tmp_path, monkeypatch):
    task = ParityTask()
    run = Run.create(tmp_path, "f", {"x": 1})
    sampling = SamplingConfig(5, 1.0, batch_size=8)
    path = build_failures(tiny.model, tiny.tokenizer, task, task.queries("train", 6), run, attempts=3,
                          sampling=sampling, seed=1, chunk=4)
    recs = run.records()
    assert len(recs) == 6 and all(r["attempts"] == 3 for r in recs)
    never = {r["id"] for r in recs if r["solved"] == 0}
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["id"] for line in lines} == never
    assert all(line["task"] == "parity" and len(line["attempt"]) % 2 == 1 for line in lines)
    assert 0 < len(never) < 6  # the seed gives a mixed set, so the filter is really exercised

    import selfadapt.rrr.failures as failures_mod

    monkeypatch.setattr(failures_mod, "attempt", lambda *a, **k: pytest.fail("resumed run regenerated"))
    again = build_failures(tiny.model, tiny.tokenizer, task, task.queries("train", 6), Run.resume(run.path, {"x": 1}),
                           attempts=3, sampling=sampling, seed=1, chunk=4)
    assert again.read_text() == path.read_text()


def test_load_failures_validates(tmp_path):
    good = {"task": "countdown", "id": "a", "query": {"id": "a", "numbers": [1, 2, 3], "target": 6},
            "attempt": "<answer>1</answer>", "reason": "x"}
    f = tmp_path / FILE
    f.write_text(json.dumps(good) + "\n")
    task, recs = load_failures(tmp_path)
    assert task.name == "countdown" and recs == [good]
    for line, message in [("{oops", "line 2: invalid JSON"),
                          (json.dumps({**good, "attempt": 3}), "line 2: expected an object"),
                          (json.dumps({**good, "task": "function-calling"}), "line 2: task"),
                          (json.dumps({**good, "query": {"numbers": ["1"], "target": 6}}), "line 2: a countdown")]:
        f.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(ValueError, match=message) as e:
            load_failures(f)
        assert str(f) in str(e.value)
    f.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_failures(f)
    with pytest.raises(FileNotFoundError, match="build-failures"):
        load_failures(tmp_path / "missing")


@pytest.fixture()
def grpo_trainer(tiny, tmp_path):
    task = ParityTask()
    failures = [{"query": q, "attempt": "The Mongol army"} for q in task.queries("train", 2)]
    cfg = RRRGRPOConfig(num_generations=4, queries_per_step=2, max_steps=1, reflection_tokens=12, retry_tokens=8,
                        lora_r=4, lora_alpha=8, beta=0.04)
    torch.manual_seed(0)
    return make_trainer(tiny.model, tiny.tokenizer, task, failures, cfg, tmp_path / "ckpt",
                        rollouts=tmp_path / "rollouts.jsonl"), tmp_path / "rollouts.jsonl"


def test_only_reflection_tokens_carry_advantage(grpo_trainer, tiny):
    trainer, rollouts = grpo_trainer
    tok = tiny.tokenizer
    rows = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]  # G=4 copies of each query
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)
    logged = [json.loads(line) for line in rollouts.read_text().splitlines()]
    assert len(logged) == 8
    assert {r["reward"] for r in logged} == {"retry"}
    rewards = torch.tensor([r["value"] for r in logged])
    for i, rec in enumerate(logged):
        trained = batch["completion_ids"][i][batch["completion_mask"][i].bool()]
        # the trained completion is exactly the reflection ...
        assert tok.decode(trained, skip_special_tokens=True) == rec["reflection"]
        prompt = tok.decode(batch["prompt_ids"][i][batch["prompt_mask"][i].bool()])
        # ... the failed attempt is prompt (no loss there) and the retry is nowhere in the batch
        assert "The Mongol army" in prompt and prompt.rstrip().endswith("assistant")
        assert REFLECT in prompt and RETRY not in prompt
        assert rec["retry"] not in prompt + tok.decode(batch["completion_ids"][i])
    # group-relative advantages of the retry rewards, one scalar per reflection
    groups = rewards.view(2, 4)
    expected = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).view(-1)
    assert torch.allclose(batch["advantages"], expected, atol=1e-4)
    assert rewards.min() != rewards.max()  # mixed rewards: the advantage is not trivially zero
    # gradients reach only LoRA weights
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which we bypass here
    trainer.compute_loss(trainer.model, batch).backward()
    with_grad = {n for n, p in trainer.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all("lora_" in n for n in with_grad)


def test_one_grpo_step_changes_only_lora_weights(grpo_trainer):
    trainer, rollouts = grpo_trainer
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)
    assert len(rollouts.read_text().splitlines()) == 8
    (times,) = trainer.step_times
    assert times["reflection_generation"] > 0 and times["retry_generation"] > 0 and times["total"] >= sum(
        times[k] for k in ("reflection_generation", "retry_generation", "verify"))


def test_grpo_config_rejects_groups_of_one():
    with pytest.raises(ValueError, match="num_generations"):
        RRRGRPOConfig(num_generations=1)
    with pytest.raises(ValueError, match="retry_temperature"):
        RRRGRPOConfig(retry_temperature=-0.5)
    with pytest.raises(ValueError, match="unknown backend"):
        RRRGRPOConfig(backend="tpu")
    with pytest.raises(ValueError, match="vllm_memory"):
        RRRGRPOConfig(backend="vllm", vllm_memory=1.5)


def test_sampled_retries_reach_the_reward(tiny, tmp_path):
    """--retry-temperature samples the retry inside the reward: with the same reflections,
    two seeds give different retries, where greedy ones would be equal."""
    from selfadapt.rewards.verifier import retry_verdicts

    task = ParityTask()
    failures = [{"query": q, "attempt": "The Mongol army"} for q in task.queries("train", 2)]
    cfg = RRRGRPOConfig(num_generations=2, queries_per_step=2, max_steps=1, reflection_tokens=8, retry_tokens=12,
                        lora_r=4, lora_alpha=8, retry_temperature=1.0)
    trainer = make_trainer(tiny.model, tiny.tokenizer, task, failures, cfg, tmp_path / "ckpt")
    ctx = trainer.reward_context
    assert ctx.retry.temperature == 1.0
    queries, attempts = [f["query"] for f in failures], [f["attempt"] for f in failures]
    outs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        ctx.last_retries = None
        outs.append([row["retry"] for row in retry_verdicts(ctx, queries, attempts, ["Think again."] * 2)])
    assert outs[0] != outs[1]


def test_difficulty_knobs_and_specs():
    two = get_task("countdown:numbers=2,max_target=40")
    qs = two.queries("train", 20)
    assert all(len(q["numbers"]) == 2 and 10 <= q["target"] <= 40 for q in qs)
    assert task_spec(two) == "countdown:numbers=2,max_target=40" and task_spec(get_task("countdown")) == "countdown"
    few = get_task("function-calling:set=multiple,functions=2")
    for q in few.queries("test", 30):
        names = [f["name"] for f in q["functions"]]
        assert len(names) <= 2 and next(iter(q["ground_truth"][0])) in names
    assert len(get_task("function-calling:set=multiple").queries("test", 30)[0]["functions"]) >= 2
    for bad, message in [("countdown:size=2", "not knob=value"), ("countdown:numbers=x", "must be an integer"),
                         ("countdown:numbers=9", "numbers in 2–5"), ("chess:x=1", "unknown task"),
                         ("countdown:numbers", "not knob=value")]:
        with pytest.raises(ValueError, match=message):
            get_task(bad)


def test_failure_file_keeps_the_difficulty(tiny, tmp_path):
    task = get_task("countdown:numbers=2")
    run = Run.create(tmp_path, "f", {})
    path = build_failures(tiny.model, tiny.tokenizer, task, task.queries("train", 2), run, attempts=1,
                          sampling=SamplingConfig(6, 1.0, 1.0, 2))
    loaded, recs = load_failures(path)
    assert task_spec(loaded) == "countdown:numbers=2" and len(recs) == 2


def test_probe_reports_each_difficulty_and_resumes(tiny_dir, tmp_path, monkeypatch):
    from selfadapt.rrr import experiment

    cfg = experiment.ProbeConfig(model=str(tiny_dir), tasks=["countdown:numbers=2", "countdown:numbers=3"],
                                 queries=3, answer_tokens=6, reflection_tokens=6, dtype="float32", device="cpu",
                                 runs_dir=str(tmp_path))
    run, rows = experiment.run_rrr_probe(cfg)
    assert [r["task"] for r in rows] == cfg.tasks and all(r["n"] == 3 for r in rows)
    assert all(r["failed"] == 3 and r["retry"][0] == 0.0 and not r["trainable"] for r in rows)  # a random model
    assert "| countdown:numbers=2 | 3 |" in (run.path / "summary.md").read_text()
    assert (run.path / "probe.png").is_file()
    monkeypatch.setattr(experiment, "reflect_and_retry", lambda *a, **k: pytest.fail("redid finished work"))
    experiment.run_rrr_probe(cfg, resume=str(run.path))
    with pytest.raises(ValueError, match="given twice"):
        experiment.run_rrr_probe(experiment.ProbeConfig(tasks=["countdown", "countdown"]))


def test_probe_band():
    from selfadapt.rrr.experiment import summarize_probe

    recs = [{"condition": "t", "kind": "task", "first_correct": i < 2, "second_correct": i < 2 or i in (5, 6)}
            for i in range(12)]
    (row,) = summarize_probe(recs, ["t"])
    assert row["failed"] == 10 and row["retry"][0] == pytest.approx(0.2) and row["trainable"]
    assert row["first"][0] == pytest.approx(2 / 12) and row["second"][0] == pytest.approx(4 / 12)


def test_rrr_summary_pairs_each_policy_with_the_base_on_the_same_queries():
    from selfadapt.rrr.experiment import rrr_table, summarize_rrr

    def rec(cond, qid, first, second):
        return {"condition": cond, "kind": "task", "id": qid, "first_correct": first, "second_correct": second}

    records = [rec("base", "a", False, False), rec("base", "b", False, True), rec("base", "c", True, True),
               rec("trained", "a", False, True), rec("trained", "b", False, True), rec("trained", "c", True, True)]
    base, trained = summarize_rrr(records, ["base", "trained"])
    assert base["vs_base"] == {}
    d = trained["vs_base"]["second"]
    assert (d["n"], d["wins"], d["ties"], d["losses"]) == (3, 1, 2, 0) and d["mean"] == pytest.approx(1 / 3)
    assert "+33.3" in rrr_table([base, trained]) and "1/2/0" in rrr_table([base, trained])


def test_rrr_summary_pairs_the_reference_likelihood_on_queries_both_models_failed():
    from selfadapt.rrr.experiment import rrr_table, summarize_rrr

    def rec(cond, qid, logp=None):
        r = {"condition": cond, "kind": "task", "id": qid, "first_correct": logp is None, "second_correct": False}
        return r | ({"reference_logprob": logp} if logp is not None else {})

    records = [rec("base", "a", -2.0), rec("base", "b", -1.0), rec("base", "c"),
               rec("trained", "a", -1.5), rec("trained", "b"), rec("trained", "c", -0.1)]
    base, trained = summarize_rrr(records, ["base", "trained"])
    assert base["reference"][0] == pytest.approx(-1.5) and trained["reference"][0] == pytest.approx(-0.8)
    d = trained["vs_base"]["reference"]  # only query a failed for both
    assert (d["n"], d["wins"], d["losses"]) == (1, 1, 0) and d["mean"] == pytest.approx(0.5)
    assert "+0.500" in rrr_table([base, trained])


def test_eval_scores_the_reference_after_each_reflection(tiny, tmp_path):
    from selfadapt.rrr import experiment

    task, tok = ParityTask(), tiny.tokenizer
    queries = task.queries("test", 10)
    cfg = experiment.RRREvalConfig(answer_tokens=5, reflection_tokens=5, chunk=10)
    run = Run.create(tmp_path, "e", {})
    bar = experiment.progress_bar()
    experiment._reflect_into_run(run, "base", tiny, task, queries, cfg, bar, bar.add_task("t", total=10), dense=True)
    recs = run.records()
    failed = [r for r in recs if not r["first_correct"]]
    assert failed and len(failed) < len(recs)
    assert all("reference_logprob" not in r for r in recs if r["first_correct"])
    for r in failed:  # the reference's mean per-token log-likelihood as the retry, computed by hand
        q = next(q for q in queries if q["id"] == r["id"])
        p = tok(render_chat(tok, retry_messages(task, q, r["attempt"], r["reflection"])),
                add_special_tokens=False)["input_ids"]
        c = tok(task.reference(q), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
        lp = sum(float(logp[len(p) + i - 1, t]) for i, t in enumerate(c)) / len(c)
        assert r["reference_logprob"] == pytest.approx(lp, rel=1e-4)


def test_countdown_shots_demonstrate_the_format():
    from selfadapt.rrr.countdown import verify
    from selfadapt.rrr.tasks import COUNTDOWN_SHOTS

    for problem, answer in COUNTDOWN_SHOTS:  # every demonstration is a correct answer
        assert verify(problem, f"<answer>{answer}</answer>").correct
    task = get_task("countdown:numbers=2,shots=2")
    q = task.queries("test", 1)[0]
    turns = task.messages(q)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[1]["content"] == "<answer>4 * 7</answer>" and str(q["target"]) in turns[-1]["content"]
    assert task_spec(task) == "countdown:numbers=2,shots=2"
    with pytest.raises(ValueError, match="shots must be 0–3"):
        get_task("countdown:shots=4")


def test_function_calling_shot_shows_the_reply_format():
    plain, shot = get_task("function-calling"), get_task("function-calling:shots=1")
    q = shot.queries("test", 1)[0]
    assert shot.messages(q)[0]["content"].startswith(plain.messages(q)[0]["content"])
    assert '{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}' in shot.messages(q)[0]["content"]
    assert task_spec(shot) == "function-calling:shots=1"
    with pytest.raises(ValueError, match="shots, prefill and constrain must be 0 or 1"):
        get_task("function-calling:shots=2")


def test_prefill_starts_every_answer_and_retry(tiny, monkeypatch):
    from selfadapt.rrr import reflect as reflect_mod
    from selfadapt.rrr.reflect import attempt

    task = get_task("countdown:numbers=2,prefill=1")
    q = task.queries("train", 1)[0]
    seen = []

    def fake_generate(model, tok, prompts, cfg, seed=None, constraints=None):
        seen.extend(prompts)
        return ["1 + 2</answer>"] * len(prompts)

    monkeypatch.setattr(reflect_mod, "generate", fake_generate)
    assert attempt(tiny.model, tiny.tokenizer, task, [q], SamplingConfig(8, 0.0)) == ["<answer>1 + 2</answer>"]
    assert seen[0].endswith("<|im_start|>assistant\n<answer>")  # the prefix is written for the model
    records = reflect_and_retry(tiny.model, tiny.tokenizer, task, [q], ReflectConfig())
    assert records[0]["retry"] == "<answer>1 + 2</answer>" and seen[-1].endswith("<answer>")
    assert get_task("function-calling:prefill=1").prefix(q) == '{"name": "'
    with pytest.raises(ValueError, match="prefill must be 0 or 1"):
        get_task("countdown:prefill=2")


def test_a_resumed_training_run_regenerates_rollouts_after_its_last_checkpoint(tiny_dir, tmp_path):
    from selfadapt.rrr.experiment import RRRTrainConfig, run_rrr_train

    task = CountdownTask(pool=40)
    failures = tmp_path / "failures.jsonl"
    failures.write_text("".join(json.dumps({"task": "countdown", "id": q["id"], "query": q, "attempt": "no"}) + "\n"
                                for q in task.queries("train", 2)))
    grpo = RRRGRPOConfig(num_generations=2, queries_per_step=1, max_steps=1, reflection_tokens=4, retry_tokens=4,
                         lora_r=2, lora_alpha=4, save_steps=1)
    cfg = RRRTrainConfig(failures=str(failures), model=str(tiny_dir), grpo=grpo, dtype="float32", device="cpu",
                         runs_dir=str(tmp_path / "runs"))
    run = Run.create(tmp_path / "runs", "rrr-train-countdown", cfg)
    stale = {"step": 0, "reward": "retry", "id": "stale", "value": 0.0}
    (run.path / "rollouts.jsonl").write_text(json.dumps(stale) + "\n")  # killed before its first checkpoint
    run_rrr_train(cfg, resume=str(run.path))
    rows = [json.loads(line) for line in (run.path / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["id"] != "stale" for r in rows)
    assert (run.path / "policy" / "adapter_config.json").is_file()


# --- constrained answers (the tasks' ``constrain`` knob) ---

def _accepts(tokenizer, grammar: str, text: str) -> bool:
    from selfadapt.constrained import GrammarConstraint

    return GrammarConstraint(tokenizer, grammar).accepts(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_countdown_grammar_is_exactly_the_expressions_using_each_number_once(tiny_tokenizer):
    from selfadapt.constrained import lark_grammar
    from selfadapt.rrr.countdown import answer_grammar, solve

    g = lark_grammar(answer_grammar((3, 5, 5)))
    for ok in ("<answer>3 * (5 + 5)</answer>", "<answer>(5 - 3) * 5</answer>", "<answer>((5 / 5) + 3)</answer>",
               f"<answer>{solve((3, 5, 5), 13)}</answer>"):
        assert _accepts(tiny_tokenizer, g, ok), ok
    for bad in ("<answer>3 * 5</answer>",  # a number left out
                "<answer>3 * (5 + 5) + 3</answer>",  # one used twice
                "<answer>3 * (5 + 7)</answer>",  # not given
                "<answer>3 ** (5 + 5)</answer>", "<answer>3*(5+5)</answer>", "3 * (5 + 5)", "<answer>3 * (5 + 5)"):
        assert not _accepts(tiny_tokenizer, g, bad), bad


def test_constrained_countdown_answers_always_use_the_given_numbers(tiny):
    """Sampled freely at temperature 1 with and without the prefill, every attempt is an
    expression over exactly the instance's numbers: only the target can be missed."""
    from selfadapt.rrr.countdown import evaluate, extract_answer
    from selfadapt.rrr.reflect import attempt

    for spec in ("countdown:numbers=3,constrain=1", "countdown:numbers=4,constrain=1,prefill=1"):
        task = get_task(spec)
        queries = task.queries("train", 6)
        for seed in range(3):
            outs = attempt(tiny.model, tiny.tokenizer, task, queries,
                           SamplingConfig(max_new_tokens=64, temperature=1.0, batch_size=6), seed=seed)
            for q, out in zip(queries, outs):
                _, used = evaluate(extract_answer(out))
                assert sorted(used) == sorted(q["numbers"]), out
                assert task.verify(q, out).reason.startswith(("equals", "correct")), out
        assert get_task(task_spec(task)) == task  # the knob survives the run records


def test_call_grammar_accepts_the_gold_call_of_every_shipped_task(tiny_tokenizer):
    task = get_task("function-calling:constrain=1")
    rejected = [q["id"] for q in task.queries("train") + task.queries("test")
                if not _accepts(tiny_tokenizer, task.grammar(q), task.reference(q))]
    # The one exception is in the data: its only non-empty accepted "venue" is `true` for a string
    # parameter. Leaving the optional venue out is also accepted, and the grammar writes that.
    assert rejected == ["simple_python_307"]
    q = next(q for q in task.queries("train") + task.queries("test") if q["id"] == "simple_python_307")
    call = '{"name": "game_result.get_winner", "arguments": {"teams": ["Lakers", "Clippers"], "date": "2021-01-28"}}'
    assert _accepts(tiny_tokenizer, task.grammar(q), call) and task.verify(q, call).correct


def test_call_grammar_rejects_what_the_functions_do_not_declare(tiny_tokenizer):
    task = get_task("function-calling:constrain=1")
    q = next(q for q in task.queries("train") + task.queries("test") if q["functions"][0]["name"] ==
             "calculate_triangle_area")
    g = task.grammar(q)
    assert _accepts(tiny_tokenizer, g, '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}')
    for bad in ('{"name": "triangle_area", "arguments": {"base": 10, "height": 5}}',  # not offered
                '{"name": "calculate_triangle_area", "arguments": {"base": 10}}',  # required height missing
                '{"name": "calculate_triangle_area", "arguments": {"base": "10", "height": 5}}',  # declared integer
                '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5, "color": "red"}}',
                '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}} Sure!'):
        assert not _accepts(tiny_tokenizer, g, bad), bad
    # With the prefill, the constraint reads the prefix first and the model continues it.
    from selfadapt.constrained import GrammarConstraint

    c = GrammarConstraint(tiny_tokenizer, g, prefix='{"name": "')
    assert c.accepts(tiny_tokenizer('calculate_triangle_area", "arguments": {"base": 1, "height": 2}}',
                                    add_special_tokens=False)["input_ids"])


def test_probe_can_sample_reflections_and_retries_as_grpo_does(tiny):
    """Greedy first attempts are the same for every seed; with sampled reflections and retries
    (the probe's --reflection-temperature/--retry-temperature) the retries are not."""
    task = get_task("countdown:numbers=3,constrain=1")
    queries = task.queries("train", 4)
    greedy = SamplingConfig(max_new_tokens=24, temperature=0.0, batch_size=4)
    cfg = ReflectConfig(greedy, SamplingConfig(max_new_tokens=8, temperature=1.0, batch_size=4),
                        retry=SamplingConfig(max_new_tokens=24, temperature=1.0, batch_size=4))
    a, b = (reflect_and_retry(tiny.model, tiny.tokenizer, task, queries, cfg, seed=s) for s in (0, 1))
    assert [r["attempt"] for r in a] == [r["attempt"] for r in b]
    assert [r.get("retry") for r in a] != [r.get("retry") for r in b]


def test_retry_grammar_rules_out_the_failed_value(tiny_tokenizer):
    from selfadapt.constrained import lark_grammar
    from selfadapt.rrr.countdown import evaluate, expressions, retry_grammar

    for numbers, count in (((5, 9), 16), ((3, 5, 7), 384)):
        exprs = expressions(numbers)
        assert len(exprs) == count
        for text, value in exprs.items():  # each is what the verifier computes, over exactly the numbers
            assert value is None or (evaluate(text)[0] == value and sorted(evaluate(text)[1]) == sorted(numbers))
    g = lark_grammar(retry_grammar((5, 9), "5 * 9"))
    for bad in ("<answer>5 * 9</answer>", "<answer>9 * 5</answer>", "<answer>(5 * 9)</answer>"):
        assert not _accepts(tiny_tokenizer, g, bad), bad
    for ok in ("<answer>5 + 9</answer>", "<answer>9 - 5</answer>", "<answer>(9 / 5)</answer>"):
        assert _accepts(tiny_tokenizer, g, ok), ok
    # An attempt without an expression rules nothing out but division by zero.
    free = lark_grammar(retry_grammar((3, 3, 5), None))
    assert _accepts(tiny_tokenizer, free, "<answer>3 * (3 + 5)</answer>")
    assert not _accepts(tiny_tokenizer, free, "<answer>5 / (3 - 3)</answer>")


def test_constrain_2_retries_never_repeat_the_failed_value(tiny):
    from selfadapt.rrr.countdown import evaluate, extract_answer

    task = get_task("countdown:numbers=3,constrain=2,prefill=1")
    queries = task.queries("train", 6)
    greedy = SamplingConfig(max_new_tokens=32, temperature=0.0, batch_size=6)
    records = reflect_and_retry(tiny.model, tiny.tokenizer, task, queries, ReflectConfig(greedy, greedy), seed=0)
    failures = [r for r in records if not r["first_correct"]]
    assert failures
    for r in failures:
        assert evaluate(extract_answer(r["retry"]))[0] != evaluate(extract_answer(r["attempt"]))[0]
    with pytest.raises(ValueError, match="constrain"):
        get_task("function-calling:constrain=2")


def test_grpo_reflections_ignore_the_checkpoints_generation_config(grpo_trainer, tiny):
    """TRL sets temperature, top_p, top_k, min_p and repetition_penalty and leaves every other
    field to the checkpoint's generation_config; ours sets them all."""
    trainer, _ = grpo_trainer
    tiny.model.generation_config.update(typical_p=0.2, no_repeat_ngram_size=2, min_p=0.5, epsilon_cutoff=0.1)
    kw = trainer.generation_kwargs
    assert (kw["typical_p"], kw["no_repeat_ngram_size"], kw["min_p"], kw["epsilon_cutoff"]) == (1.0, 0, 0.0, 0.0)
    assert kw["repetition_penalty"] == 1.0 and kw["top_k"] == 0
    assert trainer.generation_config.typical_p == 1.0
    # and the loss is what we tested, not whatever TRL's default has become
    assert (trainer.args.loss_type, trainer.args.num_iterations, trainer.args.mask_truncated_completions) == (
        "dapo", 1, False)


def test_full_fine_tuning_moves_the_weights_at_a_small_learning_rate(tiny_dir, tmp_path):
    """--lora-r 0 loaded the model in bf16 and TRL ran AdamW on the bf16 weights: at lr 1e-6 a
    weight of 0.3 moves by ~1e-6, under bf16's spacing, so the weights never changed. (NOVER: a dense
    reward, so a group's advantages are not all zero.)"""
    from safetensors.torch import load_file

    from selfadapt.rrr.experiment import RRRTrainConfig, run_rrr_train

    task = CountdownTask(pool=40)
    failures = tmp_path / "failures.jsonl"
    failures.write_text("".join(json.dumps({"task": "countdown", "id": q["id"], "query": q, "attempt": "no"}) + "\n"
                                for q in task.queries("train", 2)))
    grpo = RRRGRPOConfig(num_generations=2, queries_per_step=1, max_steps=2, reflection_tokens=4, retry_tokens=4,
                         lora_r=0, learning_rate=1e-6, beta=0.0, save_steps=10, rewards={"nover": 1.0})
    cfg = RRRTrainConfig(failures=str(failures), model=str(tiny_dir), grpo=grpo, dtype="bfloat16", device="cpu",
                         runs_dir=str(tmp_path / "runs"))
    out = run_rrr_train(cfg)
    before = load_file(tiny_dir / "model.safetensors")
    after = load_file(out / "policy" / "model.safetensors")
    key = "model.layers.0.mlp.down_proj.weight"
    changed = (after[key] != before[key].to(after[key].dtype)).float().mean()  # bf16 rounding alone is no change
    assert changed > 0.5
