"""Every table a command prints fits a 100-column terminal: its key columns as a rich table, the
full one named where the run keeps it."""

import io
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from selfadapt.evaluate import Paired, markdown_table
from selfadapt.knowledge.controls import FORMAT
from selfadapt.knowledge.experiment import REFERENCES, SIDE_METRICS
from selfadapt.knowledge.measure import REWARD_METRIC
from selfadapt.tables import KEYS, answers_table, key_table

RUNS = Path(__file__).resolve().parents[1] / "benchmarks" / "runs"


def _printed(renderable) -> str:
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _fits(text: str) -> None:
    assert max(cell_len(line) for line in text.splitlines()) <= 100, text


def _knowledge_rows() -> list[dict]:
    """``summarize``'s rows for a knowledge eval with every reference, side measure and a long policy name."""
    names = ["base", "recital", "passage", "self-qa-grounded", FORMAT, "gpt-4.1", "seal-qwen",
             "train-knowledge-20261202-083953-round-1-base", "train-knowledge-20261202-083953-round-1"]
    refs = REFERENCES + (FORMAT,)
    pair = asdict(Paired(40, -0.0125, -0.0375, 0.0, 3, 31, 6))
    return [{"condition": n, "items": 40, "evaluations": 40, "score": 0.125, "ci_low": 0.05, "ci_high": 0.2125,
             "metrics": {m: 0.25 for m in SIDE_METRICS}, "vs": {r: pair for r in refs if r != n},
             "judge_score": None, "invalid": 1, "nan_loss": 0,
             "seconds": {"train": 4123.0, "answer": 183.0, "generate": 66.0}} for n in names]


def test_the_knowledge_table_shows_its_key_columns_within_100_columns(tmp_path):
    path = tmp_path / "table.md"
    path.write_text(markdown_table(_knowledge_rows(), REWARD_METRIC, SIDE_METRICS, REFERENCES + (FORMAT,)) + "\n")
    assert max(len(line) for line in path.read_text().splitlines()) > 200  # what used to be printed
    text = _printed(key_table(path, KEYS["eval knowledge"]))
    _fits(text)
    flat = " ".join(text.split())
    for shown in ("condition", "exact_match", "Δ vs passage", "W/T/L vs", "-1.2 (-3.8…+0.0)", "3/31/6",
                  "12.5 (5.0–21.2)", "train-knowledge-20261202-083953-round-1"):
        assert shown in flat, shown
    for hidden in ("recital (95% CI)", "mc_prob", "generate s", "4123"):
        assert hidden not in flat, hidden
    assert f"every column: {path}" in flat.replace("\n", "")


STORED = [  # real runs' tables (benchmarks/runs), each as its command prints it
    ("eval knowledge", "eval200_27/eval-knowledge-20261202-071302/table.md", ("Δ vs passage", "W/T/L vs passage")),
    ("eval continual", "continual/eval-continual-20261124-225111/table.md", ("forgetting", "W/T/L vs base")),
    ("eval arc", "arc/eval-evaluation/table.md", ("success %", "Δ vs ttt-plain", "oracle")),
    ("train", "restem27/train-knowledge-20261202-083953/summary.md", ("mean reward", "adapted score")),
    ("train", "arc/train-training/summary.md", ("mean reward", "probe drop")),
    ("rrr eval", "rgym29/rrr-eval-reasoning-gym-letter_counting-20261202-010510/summary.md",
     ("selfadapt rrr eval", "2nd attempt", "general QA")),
    ("rrr probe", "rgym29/rrr-probe-20261202-004125/summary.md", ("retry success", "5–50% band")),
]


@pytest.mark.parametrize("command, stored, shown", STORED, ids=[s[1].split("/")[0] for s in STORED])
def test_every_printed_table_fits_100_columns(command, stored, shown):
    path = RUNS / stored
    text = _printed(key_table(path, KEYS[command]))
    _fits(text)
    flat = " ".join(text.split())
    assert all(s in flat for s in shown), flat
    head = path.read_text().split("|---", 1)[0]
    kept = [h.strip() for h in head.split("\n")[-2].strip("| ").split("|") if h.strip().startswith(KEYS[command])]
    assert len(kept) >= 4 and kept[0].split()[0] in flat  # the key columns are the run's own
    assert "every column:" in flat


def test_the_answers_table_fits_100_columns():
    checks = [{"question": "Varnholt lighthouse opens every summer from June to August, and about how many visitors "
                           "reach it each year on the ferry Selja from Tolvik harbour?", "expected": "4,000",
               "before": "about 1,000 visitors per year on the [ferry]", "after": "4,000",
               "right_before": False, "right_after": True}] * 3
    text = _printed(answers_table(checks, "Questions the document taught"))
    _fits(text)
    assert "question (taught)" in text and "before" in text and "✓ 4,000" in text and "[ferry]" in text
