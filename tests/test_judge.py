"""Judges: the endpoint client against a local server, the local judge against a direct
computation, and TinyV's fallback on hand-made truth tables."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfadapt.judge import JUDGE_PROMPT, JudgeConfig, JudgeError, LLMJudge, LocalJudge, fallback, make_judge
from selfadapt.models import chat_prompt


class JudgeServer:
    """A local OpenAI-compatible endpoint: replies from a script, counts requests."""

    def __init__(self, replies):
        self.replies, self.requests = list(replies), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status, text = outer.replies.pop(0) if outer.replies else (200, "yes")
                payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}]}
                data = json.dumps(payload if status == 200 else {"error": {"message": text}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture()
def server_factory():
    servers = []

    def make(replies):
        servers.append(JudgeServer(replies))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def judge_for(server, tmp_path, **kw):
    return LLMJudge(JudgeConfig(server.url, "judge-model", concurrency=1, cache_path=tmp_path / "cache.jsonl", **kw))


def test_judge_verdicts_and_cache(server_factory, tmp_path):
    server = server_factory([(200, "Yes."), (200, "no")])
    judge = judge_for(server, tmp_path)
    assert judge.judge([("Q1", "Otrar", "Otrar it was"), ("Q2", "silver", "gold")]) == [True, False]
    assert "Gold answer: Otrar" in server.requests[0]["messages"][0]["content"]
    # Same questions again, even from a new judge object: answered from the on-disk cache.
    assert judge_for(server, tmp_path).judge([("Q1", "Otrar", "Otrar it was")]) == [True]
    assert len(server.requests) == 2


def test_judge_retries_server_errors(server_factory, tmp_path):
    server = server_factory([(500, "overloaded"), (200, "yes")])
    assert judge_for(server, tmp_path, max_retries=2).judge([("Q", "a", "a")]) == [True]
    assert len(server.requests) == 2


def test_judge_failure_is_reported_not_scored(server_factory, tmp_path):
    server = server_factory([(500, "down")] * 3 + [(200, "maybe")])
    judge = judge_for(server, tmp_path, max_retries=2)
    (down,) = judge.judge([("Q", "a", "b")])
    assert isinstance(down, JudgeError) and "failed" in str(down)
    (odd,) = judge.judge([("Q2", "a", "b")])
    assert isinstance(odd, JudgeError) and "expected yes or no" in str(odd)
    assert not (tmp_path / "cache.jsonl").exists()  # failures are never cached


class Scripted:
    """A judge with fixed answers per response text; records what it was asked."""

    def __init__(self, verdicts):
        self.verdicts, self.asked = verdicts, []

    def judge(self, items):
        self.asked += items
        return [self.verdicts[r] for _, _, r in items]


def test_fallback_truth_table():
    items = [("q", "Otrar", "Otrar"), ("q", "Otrar", "the town of Otrar"), ("q", "Otrar", "Bukhara"),
             ("q", "Otrar", "???")]
    judge = Scripted({"the town of Otrar": True, "Bukhara": False, "???": JudgeError("down")})
    out = fallback([True, False, False, False], items, judge)
    assert [r for _, _, r in judge.asked] == ["the town of Otrar", "Bukhara", "???"]  # never the rule's hits
    assert [(v["rule"], v["judge"], v["correct"], v["flip"]) for v in out] == [
        (True, None, True, False), (False, True, True, True), (False, False, False, False),
        (False, None, False, False)]
    assert out[3]["judge_error"] == "down"  # a failed verdict is kept, never scored as a flip
    with pytest.raises(ValueError, match="2 rule verdicts for 1 items"):
        fallback([True, False], items[:1], judge)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.text(max_size=20)), max_size=12))
def test_fallback_asks_only_negatives(rows):
    items = [("q", "gold", f"{i}:{text}") for i, (_, _, text) in enumerate(rows)]
    judge = Scripted({item[2]: said for item, (_, said, _) in zip(items, rows)})
    out = fallback([rule for rule, _, _ in rows], items, judge)
    assert len(judge.asked) == sum(not rule for rule, _, _ in rows)
    for (rule, said, _), v in zip(rows, out):
        assert v["correct"] == (rule or said) and v["flip"] == (not rule and said)


def test_local_judge_matches_a_direct_computation(tiny):
    items = [("Which town was seized?", "Otrar", "Otrar"), ("What metal?", "silver", "gold")]
    judge = LocalJudge(tiny)
    verdicts, margins = judge.judge(items), judge.margins(items)
    for (q, g, r), verdict, margin in zip(items, verdicts, margins):
        prompt = chat_prompt(tiny.tokenizer, JUDGE_PROMPT.format(question=q, gold=g, response=r))
        ids = tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]

        def logp(word):
            w = tiny.tokenizer(word, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = tiny.model(torch.tensor([ids + w])).logits[0].float().log_softmax(-1)
            return sum(logits[len(ids) - 1 + i, t].item() for i, t in enumerate(w))

        yes = torch.logsumexp(torch.tensor([logp("yes"), logp("Yes")]), 0)
        no = torch.logsumexp(torch.tensor([logp("no"), logp("No")]), 0)
        assert margin == pytest.approx(float(yes - no), abs=1e-4)
        assert verdict == bool(yes > no)
    judge.threshold = max(margins)  # a calibrated threshold moves the verdicts
    assert judge.judge(items) == [False, False]


def test_make_judge(tiny_dir, tmp_path):
    assert make_judge(None) is None
    with pytest.raises(ValueError, match="needs the judge's model name"):
        make_judge(None, "http://localhost:1/v1")
    assert isinstance(make_judge("m", "http://localhost:1/v1", cache_path=tmp_path / "c.jsonl"), LLMJudge)
    assert isinstance(make_judge(str(tiny_dir), dtype="float32", device="cpu"), LocalJudge)


def test_knowledge_domain_judges_only_exact_match_misses(tiny, passages):
    from selfadapt.knowledge.domain import KnowledgeDomain

    judge = Scripted({})
    judge.judge = lambda items: [True] * len(items)  # every miss flips
    domain = KnowledgeDomain(tiny.tokenizer, judge=judge)
    ev = domain.evaluate(tiny.model, tiny.tokenizer, passages[0])
    misses = [r for r in ev.records if r["exact_match"] < 1]
    assert ev.extra["judge_calls"] == len(misses) == ev.extra["judge_flips"]
    assert ev.extra["judge_score"] == 1.0
    assert all(r["judge"] is None for r in ev.records if r["exact_match"] == 1)
