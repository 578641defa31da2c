"""``selfadapt ask``: short answers from the model, or from the adapters ``learn`` saved.

An adapter answers without its documents in context: the answer phrase the question asks
for, not a recital. A question that names nothing of an adapter's documents is answered by
the model as it was (``routing``: an update rewrites unrelated answers too). ``learn``
writes each adapter's metadata (``META``: its title and vocabulary) for this module to read.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from . import settings as S
from .knowledge.domain import ANSWER_CAP
from .knowledge.general import short_answers
from .lora import adapter_base, load_adapter
from .models import EMBEDDED, load_model, split_spec
from .routing import about
from .runs import read_json
from .settings import setting

META = "selfadapt.json"  # an adapter's metadata, written by ``learn``


@dataclass
class AskConfig:
    """``selfadapt ask``: which model answers, and how."""

    model: str | None = setting(None, "Base model (default: the adapters' when they name the embedded model or a "
                                "Hub id, else the embedded one; an adapter learned on a local model needs it named "
                                "here).")
    combine: bool = setting(False, "Answer with all --adapter at once (their LoRA updates summed).")
    route: bool = setting(True, "Answer a question that names nothing of an adapter's documents with the adapter "
                          "disabled (the update rewrites unrelated answers); --no-route: the adapter answers "
                          "everything.")
    max_new_tokens: int = setting(ANSWER_CAP, "Answer length cap (a short answer phrase).")
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)


def _local(spec: str) -> bool:
    """A model spec that names a file or directory here (not the embedded model or a Hub id)."""
    where = split_spec(spec)[0]
    return where.startswith((".", "/", "~")) or where.endswith(".gguf") or Path(where).expanduser().exists()


def adapter_paths(adapters: list[Path] | Path | str | None) -> tuple[list[Path], list[dict]]:
    """The adapter directories and their metadata (``{}`` for an adapter not saved by ``learn``);
    a damaged metadata or PEFT config file is named (``read_json``), before any model loads for it."""
    paths = [Path(a) for a in ([adapters] if isinstance(adapters, (str, Path)) else adapters or [])]
    for path in paths:
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path}: not an adapter directory (no adapter_config.json)")
        read_json(path / "adapter_config.json")
    return paths, [read_json(p / META) if (p / META).is_file() else {} for p in paths]


def routed(question: str, metas: list[dict]) -> bool:
    """Whether ``ask`` answers the question with these adapters (``routing``): it names something
    of their documents, or an adapter has no vocabulary to tell (not saved by ``learn``)."""
    return any("vocabulary" not in m or about(question, m["vocabulary"]) for m in metas)


def ask(questions: list[str], adapters: list[Path] | Path | None = None, model: str | None = None,
        cfg: AskConfig | None = None, **settings) -> dict[str, list[str]]:
    """Short answers, by the base model or by each learned adapter in turn (``combine``: all of
    them at once, their LoRA updates summed), with no document in context: the answer phrase
    the question asks for, not a recital of what was learned. With ``route``, a question that
    names nothing of an adapter's documents is answered with the adapter disabled (``routing``:
    the update rewrites unrelated answers). Keyed by adapter directory (or ``"base"``, or the
    directories joined by " + "). ``model`` and ``settings`` (``combine=True``, ...) override ``cfg``."""
    cfg = replace(cfg or AskConfig(), **{**settings, **({"model": model} if model is not None else {})})
    model, combine, route, max_new_tokens = cfg.model, cfg.combine, cfg.route, cfg.max_new_tokens
    if not all(q.strip() for q in questions):
        raise ValueError("an empty question: ask something")
    paths, metas = adapter_paths(adapters)
    needs = {path: adapter_base(path) for path in paths}
    bases = set(needs.values())
    if model is None and len(bases) > 1:
        raise ValueError(f"the adapters were learned on different models ({', '.join(sorted(bases))}); "
                         "ask them one model at a time")
    if model is None and bases and _local(base := next(iter(bases))):
        # an adapter may come from someone else: its files name a Hub model, never a path to load
        raise ValueError(f"{paths[0]} was learned on the local model {base}: ask with --model {base}")
    loaded = load_model(model or (bases.pop() if bases else EMBEDDED), dtype=cfg.dtype, device=cfg.device)
    if not paths:
        return {"base": short_answers(loaded.model, loaded.tokenizer, [("general knowledge", q) for q in questions],
                                      max_new_tokens)}
    net = loaded.model
    for n, path in enumerate(paths):
        try:
            net = load_adapter(net, path, name=f"a{n}")
        except RuntimeError as e:  # PEFT's size mismatch: hundreds of lines, one per weight
            if "size mismatch" not in str(e):
                raise
            raise ValueError(f"{path}: this adapter was trained on {needs[path]}, not on {loaded.spec}; "
                             f"ask with --model {needs[path]}") from None
    groups = [list(range(len(paths)))] if combine else [[n] for n in range(len(paths))]
    out = {}
    for group in groups:
        net.base_model.set_adapter([f"a{n}" for n in group])  # several: their updates are summed
        titles = [metas[n].get("title", "general knowledge") for n in group]
        title = titles[0] if len(titles) == 1 else "your documents"
        mine = [not route or routed(q, [metas[n] for n in group]) for q in questions]
        answers: dict[int, str] = {}
        for adapted in (True, False):
            idx = [i for i, m in enumerate(mine) if m == adapted]
            if idx:
                with nullcontext() if adapted else net.disable_adapter():
                    answers.update(zip(idx, short_answers(net, loaded.tokenizer, [(title, questions[i]) for i in idx],
                                                          max_new_tokens)))
        out[" + ".join(str(paths[n]) for n in group)] = [answers[i] for i in range(len(questions))]
    return out
