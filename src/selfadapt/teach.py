"""Teach a model documents: self-edits → one LoRA adapter, learned document by document.

The practical use of SEAL's inner loop: a person gives text files, the model writes
training data about each, and the adapter it learns can then answer questions about
them without the documents in context. Documents are learned in sequence into one
adapter, each update replaying a few examples of the earlier ones (without replay, the
second document erases the first: see ``eval continual``); the model's own check
questions, asked before and after, show what was learned.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .domain import InvalidSelfEdit
from .generation import SamplingConfig, generate
from .grading import contains, normalize_answer, token_f1
from .knowledge.continual import replay_examples
from .knowledge.data import Passage
from .knowledge.domain import ANSWER_CAP, KnowledgeDomain
from .knowledge.experiment import DEFAULT_DECODING, DEFAULT_FORMAT
from .knowledge.measure import short_answer_prompt
from .knowledge.selfedit import FORMATS, selfedit_items
from .lora import Example, LoRAConfig, ResidentLoRA, load_adapter
from .models import EMBEDDED, load_model
from .policy import write_selfedits

log = logging.getLogger(__name__)
META = "selfadapt.json"


@dataclass
class LearnConfig:
    model: str = EMBEDDED
    fmt: str = DEFAULT_FORMAT  # the eval default: grounded self-QA
    grounded: bool = DEFAULT_DECODING == "grounded"
    selfedits_per_chunk: int = 2
    chunk_words: int = 200
    replay: int = 8  # examples of earlier documents mixed into each later document's update
    check: bool = True  # the model writes check questions per chunk (held out of training)
    temperature: float = 1.0
    top_p: float = 0.95
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"


def chunk_document(text: str, title: str, max_words: int) -> list[Passage]:
    """Split on blank lines and pack paragraphs into passages of at most ~max_words words."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    for para in paragraphs:
        words = para.split()
        for start in range(0, len(words), max_words):  # a giant paragraph is cut
            piece = " ".join(words[start : start + max_words])
            if chunks and len(chunks[-1].split()) + len(piece.split()) <= max_words:
                chunks[-1] += "\n" + piece
            else:
                chunks.append(piece)
    return [Passage(title, c, (), index=i) for i, c in enumerate(chunks)]


def documents(paths: list[Path]) -> list[Path]:
    """The files to learn, in order: files as given, a folder's .txt/.md files sorted by name."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".txt", ".md") and p.is_file())
            if not found:
                raise FileNotFoundError(f"{path} holds no .txt or .md document")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"document not found: {path}")
    return out


def check_questions(domain: KnowledgeDomain, chunk: Passage, text: str) -> list[tuple[str, str]]:
    """Q/A pairs the model wrote about a chunk, kept out of training: asked after it, without
    the document, they show what was learned."""
    try:
        return [(q, a) for q, a in selfedit_items("self-qa", text)
                if not domain.grounded or contains(normalize_answer(chunk.context), a)]
    except InvalidSelfEdit:
        return []


def learn(paths: list[Path], out: Path, cfg: LearnConfig) -> dict:
    """Learn documents in sequence into one adapter (replaying a few examples of earlier ones)
    and save it with its metadata to ``out``; with ``check``, grade the model's own check
    questions before and after, without the documents in context."""
    files = documents(paths)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    docs = []
    for path in files:
        title = path.stem.replace("_", " ").replace("-", " ")
        chunks = chunk_document(path.read_text(encoding="utf-8", errors="replace"), title, cfg.chunk_words)
        if not chunks:
            raise ValueError(f"{path} holds no text to learn")
        docs.append((path, title, chunks))
    loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    lora = ResidentLoRA(loaded.model, loaded.tokenizer, cfg.lora)
    domain = KnowledgeDomain(loaded.tokenizer, cfg.fmt, grounded=cfg.grounded)
    checker = KnowledgeDomain(loaded.tokenizer, "self-qa", grounded=True)
    sampling = SamplingConfig(FORMATS[cfg.fmt].max_new_tokens, cfg.temperature, cfg.top_p)
    checks: list[dict] = []
    if cfg.check:  # written by the unadapted model, before anything is learned
        drafts, _ = write_selfedits(lora.model, lora.tokenizer, checker, [c for _, _, cs in docs for c in cs], 1,
                                    SamplingConfig(FORMATS["self-qa"].max_new_tokens, cfg.temperature, cfg.top_p),
                                    seed=cfg.seed + 7919)
        flat = iter(drafts)
        checks = [{"document": str(path), "title": title, "question": q, "expected": a}
                  for path, title, chunks in docs for chunk in chunks for q, a in check_questions(checker, chunk,
                                                                                                 next(flat)[0])]
        for c, answer in zip(checks, answer_questions(lora.model, lora.tokenizer, checks)):
            c["before"] = answer
    history: list[list[Example]] = []
    rng = random.Random(cfg.seed)
    report, stats = [], None
    for d, (path, title, chunks) in enumerate(docs):
        log.info("%s: writing %d %s self-edits for %d chunk(s)", path.name, cfg.selfedits_per_chunk * len(chunks),
                 cfg.fmt, len(chunks))
        selfedits, gen_s = write_selfedits(lora.model, lora.tokenizer, domain, chunks, cfg.selfedits_per_chunk,
                                           sampling, seed=cfg.seed + d)
        texts, invalid = [], 0
        for chunk, edits in zip(chunks, selfedits):
            texts.append(chunk.text)
            for edit in edits:
                try:
                    texts.extend(domain.training_examples(chunk, edit)[1:])  # [0] is the chunk itself
                except InvalidSelfEdit as e:
                    invalid += 1
                    log.warning("%s chunk %d: self-edit skipped: %s", path.name, chunk.index, e)
        replayed = replay_examples(history, cfg.replay, rng)
        log.info("%s: training on %d sequences (+%d replayed)", path.name, len(texts), len(replayed))
        stats = lora.train(texts + replayed, seed=cfg.seed + d, fresh=d == 0)  # one adapter, continued
        history.append(texts)
        report.append({"document": str(path), "title": title, "chunks": len(chunks), "sequences": len(texts),
                       "replayed": len(replayed), "invalid_selfedits": invalid, "steps": stats.steps,
                       "first_loss": stats.losses[0] if stats.losses else None, "final_loss": stats.final_loss,
                       "generate_seconds": gen_s, "train_seconds": stats.seconds, "selfedits": selfedits})
    for c, answer in zip(checks, answer_questions(lora.model, lora.tokenizer, checks)):
        c["after"] = answer
        c["f1_before"], c["f1_after"] = token_f1(c["before"], c["expected"]), token_f1(answer, c["expected"])
    out.mkdir(parents=True, exist_ok=True)
    lora.save(out)
    meta = {"model": cfg.model, "title": docs[-1][1] if len(docs) == 1 else "your documents",
            "documents": [{k: v for k, v in r.items() if k != "selfedits"} for r in report],
            "chunks": sum(r["chunks"] for r in report), "sequences": sum(r["sequences"] for r in report),
            "steps": sum(r["steps"] for r in report), "final_loss": stats.final_loss if stats else None,
            "checks": len(checks),
            "check_f1_before": float(np.mean([c["f1_before"] for c in checks])) if checks else None,
            "check_f1_after": float(np.mean([c["f1_after"] for c in checks])) if checks else None,
            "config": asdict(cfg)}
    (out / META).write_text(json.dumps(meta, indent=2))
    (out / "selfedits.json").write_text(json.dumps([r["selfedits"] for r in report], indent=2, ensure_ascii=False))
    (out / "checks.json").write_text(json.dumps(checks, indent=2, ensure_ascii=False))
    return meta


def answer_questions(model, tokenizer, checks: list[dict]) -> list[str]:
    """Short answers (the measure's few-shot prompt), without the documents in context."""
    prompts = [short_answer_prompt(tokenizer, c["title"], c["question"]) for c in checks]
    return [r.split("\n")[0].strip() for r in generate(model, tokenizer, prompts, SamplingConfig(ANSWER_CAP, 0.0))]


def ask(questions: list[str], adapter: Path | None, model: str | None = None, *, max_new_tokens: int = ANSWER_CAP,
        dtype: str = "auto", device: str = "auto") -> list[str]:
    """Short answers, with the base model or a learned adapter (no document in context): the
    answer phrase the question asks for, not a recital of what was learned."""
    meta = {}
    if adapter is not None:
        meta_file = Path(adapter) / META
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    loaded = load_model(model or meta.get("model", EMBEDDED), dtype=dtype, device=device)
    net = load_adapter(loaded.model, Path(adapter)) if adapter is not None else loaded.model
    title = meta.get("title", "general knowledge")
    prompts = [short_answer_prompt(loaded.tokenizer, title, q) for q in questions]
    answers = generate(net, loaded.tokenizer, prompts, SamplingConfig(max_new_tokens, 0.0, 1.0, 8))
    return [a.split("\n")[0].strip() for a in answers]
