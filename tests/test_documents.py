"""`learn`'s documents: PDF, HTML and DOCX through MarkItDown, chunks by the model's tokens."""

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
