"""Reflect, Retry, Reward: verifiable tasks whose answers are checked by parsing, never by running."""

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; errors name the file and the line."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {n}: invalid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {n}: expected an object")
        out.append((n, rec))
    return out
