"""`learn`'s documents: PDF, HTML and DOCX through MarkItDown, chunks by the model's tokens."""

import codecs
import random
import zipfile

import pytest

from selfadapt.documents import chunk_document, document_paths, plain_text, read_document

FACT = "The Harlow lighthouse was built in 1871 by Edith Crane."


def _pdf(path, text):
    """A one-page PDF with one line of Helvetica text, offsets computed."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>",
               b"<</Length %d>>stream\n" % len(stream) + stream + b"\nendstream",
               b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>"]
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(out)


def _docx(path, text):
    """The three parts a Word document needs."""
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
                   'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
                   '</Types>')
        z.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
                   'officeDocument" Target="word/document.xml"/></Relationships>')
        z.writestr("word/document.xml", f'<w:document xmlns:w="{w}"><w:body><w:p><w:r><w:t>Harlow</w:t></w:r></w:p>'
                   f'<w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>')


@pytest.mark.parametrize("suffix", ["pdf", "html", "docx"])
def test_each_format_reads_to_its_text(tmp_path, suffix):
    pytest.importorskip("markitdown", reason="documents extra: pip install 'selfadapt[documents]'")
    path = tmp_path / f"doc.{suffix}"
    if suffix == "pdf":
        _pdf(path, FACT)
    elif suffix == "docx":
        _docx(path, FACT)
    else:
        path.write_text('<html><body><h1>Harlow</h1><p>The Harlow lighthouse was built in <a href="https://x.org/y">'
                        '1871</a> by <b>Edith Crane</b>.</p><img src="a.png" alt="a photo"></body></html>')
    text = read_document(path)
    assert FACT in " ".join(text.split()), text
    assert "x.org" not in text and "a.png" not in text and "#" not in text and "**" not in text
    assert document_paths([tmp_path]) == [path]


@pytest.mark.parametrize("name, data", [("broken.docx", b"PK\x03\x04 not a zip"),
                                        ("broken.pdf", b"%PDF-1.4\n1 0 obj <<garbage")])
def test_a_broken_document_names_the_file(tmp_path, name, data):
    """MarkItDown hands a file its converter cannot read to the plain-text fallback: refused."""
    pytest.importorskip("markitdown")
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"{name}: could not be converted"):
        read_document(path)


def test_markup_is_dropped_and_link_text_kept():
    assert plain_text("## Title\n- item [one](http://a) ![img](b.png)\n| a | b |\n|---|---|\n**bold**").split() == \
        ["Title", "item", "one", "a", "b", "bold"]


def test_chunks_hold_at_most_n_tokens_and_lose_no_word(tiny_tokenizer):
    text = "a b c\n\nd e\n\n" + " ".join(f"w{i}" for i in range(60))
    chunks = chunk_document(text, "T", tiny_tokenizer, max_tokens=24)
    sizes = [len(tiny_tokenizer(c.context, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert len(chunks) > 2 and max(sizes) <= 24
    assert " ".join(c.context for c in chunks).split() == text.split()  # cut at spaces, in order
    assert chunks[0].context == "a b c\nd e" and [c.index for c in chunks] == list(range(len(chunks)))


def test_a_binary_file_is_refused_whatever_its_name(tmp_path):
    """`/bin/ls` named doc.txt used to become hundreds of chunks of replacement characters."""
    path = tmp_path / "doc.txt"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ValueError, match=r"doc\.txt: .*binary"):
        read_document(path)


def test_text_in_another_encoding_is_decoded_not_mangled(tmp_path):
    text = ("Jürgen Müller gründete die Brauerei 1871 in Köln. Später übernahm sein Sohn die Führung, "
            "und die Brauerei wuchs über die Grenzen der Stadt hinaus.\n")
    path = tmp_path / "brauerei.txt"
    path.write_bytes(text.encode("latin-1"))
    assert read_document(path) == text
    path.write_bytes(text.encode("utf-8"))
    assert read_document(path) == text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-be", "utf-32-be"])
def test_utf16_and_utf32_text_with_a_byte_order_mark_is_read_not_refused_as_binary(tmp_path, encoding):
    """Their NUL bytes made the binary check refuse them: the byte-order mark is read first."""
    text = ("Jürgen Müller gründete die Brauerei 1871 in Köln. Später übernahm sein Sohn die Führung, "
            "und die Brauerei wuchs über die Grenzen der Stadt hinaus.\n")
    bom = {"utf-16-be": codecs.BOM_UTF16_BE, "utf-32-be": codecs.BOM_UTF32_BE}.get(encoding, b"")
    path = tmp_path / "brauerei.txt"
    path.write_bytes(bom + text.encode(encoding))  # "utf-16"/"utf-32" write their own (little-endian here)
    assert read_document(path) == text
    for bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF32_LE):  # a byte-order mark in front of binary data
        path.write_bytes(bom + bytes(range(256)) * 64)
        with pytest.raises(ValueError, match=r"brauerei\.txt: .*binary"):
            read_document(path)


def test_an_unknown_extension_is_refused_as_a_folder_scan_does(tmp_path):
    path = tmp_path / "notes.xyz"
    path.write_text("The Harlow lighthouse was built in 1871.")
    with pytest.raises(ValueError, match=r"notes\.xyz: .*\.txt"):
        document_paths([path])


def test_a_long_paragraph_is_cut_in_linear_time(tiny_tokenizer):
    """One 200 KB line took 13 s (each cut re-tokenized the rest): the text is tokenized once."""
    calls = []

    def counting(text, **kwargs):
        calls.append(len(text))
        return tiny_tokenizer(text, **kwargs)

    text = " ".join(f"w{i}" for i in range(3_000))
    chunks = chunk_document(text, "T", counting, max_tokens=24)
    assert " ".join(c.context for c in chunks).split() == text.split()
    assert sum(calls) < 3 * len(text)  # the quadratic version read the text hundreds of times over


def _long_line(n_words: int = 3_000) -> str:
    """One line of prose-like text: capitalised words, numbers, punctuation, brackets."""
    rng = random.Random(0)
    words = ("The Harlow lighthouse was built in by Edith Crane while Mongol army seized town of Otrar after "
             "Genghis Khan ordered Subutai and Jebe to hunt the Shah quick brown fox jumps over lazy dog "
             "Implications fragmentation decisive Question Answer silver Müller Köln Brauerei").split()
    out = []
    for _ in range(n_words):
        word, r = rng.choice(words), rng.random()
        word = str(rng.randint(1, 99_999)) if r < 0.1 else word.capitalize() if r < 0.2 else \
            word.upper() if r < 0.25 else word
        word = ("(" if rng.random() < 0.03 else "") + word + (rng.choice(".,;:!?)") if rng.random() < 0.1 else "")
        out.append(word)
    return " ".join(out)


def _assert_cut_within(tokenizer, max_tokens: int):
    text = _long_line()
    chunks = chunk_document(text, "T", tokenizer, max_tokens=max_tokens)
    sizes = [len(tokenizer(c.context, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(sizes) <= max_tokens, sorted(sizes)[-5:]
    assert " ".join(c.context for c in chunks).split() == text.split()
    assert sum(sizes) > 0.8 * len(sizes) * max_tokens  # still cut near the limit, not word by word
    words, paragraphs = text.split(), []  # paragraphs of all lengths: a short last piece counts too
    for n in range(1, 60):
        paragraphs.append(" ".join(words[:n]))
        words = words[n:]
    text = "\n\n".join(paragraphs)
    chunks = chunk_document(text, "T", tokenizer, max_tokens=max_tokens)
    sizes = [len(tokenizer(c.context, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(sizes) <= max_tokens, sorted(sizes)[-5:]
    assert " ".join(c.context for c in chunks).split() == text.split()


@pytest.mark.parametrize("max_tokens", [16, 24, 64, 256])
def test_a_long_line_is_cut_within_max_tokens_counted_alone(tiny_tokenizer, max_tokens):
    """A piece starting at " Word" in the line's tokens is "Word" alone, which can take more
    tokens: walking the line's offsets made 2,498 of 37,885 SmolLM2 pieces too long."""
    _assert_cut_within(tiny_tokenizer, max_tokens)


@pytest.mark.integration
@pytest.mark.parametrize("max_tokens", [16, 24, 64, 256])
def test_a_long_line_is_cut_within_max_tokens_of_the_embedded_tokenizer(max_tokens):
    from selfadapt.models import load_tokenizer

    _assert_cut_within(load_tokenizer("smollm2"), max_tokens)
