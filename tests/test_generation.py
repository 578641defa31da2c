import pytest

from selfadapt.generation import SamplingConfig, generate


def test_batched_greedy_matches_one_by_one(tiny):
    """Left padding must not change what greedy decoding produces."""
    prompts = ["The Mongol army", "Question: What metal was used? Answer:", "fox", "Genghis Khan ordered Subutai"]
    greedy = SamplingConfig(max_new_tokens=8, temperature=0.0, batch_size=4)
    batched = generate(tiny.model, tiny.tokenizer, prompts, greedy)
    single = [generate(tiny.model, tiny.tokenizer, [p], greedy)[0] for p in prompts]
    assert batched == single
    assert any(batched)


def test_sampling_is_seeded(tiny):
    cfg = SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, batch_size=2)
    a = generate(tiny.model, tiny.tokenizer, ["The", "fox"], cfg, seed=3)
    b = generate(tiny.model, tiny.tokenizer, ["The", "fox"], cfg, seed=3)
    assert a == b


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 0}, {"batch_size": 0}, {"top_p": 0.0}, {"temperature": -1}])
def test_bad_sampling_config(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)
