"""Context distillation in `learn`: the adapter, asked closed book, is trained towards the answer-token
distributions of the unadapted model reading the chunk (``learn --context-distill``), on the tiny model."""

import json
import random
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from selfadapt.knowledge.data import Passage
from selfadapt.knowledge.measure import qa_examples, qa_prompt
from selfadapt.likelihood import answer_distributions
from selfadapt.lora import Distilled, LoRAConfig, ResidentLoRA, causal_lm_loss, encode, make_batches
from selfadapt.models import load_model
from selfadapt.teaching import TEACHER_TOP_K, LearnConfig, context_targets, learn

CHUNK = Passage("otrar", "The Mongol army seized the town of Otrar in 1219. Molten silver was poured into the ears "
                "of Inalchuq. Genghis Khan sent 450 merchants to Otrar in 1218.", ())
PAIRS = [("Which town did the Mongol army seize in 1219?", "Otrar"), ("In what year was Otrar seized?", "1219"),
         ("What was poured into the ears of Inalchuq?", "Molten silver")]


def soft_loss(lora: ResidentLoRA, examples: list) -> float:
    """The training loss of ``examples`` in eval mode, token-weighted over their batches: with weight 1, the
    mean KL(teacher ∥ model) over the answer tokens."""
    total = count = 0.0
    with torch.no_grad():
        for ids, mask, labels, *soft in make_batches(encode(lora.tokenizer, examples, 512),
                                                     lora.tokenizer.pad_token_id, 16, 4096, random.Random(0)):
            n = int((labels[:, 1:] != -100).sum())
            total += float(causal_lm_loss(lora.model, ids, mask, labels, *soft)) * n
            count += n
    return total / count


def test_the_teacher_reads_the_chunk_with_the_adapter_off_and_differs_from_the_closed_book(tiny, tiny_dir):
    tok = tiny.tokenizer
    lora = ResidentLoRA(tiny.model, tok, LoRAConfig(r=4, alpha=8, lr=2e-2, epochs=3, batch_size=2))
    lora.train([CHUNK.text], seed=0)  # an adapter that changes the logits: the teacher must not see it
    targets = context_targets(lora, CHUNK, PAIRS, 0.5)
    base = load_model(str(tiny_dir), dtype="float32", device="cpu")  # the model as it was, never adapted
    eos = tok.eos_token
    opened = answer_distributions(base.model, tok, [(qa_prompt(tok, CHUNK.title, q, CHUNK.context), a + eos)
                                                    for q, a in PAIRS], TEACHER_TOP_K)
    closed = answer_distributions(base.model, tok, qa_examples(tok, CHUNK.title, PAIRS), TEACHER_TOP_K)
    assert [(t.prompt, t.completion) for t in targets] == qa_examples(tok, CHUNK.title, PAIRS)  # the student's own
    assert all(CHUNK.context not in t.prompt and t.weight == 0.5 for t in targets)
    for t, (ids, logprobs), (closed_ids, closed_logprobs) in zip(targets, opened, closed):
        n = len(tok(t.completion, add_special_tokens=False)["input_ids"])
        assert t.top_ids.shape == t.top_logprobs.shape == (n, TEACHER_TOP_K)
        assert torch.equal(t.top_ids, ids) and torch.allclose(t.top_logprobs, logprobs, atol=1e-5)
        assert torch.allclose(t.top_logprobs.logsumexp(-1), torch.zeros(n), atol=1e-5)  # renormalised over the k
    assert any(not torch.equal(t.top_ids, c) or not torch.allclose(t.top_logprobs, lp, atol=1e-3)
               for t, (c, lp) in zip(targets, closed))  # reading the chunk changes what the model expects


def test_soft_targets_sit_on_the_answer_tokens(tiny):
    """The model's own closed-book distribution over the whole vocabulary as the teacher: the KL is zero
    only when each target row lands on the position that predicts its answer token."""
    tok = tiny.tokenizer
    lora = ResidentLoRA(tiny.model, tok, LoRAConfig(r=4))
    taught = qa_examples(tok, CHUNK.title, PAIRS)
    own = answer_distributions(lora.model, tok, taught, len(tok))
    assert soft_loss(lora, [Distilled(p, c, ids, lp, 1.0) for (p, c), (ids, lp) in zip(taught, own)]) == \
        pytest.approx(0.0, abs=1e-4)
    shifted = [Distilled(p, c, ids.roll(1, 0), lp.roll(1, 0), 1.0) for (p, c), (ids, lp) in zip(taught, own)]
    assert soft_loss(lora, shifted) > 0.1  # one token off
    # a weight near 0 takes the soft path and gives the plain cross-entropy
    faint = [Distilled(p, c, ids, lp, 1e-30) for (p, c), (ids, lp) in zip(taught, own)]
    assert soft_loss(lora, faint) == pytest.approx(soft_loss(lora, taught), rel=1e-5)


def test_soft_targets_stay_aligned_when_cut_mixed_with_plain_rows_or_without_logits_to_keep(tiny):
    """Three paths a document can take: its answer cut by ``max_length`` (the rows kept are the tokens
    kept), a batch where soft and plain sequences sit side by side (the plain row's loss is its
    cross-entropy), and a model that does not take ``logits_to_keep`` (the full logits, same loss)."""
    tok = tiny.tokenizer
    lora = ResidentLoRA(tiny.model, tok, LoRAConfig(r=4))
    taught = qa_examples(tok, CHUNK.title, PAIRS)
    own = answer_distributions(lora.model, tok, taught, len(tok))
    exact = [Distilled(p, c, ids, lp, 1.0) for (p, c), (ids, lp) in zip(taught, own)]
    (ids, start, (top, _, _)), = encode(tok, exact[2:], len(encode(tok, taught[2:], 512)[0][0]) - 1)
    assert top.shape[0] == len(ids) - start  # one answer token cut: one target row fewer
    with torch.no_grad():
        (batch,) = [b for b in make_batches(encode(tok, exact[2:], len(ids)), tok.pad_token_id, 1, 4096,
                                            random.Random(0))]
        assert float(causal_lm_loss(lora.model, *batch[:3], batch[3])) == pytest.approx(0.0, abs=1e-4)
    mixed = [exact[0], taught[1]]  # the model's own distribution on one row, none on the other
    with torch.no_grad():
        (ids, mask, labels, soft), = make_batches(encode(tok, mixed, 512), tok.pad_token_id, 2, 4096,
                                                  random.Random(0))
        plain_row = [r for r in range(2) if not soft[2][r].any()]
        assert len(plain_row) == 1
        r = plain_row[0]
        n_plain, n_all = int((labels[r, 1:] != -100).sum()), int((labels[:, 1:] != -100).sum())
        alone = float(causal_lm_loss(lora.model, ids[r:r + 1], mask[r:r + 1], labels[r:r + 1]))
        together = float(causal_lm_loss(lora.model, ids, mask, labels, soft))
        assert together == pytest.approx(alone * n_plain / n_all, rel=1e-3)  # the soft row adds KL 0

        class NoKeep(torch.nn.Module):  # a causal LM that does not take ``logits_to_keep``
            def forward(self, input_ids, attention_mask):
                return lora.model(input_ids=input_ids, attention_mask=attention_mask)

        assert float(causal_lm_loss(NoKeep(), ids, mask, labels, soft)) == pytest.approx(together, rel=1e-4)


def test_weight_zero_trains_exactly_as_the_plain_pairs(tiny):
    tok = tiny.tokenizer
    lora = ResidentLoRA(tiny.model, tok, LoRAConfig(r=4, alpha=8, lr=1e-2, epochs=3, batch_size=2))
    targets = context_targets(lora, CHUNK, PAIRS, 0.0)
    plain = lora.train(qa_examples(tok, CHUNK.title, PAIRS) + [CHUNK.text], seed=3).losses
    distilled = lora.train(targets + [CHUNK.text], seed=3).losses
    assert distilled == plain and len(plain) == 6  # bit for bit


def test_context_distillation_brings_the_closed_book_adapter_to_the_reading_model(tiny):
    tok = tiny.tokenizer
    lora = ResidentLoRA(tiny.model, tok, LoRAConfig(r=8, alpha=16, lr=2e-2, epochs=15, batch_size=4))
    full = context_targets(lora, CHUNK, PAIRS, 1.0)  # weight 1: the loss is the KL alone
    before = soft_loss(lora, full)
    lora.train(qa_examples(tok, CHUNK.title, PAIRS), seed=0)
    gold_only = soft_loss(lora, full)
    stats = lora.train(context_targets(lora, CHUNK, PAIRS, 0.5), seed=0)
    after = soft_loss(lora, full)
    # the gold spans alone take the adapter away from the reader's distributions; with them it comes nearer
    assert stats.steps == 15 and after < 0.9 * before and after < 0.5 * gold_only, (before, gold_only, after)


def test_learn_context_distill_from_the_cli_to_the_update_and_the_adapters_meta(tiny_dir, tmp_path, monkeypatch):
    import selfadapt.teaching as teaching
    from selfadapt.cli import app

    seen = []
    monkeypatch.setattr(teaching, "learn", lambda files, out, cfg: seen.append(cfg) or {})  # no model loads
    CliRunner().invoke(app, ["learn", "doc.txt", "-o", str(tmp_path / "out"), "--context-distill", "0.5"])
    assert seen[0].context_distill == 0.5
    monkeypatch.undo()
    with pytest.raises(ValueError, match="context_distill"):
        LearnConfig(context_distill=1.5)

    doc = tmp_path / "otrar.txt"
    doc.write_text(CHUNK.context)
    trained = []
    real = ResidentLoRA.train
    monkeypatch.setattr(ResidentLoRA, "train", lambda self, ex, **kw: trained.append(ex) or real(self, ex, **kw))
    cfg = LearnConfig(model=str(tiny_dir), context_distill=0.5, check="none", probe=False, distill=0, reading=0,
                      lora=LoRAConfig(r=4, epochs=1), dtype="float32", device="cpu")
    meta = learn([doc], tmp_path / "adapter", cfg, progress=lambda *a: None)
    (examples,) = trained
    soft = [ex for ex in examples if isinstance(ex, Distilled)]
    pairs = [ex for ex in examples if isinstance(ex, tuple)]
    assert soft and not pairs and all(ex.weight == 0.5 for ex in soft)  # every taught Q→A pair, none plain
    rows = [json.loads(line) for line in (tmp_path / "adapter" / "train.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["completion"]) for r in rows if r["prompt"]] == [(ex.prompt, ex.completion) for ex in soft]
    assert "otrar.txt: the model reading it, as the teacher" in meta["seconds"]
    saved = json.loads((tmp_path / "adapter" / "selfadapt.json").read_text())
    assert saved["config"]["context_distill"] == 0.5 == meta["config"]["context_distill"]

    monkeypatch.setattr(teaching, "context_targets", lambda *a: pytest.fail("off by default: no teacher"))
    trained.clear()
    learn([doc], tmp_path / "plain", replace(cfg, context_distill=0.0), progress=lambda *a: None)
    assert not any(isinstance(ex, Distilled) for ex in trained[0])
