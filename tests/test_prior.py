"""Prior prompts: every template renders with the chat template, in front of what the model is
asked to write (the reflection in RRR, the self-edit in SEAL), and a trained policy keeps its own."""

import pytest

from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.models import render_chat
from selfadapt.prior import PRIOR_PROMPTS, with_prior
from selfadapt.rrr.experiment import RRREvalConfig, policy_prior
from selfadapt.rrr.grpo import RRRGRPOConfig, reflection_dataset
from selfadapt.rrr.reflect import REFLECT, reflect_messages, retry_messages
from selfadapt.rrr.tasks import get_task


def test_the_five_styles_of_prior_prompt_engineering():
    assert list(PRIOR_PROMPTS) == ["reasoning", "planning", "code", "knowledge", "null-example"]
    assert with_prior("Do it.", None) == "Do it."
    with pytest.raises(ValueError, match="unknown prior prompt 'zen'; choose from reasoning, planning"):
        with_prior("Do it.", "zen")
    for bad in (lambda: RRRGRPOConfig(prior_prompt="zen"), lambda: RRREvalConfig(prior_prompt="zen")):
        with pytest.raises(ValueError, match="unknown prior prompt"):
            bad()


@pytest.mark.parametrize("name", list(PRIOR_PROMPTS))
def test_each_template_renders_before_the_reflection_and_the_self_edit(name, tiny_tokenizer, passages):
    task = get_task("countdown:numbers=2")
    query = task.queries("train", 1)[0]
    chat = render_chat(tiny_tokenizer, reflect_messages(task, query, "wrong", name))
    assert f"{PRIOR_PROMPTS[name]}\n\n{REFLECT}<|im_end|>" in chat
    assert chat.endswith("<|im_start|>assistant\n")
    retry = render_chat(tiny_tokenizer, retry_messages(task, query, "wrong", "I added badly.", name))
    assert retry.startswith(chat)  # the retry repeats the reflection's conversation, prior prompt included
    (row,) = reflection_dataset(task, [{"query": query, "attempt": "wrong"}], name)
    assert row["prompt"][-1]["content"].startswith(PRIOR_PROMPTS[name])
    prompt = KnowledgeDomain(tiny_tokenizer, "self-qa", prior=name).selfedit_prompt(passages[0])
    plain = KnowledgeDomain(tiny_tokenizer, "self-qa").selfedit_prompt(passages[0])
    assert PRIOR_PROMPTS[name] in prompt and PRIOR_PROMPTS[name] not in plain


def test_a_policy_is_evaluated_with_the_prior_prompt_it_was_trained_with(tmp_path):
    run = tmp_path / "rrr-train-x"
    (run / "policy").mkdir(parents=True)
    (run / "config.yaml").write_text("grpo:\n  prior_prompt: planning\n")
    assert policy_prior(str(run), "code") == "planning" and policy_prior(str(run / "policy"), None) == "planning"
    assert policy_prior(None, "code") == "code"  # the base model uses the eval's own
    (run / "config.yaml").write_text("grpo: {}\n")
    assert policy_prior(str(run), "code") == "code"
