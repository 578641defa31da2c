"""``selfadapt ask``: short answers from the model, or from the adapters ``learn`` saved.

An adapter answers without its documents in context: the answer phrase the question asks
for, not a recital. A question that names nothing of an adapter's documents is answered by
the model as it was (``routing``: an update rewrites unrelated answers too). ``learn``
writes each adapter's metadata (``META``: its title and vocabulary) for this module to read.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from . import settings as S
from .knowledge.domain import ANSWER_CAP
from .knowledge.general import short_answers
from .lora import adapter_base, load_adapter, name_base_model
from .models import EMBEDDED, LoadedModel, cached_snapshot, load_model, local_spec
from .routing import about, distinctive
from .runs import read_json
from .settings import setting

META = "selfadapt.json"  # an adapter's metadata, written by ``learn``


@dataclass
class AskConfig:
    """``selfadapt ask``: which model answers, and how."""

    model: str | LoadedModel | None = setting(
        None, "Base model (default: the adapters' when they name the embedded model or a Hub id, else the embedded "
        "one; an adapter learned on a local model needs it named here).")
    combine: bool = setting(False, "Answer with all --adapter at once: one adapter whose update is the sum of theirs "
                            "(PEFT's add_weighted_adapter, 'cat': its rank is the sum of their ranks).")
    save_combined: str | None = setting(None, "With --combine: also save that combined adapter in this new directory "
                                        "(a PEFT adapter that `ask --adapter` and vLLM take as one).")
    route: bool = setting(True, "Answer a question that names nothing of an adapter's documents with the adapter "
                          "disabled (the update rewrites unrelated answers); --no-route: the adapter answers "
                          "everything.")
    max_new_tokens: int = setting(ANSWER_CAP, "Answer length cap (a short answer phrase).")
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)


def adapter_dir(adapter: Path | str) -> Path:
    """A local adapter directory, or an adapter's Hub id (``owner/name``) from the local Hugging Face cache:
    nothing is downloaded (``hf download owner/name`` first)."""
    path = Path(adapter).expanduser()
    name = str(adapter)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return path
    if (snapshot := cached_snapshot(name)) is None:
        raise FileNotFoundError(f"{name}: no adapter directory here, and not in the local Hugging Face cache "
                                f"(download it first: hf download {name})")
    return snapshot


def adapter_label(path: Path) -> str:
    """An adapter as a user names it: the Hub id of a snapshot in the local Hugging Face cache, else its path."""
    parts = Path(path).parts
    if len(parts) > 2 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].removeprefix("models--").replace("--", "/")
    return str(path)


def adapter_paths(adapters: list[Path] | Path | str | None) -> tuple[list[Path], list[dict]]:
    """The adapter directories (a Hub id: its snapshot in the local cache, ``adapter_dir``) and their
    metadata (``{}`` for an adapter not saved by ``learn``); a damaged metadata or PEFT config file is
    named (``read_json``), before any model loads for it."""
    paths = [adapter_dir(a) for a in ([adapters] if isinstance(adapters, (str, Path)) else adapters or [])]
    for path in paths:
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path}: not an adapter directory (no adapter_config.json)")
        read_json(path / "adapter_config.json")
    return paths, [read_json(p / META) if (p / META).is_file() else {} for p in paths]


def topics(metas: list[dict]) -> list[tuple[str, set[str]]]:
    """(title, content words) of each document these adapters learned: a ``learn`` adapter of several
    documents lists each (``documents``), a combined one each of its adapters' documents, an older or
    foreign adapter only its own title."""
    out = []
    for m in metas:
        docs = [d for d in m.get("documents", []) if "vocabulary" in d]
        out += ([(d["title"], set(d["vocabulary"])) for d in docs]
                or [(m.get("title", "general knowledge"), set(m.get("vocabulary", [])))])
    return out


def title_for(question: str, titled: list[tuple[str, set[str]]]) -> str:
    """The title of the document whose distinctive words the question names most (the first on a tie):
    each document's Q→A pairs were trained under its own title, and a taught question asked under another
    is answered less often (RESULTS.md, "A taught question asked in the prompt it was trained in")."""
    words = distinctive(question)
    return max(titled, key=lambda t: len(words & t[1]))[0]


def routed(question: str, metas: list[dict]) -> bool:
    """Whether ``ask`` answers the question with these adapters (``routing``): it names something
    of their documents, or an adapter has no vocabulary to tell (not saved by ``learn``)."""
    return any("vocabulary" not in m or about(question, m["vocabulary"]) for m in metas)


def ask(questions: list[str], adapters: list[Path] | Path | str | None = None, model: str | LoadedModel | None = None,
        cfg: AskConfig | None = None, **settings) -> dict[str, list[str]]:
    """Short answers, by the base model or by each learned adapter in turn (``combine``: all of
    them at once, as one adapter whose update is the sum of theirs, ``combine_adapters``; with
    ``save_combined``, that adapter is saved there too), with no document in context: the answer phrase
    the question asks for, not a recital of what was learned. With ``route``, a question that
    names nothing of an adapter's documents is answered with the adapter disabled (``routing``:
    the update rewrites unrelated answers). Keyed by adapter directory (or ``"base"``, or the
    directories joined by " + "). ``model`` and ``settings`` (``combine=True``, ...) override ``cfg``.
    ``model`` may be your own model object (``LoadedModel.of(...)``): it answers as it is and is
    handed back as it came, without the adapters loaded into it (and in its train/eval mode)."""
    cfg = replace(cfg or AskConfig(), **{**settings, **({"model": model} if model is not None else {})})
    model, combine, route, max_new_tokens = cfg.model, cfg.combine, cfg.route, cfg.max_new_tokens
    if not all(q.strip() for q in questions):
        raise ValueError("an empty question: ask something")
    paths, metas = adapter_paths(adapters)
    if cfg.save_combined is not None:
        if not combine or len(paths) < 2:
            raise ValueError("save_combined needs --combine and two or more --adapter")
        if (target := Path(cfg.save_combined)).exists() and not (target.is_dir() and not any(target.iterdir())):
            raise ValueError(f"{cfg.save_combined}: not empty; save the combined adapter into a new directory")
    needs = {path: adapter_base(path) for path in paths}
    bases = set(needs.values())
    if model is None and len(bases) > 1:
        raise ValueError(f"the adapters were learned on different models ({', '.join(sorted(bases))}); "
                         "ask them one model at a time")
    if model is None and bases and local_spec(base := next(iter(bases))):
        # an adapter may come from someone else: its files name a Hub model, never a path to load
        raise ValueError(f"{paths[0]} was learned on the local model {base}: ask with --model {base}")
    yours = model.model if isinstance(model, LoadedModel) else None  # handed back as it came (``_hand_back``)
    before = _state(yours) if yours is not None else None
    loaded = load_model(model or (bases.pop() if bases else EMBEDDED), dtype=cfg.dtype, device=cfg.device)
    net = loaded.model
    try:
        if not paths:
            return {"base": short_answers(net, loaded.tokenizer, [("general knowledge", q) for q in questions],
                                          max_new_tokens)}
        had = list(getattr(net, "peft_config", {}))  # a PeftModel of yours: its own adapters stay
        names = [f"ask-{n}" if f"a{n}" in had else f"a{n}" for n in range(len(paths))]
        for n, path in enumerate(paths):
            try:
                net = load_adapter(net, path, name=names[n])
            except RuntimeError as e:  # PEFT's size mismatch: hundreds of lines, one per weight
                if "size mismatch" not in str(e):
                    raise
                raise ValueError(f"{path}: this adapter was trained on {needs[path]}, not on {loaded.spec}; "
                                 f"ask with --model {needs[path]}") from None
        groups = [list(range(len(paths)))] if combine else [[n] for n in range(len(paths))]
        if combine and len(paths) > 1:
            names.append(combine_adapters(net, names, paths, "ask-combined" if "combined" in had else "combined"))
            if cfg.save_combined is not None:
                save_combined(net, names[-1], Path(cfg.save_combined), loaded, metas,
                              [adapter_label(p) for p in paths])
        out = {}
        for group in groups:
            net.base_model.set_adapter(names[-1] if len(group) > 1 else names[group[0]])
            titled = topics([metas[n] for n in group])
            mine = [not route or routed(q, [metas[n] for n in group]) for q in questions]
            answers: dict[int, str] = {}
            for adapted in (True, False):
                idx = [i for i, m in enumerate(mine) if m == adapted]
                if idx:
                    with nullcontext() if adapted else net.disable_adapter():
                        # learn's adapter in the prompt its pairs trained in, the model as it was in the few-shot one
                        answers.update(zip(idx, short_answers(net, loaded.tokenizer,
                                                              [(title_for(questions[i], titled), questions[i])
                                                               for i in idx], max_new_tokens,
                                                              adapted=adapted and all(metas[n] for n in group))))
            out[" + ".join(adapter_label(paths[n]) for n in group)] = [answers[i] for i in range(len(questions))]
        return out
    finally:
        if yours is not None:
            _hand_back(yours, net, before)


def combine_adapters(net, names: list[str], paths: list[Path], name: str) -> str:
    """Add one adapter to ``net`` whose update is the sum of the named adapters' updates, and return its name:
    PEFT's ``add_weighted_adapter`` with ``cat`` (their A and B stacked, each A times its alpha/r, weights 1),
    exact where plain LoRA is summed (a DoRA or rsLoRA adapter is refused: ``cat`` would rescale it)."""
    for adapter, path in zip(names, paths):
        config = net.peft_config[adapter]
        if config.use_dora or config.use_rslora:
            raise ValueError(f"{path}: a {'DoRA' if config.use_dora else 'rsLoRA'} adapter; --combine sums plain "
                             "LoRA updates only")
    net.add_weighted_adapter(names, [1.0] * len(names), name, combination_type="cat")
    return name


def save_combined(net, name: str, out: Path, loaded: LoadedModel, metas: list[dict], labels: list[str]) -> None:
    """Save the combined adapter as a PEFT directory of its own, naming its base as a user finds it, with the
    metadata ``ask`` reads (the adapters it sums; their vocabularies joined, so it is routed as they were)."""
    with tempfile.TemporaryDirectory() as tmp:
        net.save_pretrained(tmp, selected_adapters=[name], safe_serialization=True)  # into tmp/<name>
        shutil.copytree(Path(tmp) / name, out, dirs_exist_ok=True)
    name_base_model(out, loaded.spec, loaded.path)
    meta = {"model": loaded.spec, "title": "your documents", "combined": labels,
            "documents": [{"title": t, "vocabulary": sorted(v)} for t, v in topics(metas)]}
    if all("vocabulary" in m for m in metas):
        meta["vocabulary"] = sorted(set().union(*(m["vocabulary"] for m in metas)))
    (out / META).write_text(json.dumps(meta, indent=2))


def _state(model) -> dict:
    """What ``ask`` changes in a model object of yours: the adapters of a ``PeftModel`` and which
    are active, which parameters require grad (PEFT freezes the base), train or eval mode."""
    from peft import PeftModel

    peft = isinstance(model, PeftModel)
    return {"adapters": list(model.peft_config) if peft else [], "active": list(model.active_adapters) if peft else [],
            "grads": {k: p.requires_grad for k, p in model.named_parameters()}, "training": model.training,
            "peft_config": hasattr(model, "peft_config")}


def _hand_back(model, net, before: dict) -> None:
    """Your model object as it came: the adapters ``ask`` loaded deleted (a ``PeftModel`` keeps its
    own, active as they were), a plain model's LoRA layers taken out again (as ``learn`` does; also
    where PEFT put them in and then failed to load the weights), requires_grad and train/eval mode restored."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if before["adapters"]:
        active = before["active"]
        model.base_model.set_adapter(active if len(active) > 1 else active[0])
        for name in [a for a in model.peft_config if a not in before["adapters"]]:
            model.delete_adapter(name)
    elif net is not model:
        net.unload()  # the LoRA layers out of the caller's modules, nothing merged
    else:
        for name, module in list(model.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, module.get_base_layer())
        if not before["peft_config"] and "peft_config" in vars(model):
            del model.peft_config
    grads = before["grads"]
    for k, p in model.named_parameters():
        p.requires_grad_(grads.get(k, p.requires_grad))
    model.train(before["training"])
