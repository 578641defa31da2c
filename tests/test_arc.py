"""ARC: grid format, tools and their inverses, leave-one-out, the self-edit parser, loss scope."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfadapt.arc.augment import (
    CHAIN,
    GEOMETRIC,
    GROUPS,
    IDENTITY,
    REPEAT,
    RESOLUTION,
    apply,
    augmented_examples,
    colour_permutation,
    leave_out,
    translate,
)
from selfadapt.arc.data import ArcDataError, ArcTask, grid_to_text, load_tasks, text_to_grid
from selfadapt.arc.domain import ArcDomain, split_exchange, task_messages
from selfadapt.arc.selfedit import EPOCH_RANGE, LEARNING_RATES, TTTConfig, config_distribution, parse_selfedit
from selfadapt.domain import InvalidSelfEdit
from selfadapt.lora import encode, make_batches

grids = st.integers(1, 8).flatmap(lambda h: st.integers(1, 8).flatmap(
    lambda w: st.lists(st.lists(st.integers(0, 9), min_size=w, max_size=w), min_size=h, max_size=h)))


@settings(max_examples=60, deadline=None)
@given(grids)
def test_every_invertible_tool_round_trips(rows):
    g = np.array(rows)
    for t in [IDENTITY, *GEOMETRIC, *RESOLUTION, *REPEAT, *CHAIN, colour_permutation(random.Random(len(rows)))]:
        assert np.array_equal(t.inverse(t(g)), g), t.name


@settings(max_examples=30, deadline=None)
@given(grids)
def test_grid_text_round_trip(rows):
    g = np.array(rows)
    assert np.array_equal(text_to_grid(grid_to_text(g)), g)


def test_tools_do_what_they_say():
    g = np.array([[1, 2], [3, 4]])
    named = {t.name: t for t in [*GEOMETRIC, *RESOLUTION, *REPEAT]}
    assert named["rotate90"](g).tolist() == [[2, 4], [1, 3]]
    assert named["flip_horizontal"](g).tolist() == [[2, 1], [4, 3]]
    assert named["transpose"](g).tolist() == [[1, 3], [2, 4]]
    assert named["anti_transpose"](g).tolist() == [[4, 2], [3, 1]]
    assert named["upscale2"](g).shape == (4, 4) and named["double_height"](g).shape == (4, 2)
    assert named["repeat_right"](g).tolist() == [[1, 2, 1, 2], [3, 4, 3, 4]]
    shifted = translate(random.Random(3), max_shift=1)(np.ones((3, 3), dtype=int))
    assert shifted.shape == (3, 3) and shifted.sum() <= 9
    perm = colour_permutation(random.Random(0))
    assert perm(np.zeros((2, 2), dtype=int)).sum() == 0  # background stays
    assert apply(named["upscale2"], ((np.zeros((20, 20), dtype=int),) * 2,)) is None  # over 30×30


def test_text_to_grid_rejects_non_grids():
    for bad in ["", "12\n3", "Output:\n12\n3\n\n45", "１２", "1 2\n3 4", "\n".join(["1"] * 31), "1" * 31,
                "def f(grid):\n    return grid"]:
        assert text_to_grid(bad) is None, bad


def test_text_to_grid_takes_the_first_grid_out_of_prose():
    written = "The test output grid is:\n3004\n0000\n\nThe test output grid is:\n3004\n00"
    assert text_to_grid(written).tolist() == [[3, 0, 0, 4], [0, 0, 0, 0]]
    assert text_to_grid("```\n12\n34\n```").tolist() == [[1, 2], [3, 4]]


def _task(n=3):
    rng = np.random.default_rng(0)
    pairs = tuple((rng.integers(0, 3, (3, 3)), rng.integers(0, 3, (3, 3))) for _ in range(n))
    return ArcTask("t", pairs, ((rng.integers(0, 3, (3, 3)), rng.integers(0, 3, (3, 3))),))


def test_leave_one_and_two_out():
    task = _task(4)
    loo = leave_out(task, 1)
    assert len(loo) == 4 and all(len(ctx) == 3 for ctx, _, _ in loo)
    for i, (ctx, q_in, q_out) in enumerate(loo):
        assert q_in is task.train[i][0] and all(q_in is not a for a, _ in ctx)
    l2o = leave_out(task, 2)
    assert len(l2o) == 2 * 6 and all(len(ctx) == 2 for ctx, _, _ in l2o)
    assert leave_out(_task(2), 2) == []  # no context left


def test_augmented_examples_respect_groups_and_cap():
    task = _task(3)
    plain = augmented_examples(task, [], rng=random.Random(0), cap=100)
    assert len(plain) == 3
    basic = augmented_examples(task, ["basic"], rng=random.Random(0), cap=100)
    assert len(basic) == 3 + 3 * len(GROUPS["basic"])
    capped = augmented_examples(task, list(GROUPS), rng=random.Random(0), cap=10)
    assert len(capped) == 10 and capped[:3] == plain  # the untransformed examples are kept first
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmented_examples(task, ["mirror"], rng=random.Random(0), cap=5)


VALID = {"data_generation": {"use_basic_augmentations": True, "use_size_augmentations": False,
                             "use_chain_augmentations": False, "use_repeat_augmentations": True},
         "training": {"strategy": "train_using_output_tokens", "learning_rate": 1e-4, "num_train_epochs": 3}}


def test_parser_accepts_valid_json_in_text():
    cfg = parse_selfedit("Sure! Here it is:\n```json\n" + json.dumps(VALID) + "\n```\nIt uses {basic} tools.")
    assert cfg == TTTConfig(("basic", "repeat"), "output", 1e-4, 3)
    assert parse_selfedit(cfg.to_json()) == cfg


def _with(path, value):
    obj = json.loads(json.dumps(VALID))
    *head, last = path
    node = obj
    for k in head:
        node = node[k]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return json.dumps(obj)


@pytest.mark.parametrize("text,reason", [
    ("no json here", "no JSON object"),
    ("{not json}", "not valid JSON"),
    ("[" * 5000 + "]" * 5000, "no JSON object"),
    ("{" + '"a":' * 3000 + "1" + "}" * 3000, "longer than"),
    ('{"data_generation": ' * 60 + "{}" + "}" * 60, "missing training"),
    (_with(["training", "learning_rate"], 1e308 * 10), "not valid JSON|learning_rate"),
    (_with(["training", "learning_rate"], 10 ** 400), "learning_rate"),
    (_with(["training", "learning_rate"], "1e-4"), "learning_rate"),
    (_with(["training", "learning_rate"], 0.5), "learning_rate"),
    (_with(["training", "num_train_epochs"], True), "num_train_epochs"),
    (_with(["training", "num_train_epochs"], 2.0), "num_train_epochs"),
    (_with(["training", "num_train_epochs"], 10 ** 30), "num_train_epochs"),
    (_with(["training", "strategy"], "train_everything"), "strategy"),
    (_with(["training", "extra"], 1), "unknown key"),
    (_with(["training", "num_train_epochs"], KeyError), "missing num_train_epochs"),
    (_with(["data_generation", "use_basic_augmentations"], "yes"), "true or false"),
    (_with(["data_generation"], [1, 2]), "must be an object"),
    ('{"data_generation": {}, "training": {}, "tools": []}', "unknown key"),
])
def test_parser_rejects_malformed_and_adversarial(text, reason):
    with pytest.raises(InvalidSelfEdit, match=reason):
        parse_selfedit(text)


def test_output_only_loss_masks_the_prompt_by_the_chat_template(tiny):
    tok = tiny.tokenizer
    task = _task(3)
    prompt, completion = split_exchange(tok, task_messages(task.train[:2], task.train[2][0]),
                                        grid_to_text(task.train[2][1]))
    assert prompt.endswith("<|im_start|>assistant\n") and completion == grid_to_text(task.train[2][1]) + "<|im_end|>\n"
    (ids, start), (ids_all, start_all) = encode(tok, [(prompt, completion), prompt + completion], 4096)
    (_, _, labels), = make_batches([(ids, start)], tok.pad_token_id, 4, 8192, random.Random(0))
    trained = [t for t in labels[0].tolist() if t != -100]
    assert tok.decode(trained) == completion and start_all == 1 and ids_all == ids


def test_domain_training_data_follows_the_selfedit(tiny):
    d = ArcDomain(tiny.tokenizer, cap=100, budget=1000)
    task = _task(3)
    data = d.training_data(task, json.dumps(VALID))
    assert data.lr == 1e-4 and data.epochs == 3
    assert len(data.examples) == 3 + 3 * (len(GROUPS["basic"]) + len(GROUPS["repeat"]))
    assert all(isinstance(e, tuple) for e in data.examples)
    all_tokens = d.training_data(task, _with(["training", "strategy"], "train_using_all_tokens"))
    assert all(isinstance(e, str) for e in all_tokens.examples)
    budgeted = ArcDomain(tiny.tokenizer, cap=100, budget=12).training_data(task, json.dumps(VALID))
    assert len(budgeted.examples) == 4  # 12 // 3 epochs
    with pytest.raises(InvalidSelfEdit):
        d.training_data(task, "train hard please")


def test_evaluate_votes_and_scores(tiny):
    task = _task(3)
    ev = ArcDomain(tiny.tokenizer, votes=2).evaluate(tiny.model, tiny.tokenizer, task)
    assert ev.score in (0.0, 1.0) and len(ev.records) == 1
    assert ev.records[0]["expected"] == grid_to_text(task.test[0][1]) and len(ev.records[0]["attempts"]) <= 2


def test_seal_subsets_load_with_outputs():
    ev = load_tasks("evaluation")
    assert len(ev) == 10 and all(t.test and t.test[0][1].ndim == 2 for t in ev)
    (t,) = load_tasks("training", ids=["6150a2bd"])
    assert np.array_equal(t.test[0][1], np.rot90(t.test[0][0], 2))  # the task is "rotate by 180°"


def test_bad_arc_files_name_file_and_task(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"abc": {"train": [{"input": [[1]], "output": [[1, 2], [3]]}],
                                     "test": [{"input": [[1]]}]}}))
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"abc": [[[1]]]}))
    with pytest.raises(ArcDataError, match=rf"{f}: task abc train 0 output: not a grid"):
        load_tasks(challenges=f, solutions=s)
    f.write_text("{")
    with pytest.raises(ArcDataError, match="invalid JSON"):
        load_tasks(challenges=f, solutions=s)
    with pytest.raises(ArcDataError, match="unknown ARC subset"):
        load_tasks("hard")


def test_selfedit_prompt_shows_the_default_as_parseable_json(tiny):
    from selfadapt.arc.domain import DEFAULT_TTT

    prompt = ArcDomain(tiny.tokenizer).selfedit_prompt(_task(3))
    assert parse_selfedit(prompt.split("The default is:", 1)[1]) == DEFAULT_TTT


@pytest.mark.parametrize("seed", range(5))
def test_every_constrained_selfedit_parses(tiny, seed):
    from selfadapt.generation import SamplingConfig, generate

    domain = ArcDomain(tiny.tokenizer)
    prompts = [domain.selfedit_prompt(_task(3))] * 4
    out = generate(tiny.model, tiny.tokenizer, prompts, SamplingConfig(256, 1.5, 1.0, 4), seed=seed,
                   constraints=[domain.selfedit_constraint(_task(3)) for _ in prompts])
    for text in out:
        parse_selfedit(text)  # raises if the grammar let anything invalid through


def _accepted(tokenizer, text: str) -> bool:
    from selfadapt.arc.domain import ArcDomain

    return ArcDomain(tokenizer).selfedit_constraint(_task(3)).accepts(
        tokenizer(text, add_special_tokens=False)["input_ids"])


configs = st.builds(TTTConfig, st.lists(st.sampled_from(sorted(GROUPS)), unique=True).map(tuple),
                    st.sampled_from(["all", "output"]), st.sampled_from(LEARNING_RATES),
                    st.integers(EPOCH_RANGE[0], EPOCH_RANGE[1]))


@settings(max_examples=40, deadline=None)
@given(cfg=configs)
def test_grammar_accepts_every_config_the_parser_accepts(tiny_tokenizer, cfg):
    text = cfg.to_json()
    parsed = parse_selfedit(text)
    assert (set(parsed.groups), parsed.loss_scope, parsed.lr, parsed.epochs) == (
        set(cfg.groups), cfg.loss_scope, cfg.lr, cfg.epochs)
    assert _accepted(tiny_tokenizer, text)


@settings(max_examples=40, deadline=None)
@given(cfg=configs, mutation=st.sampled_from([
    (["training", "learning_rate"], 5e-4), (["training", "learning_rate"], "1e-4"),
    (["training", "num_train_epochs"], 0), (["training", "num_train_epochs"], 11),
    (["training", "num_train_epochs"], 2.5), (["training", "strategy"], "train_using_everything"),
    (["data_generation", "use_basic_augmentations"], "true"), (["data_generation", "use_magic"], True),
    (["training", "seed"], 1)]))
def test_grammar_rejects_what_the_parser_rejects(tiny_tokenizer, cfg, mutation):
    obj = json.loads(cfg.to_json())
    (outer, key), value = mutation
    obj[outer][key] = value
    text = json.dumps(obj)
    with pytest.raises(InvalidSelfEdit):
        parse_selfedit(text)
    assert not _accepted(tiny_tokenizer, text)
    del obj[outer][key]
    if key in ("learning_rate", "num_train_epochs", "strategy", "use_basic_augmentations"):  # a missing key too
        assert not _accepted(tiny_tokenizer, json.dumps(obj))


def test_schema_and_prompt_read_the_defaults_from_one_place(tiny):
    from selfadapt.arc.domain import DEFAULT_TTT
    from selfadapt.arc.selfedit import SCHEMA

    training = SCHEMA["properties"]["training"]["properties"]
    assert training["learning_rate"]["enum"] == list(LEARNING_RATES)
    assert (training["num_train_epochs"]["minimum"], training["num_train_epochs"]["maximum"]) == EPOCH_RANGE
    assert DEFAULT_TTT.lr in LEARNING_RATES and _accepted(tiny.tokenizer, DEFAULT_TTT.to_json())
    assert DEFAULT_TTT.to_json() in ArcDomain(tiny.tokenizer).selfedit_prompt(_task(3))


def test_config_distribution_counts_each_choice_and_invalid_ones():
    a = TTTConfig(("basic",), "output", 1e-3, 2).to_json()
    b = TTTConfig(("basic", "size"), "all", 1e-4, 2).to_json()
    dist = config_distribution([a, b, a, "not json"])
    assert dist["valid"] == {"yes": 3, "no": 1}
    assert dist["learning rate"] == {"0.001": 2, "0.0001": 1}
    assert dist["epochs"] == {"2": 3} and dist["loss on"] == {"output": 2, "all": 1}
    assert dist["aug: basic"] == {"on": 3} and dist["aug: size"] == {"off": 2, "on": 1}
