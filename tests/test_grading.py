import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfadapt.grading import JudgeConfig, JudgeError, LLMJudge, contains, exact_match, grade, normalize_answer, token_f1


def test_squad_normalisation_and_metrics():
    assert normalize_answer("The  Mongol Army!") == "mongol army"
    assert exact_match("the Otrar.", "Otrar") == 1.0
    assert token_f1("town of Otrar", "Otrar") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert token_f1("x", "") == 0.0


@pytest.mark.parametrize("response,gold,em,f1", [
    # Cases worked by hand from the official SQuAD v1.1 script's rules.
    ("the", "a", 1.0, 0.0),                   # both normalise to "": EM compares strings, F1 has no common token
    ("", "", 1.0, 0.0),
    ("U.S.", "US", 1.0, 1.0),                 # punctuation is deleted, not replaced by a space
    ("an apple a day", "Apple day", 1.0, 1.0),  # articles removed, case folded
    ("Otrar Otrar", "Otrar", 0.0, 2 / 3),     # repeated tokens count once per match: P = 1/2, R = 1
    ("the town of Otrar", "Otrar town", 0.0, 0.8),  # P = 2/3, R = 1
    ("silver", "gold", 0.0, 0.0),
])
def test_metrics_follow_the_official_squad_script(response, gold, em, f1):
    assert exact_match(response, gold) == em
    assert token_f1(response, gold) == pytest.approx(f1)


@pytest.mark.parametrize("response,gold,expected", [
    ("It was the town of Otrar.", "Otrar", 1.0),
    ("In 1945 the war ended", "4", 0.0),          # word boundaries, not substrings
    ("molten silver", "Silver", 1.0),
    ("gold", "silver", 0.0),
    ("anything", "the", 0.0),                      # a gold that normalises to nothing never matches
])
def test_containment(response, gold, expected):
    assert contains(response, gold) == expected


def test_grade_bundles_the_three_metrics():
    g = grade("It was Otrar", "Otrar")
    assert (g.exact_match, g.f1, g.contains) == (0.0, 0.5, 1.0)


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
