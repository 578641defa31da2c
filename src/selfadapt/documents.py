"""The documents `learn` reads: text, Markdown, PDF, HTML, DOCX (and what else MarkItDown
converts), cut into passages of at most N tokens of the model's own tokenizer.

Conversion is MarkItDown's (Microsoft's maintained converter, optional extra
``selfadapt[documents]``); what is written here is only what it does not do: keep the text of
Markdown links and drop images and markup, which are not facts to learn, and pack paragraphs
into passages by token count, so a chunk fits the inner loop's sequence length whatever the
language or script.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from pathlib import Path

from .knowledge.data import Passage

TEXT = (".txt", ".md")
CONVERTED = (".pdf", ".html", ".htm", ".docx", ".pptx", ".xlsx", ".epub")
# UTF-32's marks first: UTF-32-LE's (FF FE 00 00) starts with UTF-16-LE's (FF FE)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def document_paths(paths: list[Path]) -> list[Path]:
    """The files to learn, in order: files as given, a folder's documents sorted by name."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in TEXT + CONVERTED and p.is_file())
            if not found:
                raise FileNotFoundError(f"{path} holds no document ({', '.join(TEXT + CONVERTED)})")
            out += found
        elif path.is_file():
            if path.suffix.lower() not in TEXT + CONVERTED:
                raise ValueError(f"{path}: not a document selfadapt reads ({', '.join(TEXT + CONVERTED)})")
            out.append(path)
        else:
            raise FileNotFoundError(f"document not found: {path}")
    return out


def read_document(path: Path) -> str:
    """A document's text: plain files as they are, others converted to Markdown by MarkItDown
    and stripped of markup."""
    if path.suffix.lower() not in CONVERTED:
        return decode_text(path, path.read_bytes())
    try:
        from markitdown import MarkItDown
    except ImportError:
        raise ValueError(f"{path}: reading {path.suffix} files needs MarkItDown: "
                         "pip install 'selfadapt[documents]'") from None
    if not _looks_like(path):
        raise ValueError(f"{path}: could not be converted (not a valid {path.suffix} file)")
    if path.suffix.lower() in (".html", ".htm"):
        decode_text(path, path.read_bytes())  # HTML is text: binary data is refused as for a .txt
    try:
        markdown = MarkItDown(enable_plugins=False).convert(str(path)).text_content
    except Exception as e:  # MarkItDown wraps each converter's own errors
        raise ValueError(f"{path}: could not be converted ({type(e).__name__}: {e})") from None
    if markdown.strip() == path.read_bytes().decode("utf-8", errors="replace").strip():
        # a converter that fails hands the file to MarkItDown's plain-text fallback: its raw bytes
        raise ValueError(f"{path}: could not be converted (not a valid {path.suffix} file?)")
    return plain_text(markdown)


def decode_text(path: Path, raw: bytes) -> str:
    """A text file's characters: UTF-8, else the encoding charset-normalizer finds (a Latin-1
    "Müller" read as UTF-8 would teach "M\ufffdller"). Binary data is refused, not learned as
    replacement characters. UTF-16 and UTF-32 are read by their byte-order mark, before the
    NUL-byte test for binary data that their zero bytes would fail."""
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            try:
                text = raw[len(bom):].decode(encoding)
            except UnicodeDecodeError:
                raise ValueError(f"{path}: this is binary data, not {encoding} text") from None
            if "\x00" in text[:8192]:
                raise ValueError(f"{path}: this is binary data, not text")
            return text
    if b"\x00" in raw[:8192]:
        raise ValueError(f"{path}: this is binary data, not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None or best.percent_chaos > 0.2:  # nothing reads it as language: binary or broken
        raise ValueError(f"{path}: this is binary data or text in an encoding that could not be detected; "
                         "save it as UTF-8")
    return str(best)


def _looks_like(path: Path) -> bool:
    """The file has its format's signature: MarkItDown reads anything else as text, silently."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return path.read_bytes()[:1024].lstrip().startswith(b"%PDF")
    if suffix in (".docx", ".pptx", ".xlsx", ".epub"):
        return zipfile.is_zipfile(path)
    return True


def plain_text(markdown: str) -> str:
    """Markdown without its markup: images dropped, links and emphasis kept as their text,
    headings and list markers removed, table pipes as spaces."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", markdown)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"^\s{0,3}(#{1,6}\s+|[-*+]\s+|>\s?)", "", text, flags=re.M)
    text = re.sub(r"^\s*\|?\s*:?-{3,}.*$", "", text, flags=re.M)  # table rules
    text = text.replace("|", " ")
    return re.sub(r"(\*\*|__|`)", "", text)


def chunk_document(text: str, title: str, tokenizer, max_tokens: int) -> list[Passage]:
    """Split on blank lines and pack paragraphs into passages of at most ``max_tokens`` tokens;
    a paragraph longer than that is cut at the last space before the limit."""
    if max_tokens < 1:
        raise ValueError(f"a chunk must hold at least one token, got max_tokens={max_tokens}")
    def n_tokens(s: str) -> int:
        return len(tokenizer(s, add_special_tokens=False)["input_ids"])

    chunks: list[str] = []
    for para in (" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()):
        for k, piece in enumerate(_cut(para, tokenizer, max_tokens)):
            # a paragraph's later piece follows one cut where its first word no longer fitted: it
            # starts a chunk (counting each such pair read a long paragraph twice more)
            if k == 0 and chunks and n_tokens(chunks[-1] + "\n" + piece) <= max_tokens:
                chunks[-1] += "\n" + piece
            else:
                chunks.append(piece)
    return [Passage(title, c, (), index=i) for i, c in enumerate(chunks)]


def _cut(para: str, tokenizer, max_tokens: int) -> list[str]:
    """A paragraph in pieces of at most ``max_tokens`` tokens, each cut at the last space before
    the limit. The paragraph is tokenized once and walked by its offsets: re-tokenizing the rest
    after every cut made a long single-line file quadratic. Each piece is then counted alone (a
    piece starting at a " Word" token is "Word", which can take more tokens) and, if over, cut at
    an earlier space: a piece is ~``max_tokens`` long, so this stays linear."""
    def fits(start: int, cut: int) -> bool:
        return len(tokenizer(para[start:cut].strip(), add_special_tokens=False)["input_ids"]) <= max_tokens

    offsets = tokenizer(para, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    pieces, first = [], 0  # ``first``: the first token not yet in a piece
    while first < len(offsets):
        start, last = offsets[first][0], min(first + max_tokens, len(offsets)) - 1
        if last == len(offsets) - 1 and (first == 0 or fits(start, len(para))):
            pieces.append(para[start:].strip())
            break
        end = offsets[last][1]
        cut = para.rfind(" ", start, end + 1)
        while cut > start and not fits(start, cut):
            cut = para.rfind(" ", start, cut)
        if cut <= start or offsets[first][1] > cut:  # one very long word: cut at a token boundary
            while last > first and not fits(start, offsets[last][1]):
                last -= 1
            cut = offsets[last][1]
        pieces.append(para[start:cut].strip())
        # the tokens up to the cut, and a " " token after it, which would take a place in the next
        while first < len(offsets) and (offsets[first][1] <= cut or para[offsets[first][0]:offsets[first][1]] == " "):
            first += 1
    return [p for p in pieces if p]
