import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import selfadapt.restem as restem
import selfadapt.workers as workers_mod
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.experiment import KnowledgeEvalConfig, run_knowledge_eval
from selfadapt.knowledge.probe import ProbedDomain, probe_passages
from selfadapt.knowledge.train import KnowledgeTrainConfig, run_knowledge_training
from selfadapt.lora import LoRAConfig
from selfadapt.restem import (
    PolicySFTConfig,
    ReSTEMConfig,
    any_positive,
    best_of_k,
    policy_of_round,
    run_restem,
    select_winners,
    self_edit_rewards,
    sft_examples,
    sft_policy,
)
from selfadapt.runs import Run


def test_winner_rules():
    assert best_of_k([0.1, 0.3, -0.2]) == [1]
    assert best_of_k([0.2, 0.2]) == [0]
    assert best_of_k([0.0, -0.1]) == []  # no gain, no winner
    assert any_positive([0.1, 0.0, 0.2, -1.0]) == [0, 2]
    with pytest.raises(ValueError, match="unknown winner rule"):
        select_winners({}, "top3")


def test_rewards_average_seeds_and_skip_failed_items():
    recs = [{"condition": "selfedit", "item": "p0", "j": 0, "gain": 0.2},
            {"condition": "selfedit", "item": "p0", "j": 0, "gain": 0.0},
            {"condition": "selfedit", "item": "p0", "j": 1, "gain": -0.4},
            {"condition": "selfedit", "item": "p1", "j": 0, "gain": None},  # item error
            {"condition": "base", "item": "p0", "j": 0, "gain": None}]
    rewards = self_edit_rewards(recs)
    assert rewards == {"p0": {0: pytest.approx(0.1), 1: -0.4}}
    assert select_winners(rewards, "best") == {"p0": [0]}
    assert select_winners({"p0": {0: 0.1, 1: 0.3}}, "positive") == {"p0": [0, 1]}


def test_forgetting_penalty_subtracts_the_probe_drop():
    recs = [{"key": "b", "condition": "base", "item": "p0", "j": 0, "gain": None, "extra": {"probe": 0.5}},
            {"key": "s0", "condition": "selfedit", "item": "p0", "j": 0, "gain": 0.2, "extra": {"probe": 0.3}},
            {"key": "s1", "condition": "selfedit", "item": "p0", "j": 1, "gain": 0.1, "extra": {"probe": 0.5}}]
    assert self_edit_rewards(recs) == {"p0": {0: pytest.approx(0.2), 1: pytest.approx(0.1)}}
    penalised = self_edit_rewards(recs, forgetting_penalty=1.0)
    assert penalised == {"p0": {0: pytest.approx(0.0), 1: pytest.approx(0.1)}}  # the eraser loses its lead
    assert select_winners(penalised, "best") == {"p0": [1]}
    with pytest.raises(ValueError, match="s0: a forgetting penalty needs the probe"):
        self_edit_rewards([recs[1]], forgetting_penalty=1.0)


def test_probed_domain_keeps_the_score_and_adds_the_probe(tiny, passages):
    inner = KnowledgeDomain(tiny.tokenizer)
    recall, reading = probe_passages()
    probed = ProbedDomain(inner, recall[:1], reading[:2])
    ev, plain = probed.evaluate(tiny.model, tiny.tokenizer, passages[0]), inner.evaluate(tiny.model, tiny.tokenizer,
                                                                                        passages[0])
    assert ev.score == pytest.approx(plain.score)
    assert 0 < ev.extra["probe_recall"] < 1 and 0 < ev.extra["probe_reading"] < 1
    assert ev.extra["probe"] == pytest.approx((ev.extra["probe_recall"] + ev.extra["probe_reading"]) / 2)
    assert probed.selfedit_prompt(passages[0]) == inner.selfedit_prompt(passages[0])


def test_training_with_a_forgetting_penalty_never_trains_on_the_probe(train_cfg, tmp_path, passages_file):
    recall, _ = probe_passages()
    pool = json.loads(passages_file.read_text()) + [
        {"title": recall[0].title, "context": recall[0].context,
         "questions": [{"question": q.question, "answer": q.answer} for q in recall[0].questions]}]
    data = tmp_path / "with_probe.json"
    data.write_text(json.dumps(pool))
    train_cfg.rounds, train_cfg.items_per_round, train_cfg.forgetting_penalty = 1, 2, 0.5
    run = run_knowledge_training(train_cfg, KnowledgeTrainConfig(dataset=str(data), fmt="implications",
                                                                 grounded=False))
    trained = {r["item"] for r in run.records() if r["condition"] == "selfedit"}
    assert trained == {"p0", "p1"}  # the probe passage (p2) is out of the pool
    assert all("probe" in (r.get("extra") or {}) for r in run.records() if r["condition"] in ("base", "selfedit")
               and r["status"] == "ok")
    assert json.loads((run.path / "round-0" / "metrics.json").read_text())["mean_probe_drop"] is not None


def test_sft_data_built_from_winners(tiny, passages):
    domain = KnowledgeDomain(tiny.tokenizer)
    edits = {"p0": ["edit a", "edit b"], "p1": ["edit c", "edit d"]}
    examples = sft_examples(domain, passages, edits, {"p0": [1], "p1": []})
    assert examples == [{"prompt": domain.selfedit_prompt(passages[0]), "completion": "edit b"}]
    assert examples[0]["prompt"].endswith("<|im_start|>assistant\n")


def test_policy_sft_changes_and_saves_a_merged_model(tiny_dir, tmp_path):
    examples = [{"prompt": "<|im_start|>user\nList implications.<|im_end|>\n<|im_start|>assistant\n",
                 "completion": "The Mongol army seized the town of Otrar."}] * 4
    out = tmp_path / "policy"
    info = sft_policy(str(tiny_dir), examples, PolicySFTConfig(lr=5e-2, epochs=3, r=4, alpha=8, batch_size=2),
                      out, seed=0, dtype="float32", device="cpu")
    assert info["steps"] == 6 and info["losses"][-1] < info["losses"][0]
    new = load_file(out / "model.safetensors")
    old = load_file(tiny_dir / "model.safetensors")
    assert not any("lora" in k for k in new)  # merged, a plain checkpoint
    assert any(not torch.equal(new[k], old[k]) for k in old if k in new)
    assert (out / "tokenizer.json").is_file()
    # the same update as a standard PEFT adapter, naming its base: it loads without selfadapt
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    assert (json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
            == str(tiny_dir.resolve()))
    assert "AutoPeftModelForCausalLM" in (adapter / "README.md").read_text()
    assert json.loads((adapter / "selfadapt.json").read_text())["examples"] == 4
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        via_peft = (AutoPeftModelForCausalLM.from_pretrained(str(adapter), dtype=torch.float32)
                    .eval()(input_ids=ids).logits)
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()(input_ids=ids).logits
    assert torch.allclose(via_peft, merged, atol=1e-4)


@pytest.fixture()
def train_cfg(tiny_dir, tmp_path):
    return ReSTEMConfig(model=str(tiny_dir), rounds=2, items_per_round=2, k=2, seeds=2, max_new_tokens=12,
                        lora=LoRAConfig(r=4, epochs=1), sft=PolicySFTConfig(epochs=1, r=4, alpha=8),
                        dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))


def make_domain(tok):
    return KnowledgeDomain(tok, "implications")


def eval_keys(run):
    return [r["key"] for r in run.records() if r["condition"] == "selfedit"]


def test_rounds_chain_policy_checkpoints(train_cfg, passages, monkeypatch):
    # Force winners so that every round fine-tunes; the tiny model's own gains are ~0.
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    run = run_restem(train_cfg, passages, make_domain)
    round0 = json.loads((run.path / "round-0" / "policy.json").read_text())
    assert round0["policy"] == str(run.path / "round-0" / "policy") and round0["winners"] == 2
    assert (run.path / "round-0" / "policy" / "model.safetensors").is_file()
    by_round = {r: {rec["policy"] for rec in run.records() if rec.get("round") == r} for r in (0, 1)}
    assert by_round == {0: {train_cfg.model}, 1: {round0["policy"]}}
    assert len(json.loads((run.path / "round-1" / "sft_data.json").read_text())) == 2
    for name in ("summary.md", "metrics.json", "rewards.png", "selfedit_length.png", "config.yaml"):
        assert (run.path / name).is_file(), name
    m = json.loads((run.path / "round-1" / "metrics.json").read_text())
    assert m["evaluations"] == 2 * 2 * 2 and set(m["seconds"]) == {"generate", "inner_loops", "sft"}

    # A trained round evaluates like any baseline, in the same table.
    ecfg = KnowledgeEvalConfig(model=train_cfg.model, dataset="eval200", passages=1, external=[], controls=[],
                               policies=[str(run.path / "round-0")], max_new_tokens=8, answer_max_new_tokens=4,
                               lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu",
                               runs_dir=str(Path(train_cfg.runs_dir) / "eval"))
    erun, rows = run_knowledge_eval(ecfg)
    assert [r["condition"] for r in rows] == ["base", "recital", "passage+form", "own-self-qa-grounded+form",
                                              "round-0-base", "round-0+form"]  # form equalized by default
    assert (erun.path / "rounds.png").is_file()


@pytest.mark.parametrize("restart", [True, False])
def test_each_round_fine_tunes_the_base_model_unless_told_to_continue(train_cfg, passages, monkeypatch, restart):
    """ReST-EM fine-tunes the base model on each round's winners; before, round r+1 trained
    round r's merged policy, so rounds compounded."""
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    starts, real = [], restem.sft_policy
    monkeypatch.setattr(restem, "sft_policy", lambda policy, *a, **kw: starts.append(policy) or real(policy, *a, **kw))
    train_cfg.restart = restart
    run = run_restem(train_cfg, passages, make_domain)
    round0 = str(run.path / "round-0" / "policy")
    assert starts == [train_cfg.model, train_cfg.model if restart else round0]
    assert {rec["policy"] for rec in run.records() if rec.get("round") == 1} == {round0}  # round 1 samples round 0's


def test_a_moved_run_with_a_lost_checkpoint_resumes(train_cfg, passages, monkeypatch, tmp_path):
    """Checkpoints stay out of version control; the records and SFT data are enough to go on."""
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    train_cfg.rounds = 1
    run = run_restem(train_cfg, passages, make_domain)
    moved = tmp_path / "moved" / run.path.name
    moved.parent.mkdir()
    run.path.rename(moved)
    shutil.rmtree(moved / "round-0" / "policy")
    again = run_restem(train_cfg, passages, make_domain, resume=moved)
    assert policy_of_round(again.path, 0, train_cfg.model) == str(moved / "round-0" / "policy")
    assert (moved / "round-0" / "policy" / "model.safetensors").is_file()


def test_a_run_resumes_with_more_rounds_or_fewer_unfinished_ones(train_cfg, passages, monkeypatch):
    """Round r's items and seeds depend on r alone, so a run may be extended (round 0 is not redone) or
    stopped before rounds it has not finished, never before finished ones."""
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    train_cfg.rounds = 1
    run = run_restem(train_cfg, passages, make_domain)
    round0 = (run.path / "records.jsonl").read_bytes()
    rounds_run = []
    real = restem._round
    monkeypatch.setattr(restem, "_round", lambda run, rdir, r, *a: rounds_run.append(r) or real(run, rdir, r, *a))
    train_cfg.rounds = 2
    again = run_restem(train_cfg, passages, make_domain, resume=run.path)
    assert rounds_run == [1] and (run.path / "round-1" / "policy.json").is_file()
    assert (run.path / "records.jsonl").read_bytes().startswith(round0)  # round 0's records, none rewritten
    assert {r["round"] for r in again.records()[round0.count(b"\n"):]} == {1}
    assert Run.saved_config(run.path)["rounds"] == 2
    assert len(json.loads((run.path / "metrics.json").read_text())["rounds"]) == 2
    train_cfg.rounds = 1
    with pytest.raises(ValueError, match="has finished 2 rounds: resume it with --rounds 2 or more"):
        run_restem(train_cfg, passages, make_domain, resume=run.path)
    assert Run.saved_config(run.path)["rounds"] == 2  # a refused resume changes nothing
    (run.path / "round-1" / "policy.json").unlink()  # as if killed within round 1
    run_restem(train_cfg, passages, make_domain, resume=run.path)
    assert Run.saved_config(run.path)["rounds"] == 1
    assert len(json.loads((run.path / "metrics.json").read_text())["rounds"]) == 1


def test_no_winner_keeps_the_policy(train_cfg, passages, monkeypatch):
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [] for i in rewards})
    train_cfg.rounds = 1
    run = run_restem(train_cfg, passages, make_domain)
    assert json.loads((run.path / "round-0" / "policy.json").read_text())["policy"] == train_cfg.model
    assert not (run.path / "round-0" / "policy").exists()


def test_killed_training_resumes_each_evaluation_once(train_cfg, passages, monkeypatch):
    train_cfg.rounds = 1
    real, calls = workers_mod.evaluate_selfedit, []

    def dies_after_five(*args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(workers_mod, "evaluate_selfedit", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        run_restem(train_cfg, passages, make_domain)
    (path,) = Path(train_cfg.runs_dir).iterdir()
    monkeypatch.setattr(workers_mod, "evaluate_selfedit", real)
    run = run_restem(train_cfg, passages, make_domain, resume=path)
    keys = eval_keys(run)
    assert len(keys) == 2 * 2 * 2  # (passage, self-edit, seed), each exactly once
    assert Counter(keys).most_common(1)[0][1] == 1
    assert (path / "round-0" / "policy.json").is_file()
    # The round's times count both sessions' work: writing and every inner loop, from the records.
    sec = json.loads((path / "round-0" / "metrics.json").read_text())["seconds"]
    records = [r for r in run.records() if r.get("round") == 0]
    assert sec["generate"] == pytest.approx(sum(r["seconds"] for r in records if r["condition"] == "write"))
    assert sec["inner_loops"] == pytest.approx(sum(v for r in records if r["condition"] != "write"
                                                   for k, v in r["seconds"].items() if k != "generate"))
    assert sec["inner_loops"] > 0


def test_training_refuses_eval200(train_cfg, tmp_path, passages_file):
    with pytest.raises(ValueError, match="held-out"):
        run_knowledge_training(train_cfg, KnowledgeTrainConfig(dataset="eval200"))
    leak = tmp_path / "leak.json"
    leak.write_text(json.dumps(json.loads((Path(__file__).parents[1] / "src/selfadapt/data/squad/eval200.json")
                                          .read_text())[:2]))
    with pytest.raises(ValueError, match="2 passage\\(s\\) are in eval200"):
        run_knowledge_training(train_cfg, KnowledgeTrainConfig(dataset=str(leak)))
    train_cfg.items_per_round = 5
    with pytest.raises(ValueError, match="pool has only 2"):
        run_knowledge_training(train_cfg, KnowledgeTrainConfig(dataset=str(passages_file)))


def test_rewards_against_passage_only_training():
    recs = [{"condition": "passage", "item": "p0", "j": 0, "seed": 0, "score": 0.4},
            {"condition": "passage", "item": "p0", "j": 0, "seed": 1000, "score": 0.2},
            {"condition": "selfedit", "item": "p0", "j": 0, "seed": 0, "score": 0.6, "gain": 0.6},
            {"condition": "selfedit", "item": "p0", "j": 0, "seed": 1000, "score": 0.2, "gain": 0.2},
            {"condition": "selfedit", "item": "p0", "j": 1, "seed": 0, "score": 0.4, "gain": 0.4}]
    assert self_edit_rewards(recs, "base") == {"p0": {0: pytest.approx(0.4), 1: pytest.approx(0.4)}}
    assert self_edit_rewards(recs, "passage") == {"p0": {0: pytest.approx(0.1), 1: pytest.approx(0.0)}}
    with pytest.raises(ValueError, match="unknown reward baseline"):
        self_edit_rewards(recs, "judge")


def test_passage_baseline_round_evaluates_passage_only_too(train_cfg, passages):
    train_cfg.rounds, train_cfg.reward_baseline = 1, "passage"
    run = run_restem(train_cfg, passages, make_domain)
    conds = Counter(r["condition"] for r in run.records())
    assert conds["passage"] == 2 * 2 and conds["selfedit"] == 2 * 2 * 2  # items × seeds, items × k × seeds


def test_a_trained_policy_is_evaluated_in_the_format_it_was_trained_with(tmp_path):
    from selfadapt.knowledge.experiment import trained_format

    run = tmp_path / "train-knowledge-x"
    (run / "round-0").mkdir(parents=True)
    (run / "round-0" / "policy.json").write_text('{"policy": "smollm2", "winners": 0}')
    (run / "config.yaml").write_text("domain:\n  name: knowledge\n  fmt: self-qa\n  grounded: true\n"
                                     "  prior_prompt: planning\n")
    assert trained_format(str(run / "round-0"), "implications", "free") == ("self-qa", "grounded", "planning")
    (run / "config.yaml").write_text("domain: {}\n")
    assert trained_format(str(run / "round-0"), "implications", "free") == ("implications", "free", None)
    assert trained_format("smollm2", "rewrite", "grounded", "code") == ("rewrite", "grounded", "code")


def test_policies_of_two_runs_get_distinct_names(tmp_path):
    """Two runs' round-0 would share the condition name, hence each other's records: NAME=SPEC
    names one, and an unnamed clash is refused."""
    for run in ("a", "b"):  # each round kept the model it started from
        (tmp_path / run / "round-0").mkdir(parents=True)
        (tmp_path / run / "round-0" / "policy.json").write_text(json.dumps({"policy": "m"}))
    a, b = str(tmp_path / "a" / "round-0"), str(tmp_path / "b" / "round-0")
    assert restem.resolve_policies([a, f"b-round-0={b}"], "m") == [("round-0", "m"), ("b-round-0", "m")]
    assert restem.resolve_policy("some/dir", "m") == ("policy-dir", "some/dir")
    with pytest.raises(ValueError, match="two policies would be named 'round-0'.*NAME=SPEC"):
        restem.resolve_policies([a, b], "m")


def test_policy_sft_never_cuts_a_completion(tiny_dir, tmp_path, monkeypatch):
    """An ARC self-edit's JSON after the longest prompts runs past a fixed max_length; TRL would
    cut it from the right, training a policy on broken JSON. The SFT length covers the longest."""
    import trl

    seen, real = [], trl.SFTTrainer.train
    monkeypatch.setattr(trl.SFTTrainer, "train",
                        lambda self, *a, **kw: seen.extend(len(r["input_ids"]) for r in self.train_dataset)
                        or real(self, *a, **kw))
    prompt = "<|im_start|>user\n" + "grid 0 1 2 3 " * 10 + "<|im_end|>\n<|im_start|>assistant\n"
    examples = [{"prompt": prompt, "completion": '{"augmentations": ["rotate", "flip"], "lr": 0.0001}'}] * 2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    full = len(tok(prompt + examples[0]["completion"] + tok.eos_token, add_special_tokens=False)["input_ids"])
    info = sft_policy(str(tiny_dir), examples, PolicySFTConfig(epochs=1, r=4, alpha=8, batch_size=2, max_length=16),
                      tmp_path / "policy", seed=0, dtype="float32", device="cpu")
    assert full > 16 and info["max_length"] >= full
    assert seen and min(seen) >= full - 1  # nothing cut (TRL may or may not append its own EOS)


def test_round_summary_names_the_reward_baseline(tmp_path):
    """With ``--reward-baseline passage`` the reward subtracts passage-only's score, not the unadapted
    model's: the summary and the reward plot say which."""
    run = Run.create(tmp_path, "train", {"reward_baseline": "passage"})
    (run.path / "round-0").mkdir()
    (run.path / "round-0" / "metrics.json").write_text(json.dumps({
        "round": 0, "mean_reward": 0.02, "positive_fraction": 0.25, "winners": 1, "mean_base_score": 0.01,
        "mean_adapted_score": 0.03, "invalid": 0, "mean_selfedit_words": 40.0, "rewards": [0.0, 0.2],
        "selfedit_words": [30, 50], "seconds": {"generate": 1.0, "inner_loops": 2.0, "sft": 3.0}}))
    header = restem.summarize_rounds(run, 1).splitlines()[0]
    assert "| mean reward (vs passage-only) |" in header and "| base score |" in header  # base: the unadapted model
    assert (run.path / "rewards.png").is_file()


def test_a_run_file_names_no_model_but_its_own_rounds_and_its_start(tmp_path):
    """``round-N/policy.json`` comes with a run directory, maybe someone else's: the policy it names
    is loaded only if it is one of this run's rounds (found where the run is now) or the model the
    command was given, never a path of the files' choosing (the run's own config.yaml included)."""
    run = tmp_path / "run"
    (run / "round-1").mkdir(parents=True)
    (run / "config.yaml").write_text("model: /home/someone/model\n")  # as hostile as the policy file
    done = run / "round-1" / "policy.json"
    for saved, expected in [("/old/place/run/round-1/policy", str(run / "round-1" / "policy")),
                            ("/old/place/run/round-0/policy", str(run / "round-0" / "policy")),
                            ("smollm2", "smollm2")]:
        done.write_text(json.dumps({"policy": saved}))
        assert policy_of_round(run, 1, "smollm2") == expected
    for hostile in ["/home/someone/model", "/old/place/run/round-2/policy", "../other/round-1/x", None, 3]:
        done.write_text(json.dumps({"policy": hostile}))
        with pytest.raises(ValueError,
                           match=r"neither a round of this run nor the model given \(--model smollm2\)") as e:
            policy_of_round(run, 1, "smollm2")
        assert str(done) in str(e.value)


def test_a_round_evaluates_from_its_committed_adapter_on_a_fresh_clone(tmp_path, tiny_dir, monkeypatch):
    """Merged policies are git-ignored; a published round keeps its PEFT adapter. On a fresh clone
    ``RUN/round-N`` resolves to that adapter, and a model spec that is an adapter loads its base
    with the update merged: the same logits as the base with the adapter on. A local base is the
    one the command was given (``:base=``), never one the run's files choose."""
    from peft import LoraConfig, get_peft_model

    from selfadapt.models import load_model

    monkeypatch.setenv("SELFADAPT_CACHE", str(tmp_path / "cache"))  # where the merged checkpoint is kept
    run = tmp_path / "run"
    (run / "round-0").mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: {tiny_dir}\n")
    (run / "round-0" / "policy.json").write_text(json.dumps({"policy": str(run / "round-0" / "policy")}))
    base = load_model(str(tiny_dir), dtype="float32", device="cpu")
    peft = get_peft_model(base.model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
    peft.save_pretrained(run / "round-0" / "adapter")
    (run / "round-0" / "adapter" / "selfadapt.json").write_text(json.dumps({"model": str(tiny_dir)}))
    ids = base.tokenizer("The Mongol army seized Otrar.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft(input_ids=ids).logits
    name, spec = restem.resolve_policy(str(run / "round-0"), str(tiny_dir))
    assert (name, spec) == ("round-0", f"{run / 'round-0' / 'adapter'}:base={tiny_dir}")
    with pytest.raises(ValueError, match="its adapter was trained on .*not on the model given"):
        restem.resolve_policy(str(run / "round-0"), "smollm2")  # its files do not choose the base
    for spec in (spec, f"{spec},attn_implementation=eager"):  # loading options go to the merged model
        loaded = load_model(spec, dtype="float32", device="cpu")
        assert not hasattr(loaded.model, "peft_config")  # merged: inner loops put their own LoRA on it
        with torch.no_grad():
            assert torch.allclose(loaded.model(input_ids=ids).logits, expected, atol=1e-5)
    assert loaded.model.config._attn_implementation == "eager"


def test_a_lost_checkpoint_with_its_adapter_is_merged_again_not_retrained(train_cfg, passages, monkeypatch):
    """A committed round adapter rebuilds its policy exactly, without a second SFT that would
    overwrite the committed adapter with another one."""
    monkeypatch.setattr(restem, "select_winners", lambda rewards, rule: {i: [0] for i in rewards})
    train_cfg.rounds = 1
    run = run_restem(train_cfg, passages, make_domain)
    policy, adapter = run.path / "round-0" / "policy", run.path / "round-0" / "adapter"
    before = load_file(policy / "model.safetensors")
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(policy)
    monkeypatch.setattr(restem, "sft_policy", lambda *a, **k: pytest.fail("the round was trained again"))
    run_restem(train_cfg, passages, make_domain, resume=run.path)
    after = load_file(policy / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    assert (adapter / "adapter_model.safetensors").read_bytes() == weights
