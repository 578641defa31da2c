"""The GPU path of the policy SFT and of GRPO, checked on the CPU with the tiny model: one device
on a node with several GPUs, the base kept in its own dtype with the update exact, the KL
reference in the dtype training computes in, and bounded GRPO checkpoints."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import TrainingArguments

import selfadapt.rrr.grpo as grpo
from selfadapt.restem import PolicySFTConfig, sft_policy
from selfadapt.rrr.grpo import RRRGRPOConfig, make_trainer
from selfadapt.rrr.tasks import CountdownTask

EXAMPLES = [{"prompt": "<|im_start|>user\nList implications.<|im_end|>\n<|im_start|>assistant\n",
             "completion": "The Mongol army seized the town of Otrar."}] * 2


@pytest.fixture()
def eight_gpus(monkeypatch):
    """What TrainingArguments concludes in a single process that sees eight GPUs: it keeps its
    device and counts ``torch.cuda.device_count()`` GPUs, so ``Trainer`` would use DataParallel."""
    real = TrainingArguments.__dict__["_setup_devices"].func

    def setup_devices(self):
        device = real(self)
        self._n_gpu = 8
        return device

    prop = functools.cached_property(setup_devices)
    prop.__set_name__(TrainingArguments, "_setup_devices")
    monkeypatch.setattr(TrainingArguments, "_setup_devices", prop)


@pytest.fixture()
def trainers(monkeypatch):
    """Every SFT trainer that trains, with its parameters' dtypes as training starts (LoRA or not →
    dtype): the policy SFT merges the LoRA away afterwards."""
    import trl

    seen, real = [], trl.SFTTrainer.train

    def train(self, *args, **kwargs):
        seen.append((self, {("lora_" in n, p.dtype) for n, p in self.model.named_parameters()}))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "train", train)
    return seen


def countdown_failures() -> tuple[CountdownTask, list[dict]]:
    task = CountdownTask(pool=40)
    return task, [{"task": "countdown", "id": q["id"], "query": q, "attempt": "no"} for q in task.queries("train", 2)]


def test_policy_sft_trains_on_one_device_when_several_gpus_are_visible(tiny_dir, tmp_path, eight_gpus, trainers):
    info = sft_policy(str(tiny_dir), EXAMPLES, PolicySFTConfig(lr=1e-2, epochs=1, r=4, alpha=8, batch_size=2),
                      tmp_path / "policy", seed=0, dtype="float32", device="cpu")
    ((trainer, _),) = trainers
    assert info["steps"] == 1 and trainer.args.n_gpu == 1
    assert not isinstance(trainer.model_wrapped, nn.DataParallel)


def test_grpo_trains_on_one_device_when_several_gpus_are_visible(tiny, tmp_path, eight_gpus):
    task, failures = countdown_failures()
    cfg = RRRGRPOConfig(num_generations=2, queries_per_step=1, max_steps=1, reflection_tokens=4, retry_tokens=4,
                        lora_r=4, lora_alpha=8)
    trainer = make_trainer(tiny.model, tiny.tokenizer, task, failures, cfg, tmp_path / "ckpt")
    trainer.train()
    assert trainer.args.n_gpu == 1 and trainer.state.global_step == 1
    assert not isinstance(trainer.model_wrapped, nn.DataParallel)


def test_policy_sft_trains_a_lora_on_the_base_in_its_own_dtype(tiny_dir, tmp_path, trainers):
    """The base is loaded once, in the dtype asked for (bf16 on a GPU), not upcast to fp32; only
    the LoRA weights, which the optimizer steps, are fp32."""
    sft_policy(str(tiny_dir), EXAMPLES, PolicySFTConfig(lr=1e-2, epochs=1, r=4, alpha=8, batch_size=2),
               tmp_path / "policy", seed=0, dtype="bfloat16", device="cpu")
    ((_, dtypes),) = trainers
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}


def test_policy_sft_saves_the_update_exactly(tiny_dir, tmp_path):
    """The saved policy is the bf16 base plus the fp32 LoRA delta, in fp32: the update is not
    rounded to bf16's spacing, which would drop most of a small one."""
    cfg = PolicySFTConfig(lr=1e-3, epochs=1, r=4, alpha=8, batch_size=2)
    sft_policy(str(tiny_dir), EXAMPLES, cfg, tmp_path / "policy", seed=0, dtype="bfloat16", device="cpu")
    merged = load_file(tmp_path / "policy" / "model.safetensors")
    base = {k: v.to(torch.bfloat16) for k, v in load_file(tiny_dir / "model.safetensors").items()}
    lora = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {t.dtype for t in merged.values()} == {torch.float32}
    targets = {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") for k in lora if ".lora_A." in k}
    assert targets
    kept = lost = 0
    for name in targets:
        a, b = (lora[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
        exact = base[f"{name}.weight"].float() + b @ a * (cfg.alpha / cfg.r)
        got = merged[f"{name}.weight"]
        assert torch.allclose(got, exact, rtol=0, atol=1e-6), name
        kept += (got != base[f"{name}.weight"].float()).sum().item()
        lost += (got.to(torch.bfloat16) == base[f"{name}.weight"]).sum().item()
    untouched = set(merged) - {f"{n}.weight" for n in targets}
    assert all(torch.equal(merged[k], base[k].float()) for k in untouched)
    assert kept > 0 and lost > 0  # a bf16 checkpoint would have lost part of this update


def test_full_fine_tuning_builds_its_kl_reference_in_the_autocast_dtype(tiny, tmp_path, monkeypatch):
    """Full fine-tuning keeps fp32 master weights and computes in bf16 on a GPU; TRL builds the
    frozen KL reference in the policy's dtype, a second fp32 copy. It is built in bf16, on the
    policy's device. (The CPU stands in for a bf16 GPU: autocast is what differs.)"""
    monkeypatch.setattr(grpo, "bf16_autocast", lambda model: True)
    task, failures = countdown_failures()
    cfg = RRRGRPOConfig(num_generations=2, queries_per_step=1, max_steps=1, reflection_tokens=4, retry_tokens=4,
                        lora_r=0, beta=0.04)
    trainer = make_trainer(tiny.model, tiny.tokenizer, task, failures, cfg, tmp_path / "ckpt")
    assert trainer.args.bf16
    assert {p.dtype for p in trainer.ref_model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert {p.device for p in trainer.ref_model.parameters()} == {tiny.model.device}
    trainer.train()
    kl = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert kl and all(torch.isfinite(torch.tensor(kl)))


def test_grpo_keeps_only_the_checkpoint_a_resume_needs(tiny_dir, tmp_path):
    """Every ``save_steps`` TRL saved a whole checkpoint (weights and optimizer), and none was ever
    deleted; a resume reads only the newest."""
    from selfadapt.rrr.experiment import RRRTrainConfig, run_rrr_train

    grpo_cfg = RRRGRPOConfig(num_generations=2, queries_per_step=1, max_steps=3, reflection_tokens=4,
                             retry_tokens=4, lora_r=2, lora_alpha=4, save_steps=1)
    failures = tmp_path / "failures.jsonl"
    failures.write_text("".join(json.dumps(f) + "\n" for f in countdown_failures()[1]))
    cfg = RRRTrainConfig(failures=str(failures), model=str(tiny_dir), grpo=grpo_cfg,
                         dtype="float32", device="cpu", runs_dir=str(tmp_path / "runs"))
    out = run_rrr_train(cfg)
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    (out / "policy").rename(out / "first-policy")
    run_rrr_train(cfg, resume=str(out))  # resumes from the one kept, at its last step
    assert (out / "policy" / "adapter_config.json").is_file()


def test_policy_sft_on_a_cpu_keeps_auto_in_fp32(tiny_dir, tmp_path, trainers, monkeypatch):
    """"auto" is bf16 on a CPU that runs it, but TRL has no CPU autocast: the whole SFT would run in
    bf16 there, unlike the fp32 SFT the committed runs were trained with."""
    import selfadapt.models as models

    monkeypatch.setattr(models, "_cpu_has_bf16", lambda: True)
    sft_policy(str(tiny_dir), EXAMPLES, PolicySFTConfig(lr=1e-2, epochs=1, r=4, alpha=8, batch_size=2),
               tmp_path / "policy", seed=0, dtype="auto", device="cpu")
    ((_, dtypes),) = trainers
    assert dtypes == {(False, torch.float32), (True, torch.float32)}
