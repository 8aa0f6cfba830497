"""Extraction: from fetched or read bytes to parts of UTF-8 text.

A document becomes one or more `Part`s, each a stream of UTF-8 chunks the detectors scan:
the text itself, and what is embedded in it (base64 blocks, compressed streams, zip members;
a spreadsheet's sheets as `;`-separated rows, a PDF's page text),
depth- and size-limited by a `Budget`. Compressed input is recognised by its magic bytes,
HTML by its tags (or Content-Type), the encoding by `decode.sniff_encoding`.

Parts are produced lazily and must be consumed in order: blobs found while a part is
scanned are extracted after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .blobs import CORRUPT, MiB, BlobFinder, Budget, Refused, compression_of, decompress, zip_members
from .decode import decode_text, sniff_encoding, to_utf8
from .html import html_to_text, looks_like_html
from .office import office_parts
from .pdf import MAX_PDF, looks_like_pdf, pdf_text

CHUNK = MiB
HEAD = 64 * 1024
MAX_HTML = 16 * MiB


@dataclass
class Part:
    label: str                 # e.g. "dump.csv.gz (gzip)", "post (base64 block)"
    chunks: Iterator[bytes]    # UTF-8 text


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def bytes_chunks(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield bytes(view[offset:offset + size])


def _peek(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `size` bytes, and an iterator that still yields everything."""
    head = b""
    buffered: list[bytes] = []
    for chunk in chunks:
        buffered.append(chunk)
        head += chunk
        if len(head) >= size:
            break

    def replay() -> Iterator[bytes]:
        yield from buffered
        yield from chunks

    return head[:size], replay()


def extract(
    chunks: Iterable[bytes],
    label: str,
    budget: Budget | None = None,
    content_type: str | None = None,
    zip_path: Path | None = None,
) -> Iterator[Part]:
    """The parts of one document. Refusals and skipped members go to `budget.notes`."""
    budget = budget or Budget()
    yield from _parts(iter(chunks), label, 0, budget, content_type, zip_path)


def _parts(
    chunks: Iterator[bytes], label: str, depth: int, budget: Budget,
    content_type: str | None = None, zip_path: Path | None = None,
) -> Iterator[Part]:
    head, chunks = _peek(chunks, HEAD)
    kind = compression_of(head)
    if kind and depth >= budget.max_depth:
        budget.notes.append(f"{label}: {kind} content nested too deep, not followed")
        return
    if kind == "zip":
        source = str(zip_path) if zip_path else _read_capped(chunks, budget.max_blob * 8, label, budget)
        if source is None:
            return
        for name, member in office_parts(source, budget, label) or zip_members(source, budget, label):
            yield from _guarded(member, f"{label}:{name}", depth + 1, budget)
        return
    if kind:
        yield from _guarded(decompress(chunks, kind, budget, f"{label} ({kind})"), f"{label} ({kind})", depth + 1, budget)
        return
    if looks_like_pdf(head):
        document = _read_capped(chunks, MAX_PDF + 1, label, budget)
        if document is not None:
            yield from _text_part(pdf_text(document, budget, label), f"{label} (pdf)", depth, budget)
        return
    if looks_like_html(head, content_type):
        markup = _read_capped(chunks, MAX_HTML, label, budget)
        if markup is not None:
            yield from _text_part(iter([html_to_text(decode_text(markup)).encode("utf-8")]), label, depth, budget)
        return
    text = to_utf8(chunks, sniff_encoding(head))
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") and b"\\u" in head:
        text = _json_unescaped(text)         # "Viam\u00e9dis" in API responses
    yield from _text_part(text, label, depth, budget)


_JSON_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})")


def _json_unescaped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """JSON text with its \\uXXXX escapes written as UTF-8, so names and accents match."""
    def char(match: re.Match[bytes]) -> bytes:
        code = int(match.group(1), 16)
        return match.group(0) if 0xD800 <= code <= 0xDFFF or code < 0x20 else chr(code).encode("utf-8")

    for chunk in chunks:
        yield _JSON_ESCAPE.sub(char, chunk)


def _guarded(chunks: Iterator[bytes], label: str, depth: int, budget: Budget) -> Iterator[Part]:
    """Parts of expanded content; a refusal (bomb) ends that content with a note."""
    notes = budget.notes

    def safe(stream: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from stream
        except Refused as exc:
            notes.append(str(exc))
        except CORRUPT as exc:   # a truncated or corrupt archive or stream
            notes.append(f"{label}: unreadable ({exc.__class__.__name__}: {exc})")

    yield from _parts(safe(chunks), label, depth, budget)


def _text_part(chunks: Iterator[bytes], label: str, depth: int, budget: Budget) -> Iterator[Part]:
    """The text, then the blobs found in it."""
    finder = BlobFinder()
    blobs: list[bytes] = []

    def scanned() -> Iterator[bytes]:
        for chunk in chunks:
            yield chunk
            if depth < budget.max_depth:
                blobs.extend(finder.feed(chunk, budget.max_blob))
        blobs.extend(finder.close())

    yield Part(label, scanned())
    for index, blob in enumerate(blobs, 1):
        try:
            budget.spend(len(blob), f"{label}: base64 block {index}")
        except Refused as exc:
            budget.notes.append(str(exc))
            return
        yield from _parts(iter([blob]), f"{label} (base64 block {index})", depth + 1, budget)


def _read_capped(chunks: Iterator[bytes], cap: int, label: str, budget: Budget) -> bytes | None:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > cap:
            budget.notes.append(f"{label}: over {cap // MiB} MiB, only the first {cap // MiB} MiB read")
            break
    return bytes(data[:cap])


__all__ = ["Budget", "Part", "bytes_chunks", "extract", "file_chunks"]
