"""The knowledge measure: likelihood scorer, multiple-choice options, recital control, grounded
decoding and paired statistics, on the tiny model and hand-made cases."""

import pytest
import torch

from selfadapt.constrained import GrammarConstraint, lark_grammar
from selfadapt.evaluate import paired
from selfadapt.generation import SamplingConfig, allows, generate
from selfadapt.grading import contains, normalize_answer
from selfadapt.knowledge.data import Passage, Question
from selfadapt.knowledge.domain import KnowledgeDomain
from selfadapt.knowledge.grounded import SpanQA, Static, allowed_token_ids, has_content
from selfadapt.knowledge.measure import KnowledgeMeasure, options, qa_prompt, recital, softmax_at_zero
from selfadapt.knowledge.selfedit import parse_qa
from selfadapt.likelihood import completion_scores

OTRAR = Passage("Genghis Khan", "Otrar was seized in 1219 by Subutai and Jebe. The Shah fled west to an island "
                "in the Caspian Sea, where he died of pleurisy a few weeks later.",
                (Question("Which town was seized?", "Otrar"), Question("When was it seized?", "1219"),
                 Question("Who seized it?", "Subutai"), Question("Where did the Shah die?", "an island")), index=7)


def direct_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[len(p) + i - 1, t]) for i, t in enumerate(c))


def test_likelihood_scorer_matches_a_direct_computation(tiny):
    pairs = [("The Mongol army seized", " the town of Otrar."), ("Question: What metal was used? Answer:", " silver"),
             ("x", " Genghis Khan ordered Subutai and Jebe to hunt the Shah.")]
    got = completion_scores(tiny.model, tiny.tokenizer, pairs, batch_size=3)  # padded together
    for (prompt, completion), score in zip(pairs, got):
        assert score.tokens == len(tiny.tokenizer(completion, add_special_tokens=False)["input_ids"])
        assert score.logprob == pytest.approx(direct_logprob(tiny.model, tiny.tokenizer, prompt, completion), abs=1e-4)
    alone = completion_scores(tiny.model, tiny.tokenizer, pairs[:1], batch_size=1)
    assert alone[0].logprob == pytest.approx(got[0].logprob, abs=1e-4)  # padding changes nothing


def test_completions_sharing_a_prompt_score_as_if_alone(tiny):
    """Options share their question's forward pass; batches split between prompts, never inside one."""
    prompts = ["Question: What metal was used? Answer:", "The Mongol army seized", "x"]
    completions = [" silver", " the town of Otrar in 1219.", " Genghis", " Subutai and Jebe", " dog"]
    pairs = [(p, c) for p in prompts for c in completions]
    for batch_size in (1, 4, 32):
        got = completion_scores(tiny.model, tiny.tokenizer, pairs, batch_size=batch_size)
        for (prompt, completion), score in zip(pairs, got):
            assert score.logprob == pytest.approx(direct_logprob(tiny.model, tiny.tokenizer, prompt, completion),
                                                  abs=1e-4)


def test_empty_completion_is_an_error(tiny):
    with pytest.raises(ValueError, match="pair 0"):
        completion_scores(tiny.model, tiny.tokenizer, [("prompt", "")])


def test_options_are_passage_text_distinct_and_seeded():
    for qi, q in enumerate(OTRAR.questions):
        opts = options(OTRAR, qi)
        assert opts[0] == q.answer and len(opts) == 8 and opts == options(OTRAR, qi)
        source = normalize_answer(OTRAR.context)
        assert all(contains(source, o) for o in opts)  # every option is passage text
        for i, a in enumerate(opts):
            for b in opts[i + 1:]:
                assert not contains(a, b) and not contains(b, a)  # never two right answers
    assert options(OTRAR, 0) != options(OTRAR, 1)


def test_recital_scores_like_a_wrong_answer_where_containment_rewards_it(tiny):
    """The opening recited covers most options, so its multiple-choice pick is a tie among
    them: chance level, what a wrong answer gets in expectation. Containment scores it 1."""
    measure = KnowledgeMeasure(SamplingConfig(64, 0.0))
    records = measure.recital_records(tiny.tokenizer, OTRAR)
    text = recital(tiny.tokenizer, OTRAR, 64)
    assert OTRAR.context.startswith(text[:20])
    for r in records[:3]:  # Otrar, 1219 and Subutai are all in the opening
        assert r["contains"] == 1.0 and r["response"] == text
        assert r["mc_acc"] <= 1 / len(r["options"]) * 2  # a tie among at least half the options
    short = KnowledgeMeasure(SamplingConfig(2, 0.0)).recital_records(tiny.tokenizer, OTRAR)
    assert short[2]["contains"] == 0.0 and short[2]["mc_acc"] == 0.0  # Subutai is not in 2 tokens


def test_model_scores_have_every_metric_and_mc_prob_is_the_gold_share(tiny):
    records = KnowledgeMeasure(SamplingConfig(4, 0.0, batch_size=4)).score(tiny.model, tiny.tokenizer, OTRAR)
    assert len(records) == 4
    for r in records:
        assert 0 < r["mc_prob"] < 1 and r["mc_acc"] in (0.0, 1.0) and r["answer_logprob"] < 0
        assert r["mc_acc"] == float(r["choice"] == 0)
        prompt = qa_prompt(tiny.tokenizer, OTRAR.title, r["question"])
        eos = tiny.tokenizer.eos_token
        lp = [s.mean for s in completion_scores(tiny.model, tiny.tokenizer, [(prompt, o + eos) for o in r["options"]])]
        assert r["mc_prob"] == pytest.approx(softmax_at_zero(lp), abs=1e-5)


def test_softmax_at_zero():
    assert softmax_at_zero([0.0, 0.0]) == pytest.approx(0.5)
    assert softmax_at_zero([-1000.0, 0.0]) == pytest.approx(0.0)
    assert softmax_at_zero([2.0, 1.0, 1.0]) == pytest.approx(torch.tensor([2.0, 1.0, 1.0]).softmax(0)[0].item())


class Recording:
    """Wraps a constraint and keeps every prefix it was asked about: each sampled token shows
    up in the next step's prefix, so the prefixes show what was actually generated."""

    def __init__(self, inner, eos: int = 2):
        self.inner, self.prefixes, self.eos = inner, [], eos

    def __call__(self, generated):
        self.prefixes.append(list(generated))
        return self.inner(generated)

    def check(self) -> int:
        for g in self.prefixes:
            if self.eos in g:  # a finished row is padded, whatever the constraint says
                g = g[: g.index(self.eos) + 1]
            for t in range(len(g)):
                assert allows(self.inner(g[:t]), g[t]), f"token {g[t]} at step {t} was not allowed"
        return max(map(len, self.prefixes))


@pytest.mark.parametrize("seed", range(4))
def test_grounded_decoding_never_emits_a_disallowed_token(tiny, seed):
    tok = tiny.tokenizer
    allowed = allowed_token_ids(tok, [OTRAR.title, OTRAR.context])
    assert len(allowed) < len(tok) / 2
    constraint = Static(allowed)
    assert constraint([]) is constraint([1, 2]) and int(constraint([]).sum()) == len(allowed)  # a mask, built once
    rows = [Recording(constraint) for _ in range(3)]
    prompts = [qa_prompt(tok, OTRAR.title, "Write about it.")] * 3
    generate(tiny.model, tok, prompts, SamplingConfig(24, 1.5, 1.0, 3), seed=seed, constraints=rows)
    assert all(r.check() > 0 for r in rows)


@pytest.mark.parametrize("seed", range(4))
def test_span_qa_answers_are_passage_spans(tiny, seed):
    tok = tiny.tokenizer
    rows = [Recording(SpanQA(tok, OTRAR.context, pairs=2, question_tokens=6, answer_tokens=4)) for _ in range(2)]
    prompts = [qa_prompt(tok, OTRAR.title, "Ask and answer.")] * 2
    out = generate(tiny.model, tok, prompts, SamplingConfig(40, 1.5, 1.0, 2), seed=seed, constraints=rows)
    for text, r in zip(out, rows):
        r.check()
        assert text.startswith("Q:")
        for _, a in parse_qa(text):
            assert contains(normalize_answer(OTRAR.context), a)


def test_span_qa_state_machine_by_hand(tiny):
    tok = tiny.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    c = SpanQA(tok, "Otrar was seized.", pairs=1, question_tokens=3, answer_tokens=3)
    assert c([]) == [c.q] and c([c.q]) == [c.colon]
    free = c([c.q, c.colon, 5])
    assert int(free.sum()) == len(tok) - 1 and not allows(free, tok.eos_token_id)  # free but no end
    assert c([c.q, c.colon, 6]) is free  # one mask built once, not a vocabulary-sized list per step
    long_q = [c.q, c.colon] + [c.q] * 3
    assert c(long_q) == [c.newline]  # question cap reached
    after_q = [c.q, c.colon] + enc(" Which?") + [c.newline]
    assert c(after_q) == [c.a]
    span = enc(" Otrar was seized.")
    starts = {t for t in span if tok.decode([t]).startswith(" ")}
    assert set(c(after_q + [c.a, c.colon])) == starts
    a = after_q + [c.a, c.colon]
    word = [span[0]]  # " Otrar" may be several tokens: the line can end only once the word is whole
    while span[len(word)] not in starts:
        assert c(a + word) == [span[len(word)]]
        word.append(span[len(word)])
    assert set(c(a + word)) == {span[len(word)], c.newline}
    assert c(a + word + [c.newline]) == [tok.eos_token_id]  # one pair asked for
    two = SpanQA(tok, "Otrar was seized.", pairs=2, question_tokens=3, answer_tokens=8)
    again = a + word + [c.newline] + [c.q, c.colon] + enc(" Who?") + [c.newline, c.a, c.colon] + word
    assert span[0] not in two(again[: -len(word)])  # the second answer may not start where the first did


def test_grounded_self_qa_keeps_only_span_answers(tiny):
    d = KnowledgeDomain(tiny.tokenizer, "self-qa", grounded=True)
    texts = d.training_examples(OTRAR, "Q: Which town?\nA: Otrar\nQ: Who ruled?\nA: Napoleon")
    assert len(texts) == 2 and texts[1][1] == "Otrar<|im_end|>"
    from selfadapt.domain import InvalidSelfEdit

    with pytest.raises(InvalidSelfEdit, match="span of the passage"):
        d.training_examples(OTRAR, "Q: Who ruled?\nA: Napoleon")
    free = KnowledgeDomain(tiny.tokenizer, "self-qa", grounded=False)
    assert len(free.training_examples(OTRAR, "Q: Who ruled?\nA: Napoleon")) == 2
    assert isinstance(d.selfedit_constraint(OTRAR), SpanQA)
    assert free.selfedit_constraint(OTRAR) is None


def test_paired_statistics_on_hand_made_cases():
    a = {"p0": 1.0, "p1": 0.5, "p2": 0.2, "only-a": 1.0}
    b = {"p0": 0.5, "p1": 0.5, "p2": 0.4, "only-b": 0.0}
    p = paired(a, b)
    assert (p.n, p.wins, p.ties, p.losses) == (3, 1, 1, 1)
    assert p.mean == pytest.approx(0.1) and p.ci_low <= p.mean <= p.ci_high
    assert p.wtl == "1/1/1" and p.cell() == f"+10.0 ({100 * p.ci_low:+.1f}…{100 * p.ci_high:+.1f})"
    same = paired({"x": 0.3, "y": 0.7}, {"x": 0.1, "y": 0.5})  # a constant gain has a degenerate interval
    assert (same.mean, same.ci_low, same.ci_high) == pytest.approx((0.2, 0.2, 0.2))
    assert (same.wins, same.losses) == (2, 0)
    assert paired({}, {"x": 1.0}).cell() == "–"


def test_calibrated_choice_subtracts_each_options_neutral_likelihood(tiny, passages):
    """cal_prob: softmax over options of log p(option | question) − log p(option | neutral
    question), per token; an option favoured whatever is asked gains nothing."""
    from selfadapt.knowledge.measure import NEUTRAL_QUESTION, qa_prompt, softmax_at_zero
    from selfadapt.likelihood import completion_scores

    m = KnowledgeMeasure(SamplingConfig(4, 0.0))
    p = passages[0]
    recs = m.score(tiny.model, tiny.tokenizer, p)
    eos = tiny.tokenizer.eos_token
    for q, rec in zip(p.questions, recs):
        asked = completion_scores(tiny.model, tiny.tokenizer,
                                  [(qa_prompt(tiny.tokenizer, p.title, q.question), o + eos) for o in rec["options"]])
        neutral = completion_scores(tiny.model, tiny.tokenizer,
                                    [(qa_prompt(tiny.tokenizer, p.title, NEUTRAL_QUESTION), o + eos)
                                     for o in rec["options"]])
        cal = [a.mean - n.mean for a, n in zip(asked, neutral)]
        assert rec["cal_prob"] == pytest.approx(softmax_at_zero(cal), abs=1e-5)
        assert rec["cal_logprob"] == pytest.approx(cal[0], abs=1e-4)
        assert rec["cal_acc"] == float(max(range(len(cal)), key=cal.__getitem__) == 0)


def test_typed_options_match_the_golds_type_and_are_whole_phrases():
    from selfadapt.knowledge.measure import FUNCTION_WORDS, answer_type, typed_options

    p = Passage("Trains", "Virgin Trains East Coast runs a half-hourly service to London King's Cross, "
                "a journey of about three hours. CrossCountry trains serve Edinburgh, Glasgow and Aberdeen "
                "since 1997, and Northern Rail runs 120 local services of the region.",
                (Question("Which company runs local services?", "Northern Rail"),
                 Question("How long is the journey?", "about three hours"),
                 Question("Since when does CrossCountry serve Edinburgh?", "1997"),
                 Question("How often do trains run?", "half-hourly")))
    assert [answer_type(q.answer) for q in p.questions] == ["name", "number", "number", "phrase"]
    for i, q in enumerate(p.questions):
        opts = typed_options(p, i)
        assert opts[0] == q.answer and len(opts) == len(set(opts)) >= 2
        assert all(answer_type(o) == answer_type(q.answer) for o in opts), opts
        for o in opts[1:]:  # no fragment that starts or ends on a function word
            assert o.split()[0].lower() not in FUNCTION_WORDS and o.split()[-1].lower() not in FUNCTION_WORDS
        assert typed_options(p, i) == opts  # seeded
    assert "Edinburgh" in typed_options(p, 0) or "Aberdeen" in typed_options(p, 0)


def test_exact_match_is_the_best_over_every_gold_and_no_gold_is_a_distractor(tiny, monkeypatch):
    """A question with golds ["1219", "in 1219"]: the answer "in 1219" is an exact match (it was
    graded against "1219" alone before); the record keeps ``gold`` (the first) and ``golds``;
    no multiple-choice option is another gold."""
    import selfadapt.knowledge.measure as measure

    q = Question("When was it seized?", "1219", ("in 1219", "Subutai"))
    passage = Passage(OTRAR.title, OTRAR.context, (q, *OTRAR.questions[2:]), index=7)
    monkeypatch.setattr(measure, "generate", lambda model, tok, prompts, cfg: ["in 1219"] * len(prompts))
    records = KnowledgeMeasure(SamplingConfig(4, 0.0, batch_size=4)).score(tiny.model, tiny.tokenizer, passage)
    assert (records[0]["exact_match"], records[0]["f1"]) == (1.0, 1.0)
    assert records[0]["gold"] == "1219" and records[0]["golds"] == ["1219", "in 1219", "Subutai"]
    assert "golds" not in records[1] and records[1]["exact_match"] == 0.0
    for r in records[:1]:
        assert not any("subutai" in normalize_answer(o) for o in r["options"][1:] + r["typed_options"][1:])


def test_span_qa_asks_something_and_answers_with_a_content_word(tiny):
    """ReST-EM rounds drifted to "Q: \\nA: the" and "A: but": an empty question and a function word
    as the answer teach nothing, and they take a pair from the eight the self-edit may write."""
    tok = tiny.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    c = SpanQA(tok, "The city of Otrar was seized but it was in the end of it.", pairs=1, question_tokens=4,
               answer_tokens=3)
    first = c([c.q, c.colon])
    assert not allows(first, c.newline) and not allows(first, enc(" ")[0])  # no empty question line
    assert c([c.q, c.colon]) is first  # one mask per tokenizer; and generation's bitmask row says the same:
    bitmask = torch.zeros(1, (len(tok) + 31) // 32, dtype=torch.int32)
    c.reset()
    for t in (c.q, c.colon):
        c.advance(t)
    c.fill(bitmask, 0)
    row = torch.tensor([(int(bitmask[0, t // 32]) >> (t % 32)) & 1 for t in range(len(tok))], dtype=torch.bool)
    assert torch.equal(row, first)
    assert allows(first, enc(" Which")[0]) and allows(c([c.q, c.colon] + enc(" Which")), c.newline)
    a = [c.q, c.colon] + enc(" Which?") + [c.newline, c.a, c.colon]
    span = enc(" The city of Otrar was seized but it was in the end of it.")
    words = [i for i, t in enumerate(span) if tok.decode([t]).startswith(" ")]
    the = span[: words[1]]  # " The": a whole word, but not an answer
    assert not allows(c(a + the), c.newline) and allows(c(a + the), span[words[1]])
    city = span[: words[2]]
    assert allows(c(a + city), c.newline)  # " The city" holds a content word
    admits = lambda tokens: all(allows(c(a + tokens[:i]), t) for i, t in enumerate(tokens))  # noqa: E731
    assert admits(enc(" of Otrar")) and not admits(enc(" of it."))  # an answer starts only where it can end
    assert admits(enc(" the end")) and not admits(enc(" it"))  # no content word begins within three tokens
    bare = SpanQA(tok, "of it", pairs=1, question_tokens=4, answer_tokens=3)  # no content word anywhere:
    assert allows(bare(a + enc(" of it")), c.newline)  # the old rules, not a dead end
    assert not any(map(has_content, ["“the”", "the—", "«in»", "but…", "it’s", "'s", "(of)"]))
    assert all(map(has_content, ["one", "first", "1,200", "Khan’s", "“Otrar”"]))  # counts, ordinals, names
    d = KnowledgeDomain(tok, "self-qa", grounded=True)  # written pairs are kept the same way
    texts = d.training_examples(OTRAR, "Q: Which town?\nA: Otrar\nQ: What?\nA: and\nQ: When?\nA: in 1219")
    assert [t[1] for t in texts[1:]] == ["Otrar<|im_end|>", "in 1219<|im_end|>"]
    lark = SpanQA(tok, "Otrar was seized in it.", pairs=1).lark()  # the same rules as vLLM's grammar
    assert '" Otrar"' in lark and '" in it."' not in lark and '" in"' not in lark and '" seized in it."' in lark
    accepts = lambda text: GrammarConstraint(tok, lark_grammar(lark)).accepts(enc(text))  # noqa: E731
    assert accepts("Q: Which?\nA: Otrar\n") and not accepts("Q: \nA: Otrar\n") and not accepts("Q: Which?\nA: in\n")
    blanks = SpanQA(tok, "Otrar was seized in it.", pairs=1, question_tokens=3).lark()  # blank up to its cap
    assert not GrammarConstraint(tok, lark_grammar(blanks)).accepts(enc("Q:" + " " * 3 + "\nA: Otrar\n"))
