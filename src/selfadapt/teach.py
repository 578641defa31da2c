"""Teach a model a document: self-edits → one LoRA update → a saved PEFT adapter.

The practical use of SEAL's inner loop: a person gives a text file, the model writes
training data about it, and the adapter it learns can then answer questions about the
document without the document in context.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .domain import InvalidSelfEdit
from .generation import SamplingConfig, generate
from .knowledge.data import Passage
from .knowledge.domain import KnowledgeDomain
from .knowledge.measure import qa_prompt
from .knowledge.selfedit import FORMATS
from .lora import LoRAConfig, ResidentLoRA, load_adapter
from .models import EMBEDDED, load_model
from .policy import write_selfedits

log = logging.getLogger(__name__)
META = "selfadapt.json"


@dataclass
class LearnConfig:
    model: str = EMBEDDED
    fmt: str = "implications"
    selfedits_per_chunk: int = 2
    chunk_words: int = 200
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


def learn(path: Path, out: Path, cfg: LearnConfig) -> dict:
    """Learn the document at ``path``; writes the adapter and its metadata to ``out``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"document not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    title = path.stem.replace("_", " ").replace("-", " ")
    chunks = chunk_document(text, title, cfg.chunk_words)
    if not chunks:
        raise ValueError(f"{path} holds no text to learn")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    lora = ResidentLoRA(loaded.model, loaded.tokenizer, cfg.lora)
    domain = KnowledgeDomain(loaded.tokenizer, cfg.fmt)
    sampling = SamplingConfig(FORMATS[cfg.fmt].max_new_tokens, cfg.temperature, cfg.top_p)
    log.info("writing %d %s self-edits for %d chunk(s)", cfg.selfedits_per_chunk * len(chunks), cfg.fmt, len(chunks))
    selfedits, gen_s = write_selfedits(lora.model, lora.tokenizer, domain, chunks, cfg.selfedits_per_chunk,
                                       sampling, seed=cfg.seed)
    texts, invalid = [], 0
    for chunk, edits in zip(chunks, selfedits):
        texts.append(chunk.text)
        for edit in edits:
            try:
                texts.extend(domain.training_texts(chunk, edit)[1:])  # [0] is the chunk itself
            except InvalidSelfEdit as e:
                invalid += 1
                log.warning("chunk %d: self-edit skipped: %s", chunk.index, e)
    log.info("training LoRA on %d sequences", len(texts))
    stats = lora.train(texts, seed=cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    lora.save(out)
    meta = {"model": cfg.model, "title": title, "source": str(path), "chunks": len(chunks),
            "sequences": len(texts), "invalid_selfedits": invalid, "steps": stats.steps,
            "first_loss": stats.losses[0] if stats.losses else None, "final_loss": stats.final_loss,
            "generate_seconds": gen_s, "train_seconds": stats.seconds, "config": asdict(cfg)}
    (out / META).write_text(json.dumps(meta, indent=2))
    (out / "selfedits.json").write_text(json.dumps(selfedits, indent=2, ensure_ascii=False))
    return meta


def ask(questions: list[str], adapter: Path | None, model: str | None = None, *, max_new_tokens: int = 64,
        dtype: str = "auto", device: str = "auto") -> list[str]:
    """Answer questions with the base model, or with a learned adapter (no document in context)."""
    meta = {}
    if adapter is not None:
        meta_file = Path(adapter) / META
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    loaded = load_model(model or meta.get("model", EMBEDDED), dtype=dtype, device=device)
    net = load_adapter(loaded.model, Path(adapter)) if adapter is not None else loaded.model
    title = meta.get("title", "general knowledge")
    prompts = [qa_prompt(loaded.tokenizer, title, q) for q in questions]
    return generate(net, loaded.tokenizer, prompts, SamplingConfig(max_new_tokens, 0.0, 1.0, 8))
