"""Extraction: from fetched or read bytes to parts of UTF-8 text.

A document becomes one or more `Part`s, each a stream of UTF-8 chunks the detectors scan:
the text itself, and what is embedded in it (base64 blocks, compressed streams, zip, tar,
7-Zip and RAR members; a spreadsheet's sheets (.xlsx, .xls) and a SQLite database's tables as
`;`-separated rows, a PDF's page text, an e-mail's decoded parts),
depth- and size-limited by a `Budget`. Compressed input is recognised by its magic bytes,
HTML by its tags (or Content-Type), the encoding by `decode.sniff_encoding`.

Parts are produced lazily and must be consumed in order: blobs found while a part is
scanned are extracted after it.

A part costs itself only: a refusal (bomb, budget), a corrupt stream or an unexpected error
(a library surprised by hostile input) ends that part or member with a note in
`budget.notes`; the other parts of the document are still extracted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from collections.abc import Iterable, Iterator

from .blobs import (
    CORRUPT, MiB, BlobFinder, Budget, Refused, ZipSource, compression_of, declared_members, decompress, zip_members,
)
from .decode import decode_text, plain_spaces_and_digits, sniff_encoding, to_utf8
from .fixed import FixedField, nir_fields
from .html import html_to_text, looks_like_html
from .mail import MAX_MAILBOX, looks_like_mail, mail_parts
from .office import office_parts
from .packed import MAX_ARCHIVE, looks_like_packed, packed_members
from .pdf import MAX_PDF, looks_like_pdf, pdf_text
from .spool import spool as scratch
from .sqlite import MAX_DATABASE, looks_like_sqlite, sqlite_tables
from .tar import looks_like_tar, tar_members
from .xls import MAX_WORKBOOK, looks_like_ole2, xls_sheets

CHUNK = MiB
HEAD = 64 * 1024
MAX_HTML = 16 * MiB
SPOOL_IN_MEMORY = 16 * MiB      # a zip read from a stream: in memory up to this, then sealed on disk (spool.py)

log = logging.getLogger(__name__)


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
    buffered: list[bytes] = []
    buffered_size = 0
    for chunk in chunks:
        buffered.append(chunk)
        buffered_size += len(chunk)
        if buffered_size >= size:
            break

    def replay() -> Iterator[bytes]:
        yield from buffered
        yield from chunks

    return b"".join(buffered)[:size], replay()


def extract(
    chunks: Iterable[bytes],
    label: str,
    budget: Budget | None = None,
    content_type: str | None = None,
    file_path: Path | None = None,
) -> Iterator[Part]:
    """The parts of one document. Refusals and skipped members go to `budget.notes`.
    `file_path`: the document's file, when it is one (a zip or a SQLite database is then read
    from it, seeking, instead of being spooled or held in memory)."""
    budget = budget or Budget()
    parts = _parts(iter(chunks), label, 0, budget, content_type, file_path)
    while True:
        try:
            part = next(parts)
        except StopIteration:
            return
        except OSError:             # the document itself could not be read: not a part's fault
            raise
        except Exception as exc:    # see _unexpected
            _unexpected(exc, label, budget)
            return
        yield Part(part.label, _contained(part.chunks, part.label, budget))


def _contained(chunks: Iterator[bytes], label: str, budget: Budget) -> Iterator[bytes]:
    """A part's chunks; an unexpected error ends the part, not the document."""
    try:
        yield from chunks
    except OSError:
        raise
    except Exception as exc:        # see _unexpected
        _unexpected(exc, label, budget)


def _unexpected(exc: Exception, label: str, budget: Budget) -> None:
    """A bug, or a library surprised by hostile input: noted and logged by its kind only
    (its message may quote the content)."""
    budget.note(f"{label}: not fully read ({exc.__class__.__name__})")
    log.warning("%s: extraction stopped by %s", label, exc.__class__.__name__)


def _parts(
    chunks: Iterator[bytes], label: str, depth: int, budget: Budget,
    content_type: str | None = None, file_path: Path | None = None,
) -> Iterator[Part]:
    head, chunks = _peek(chunks, HEAD)
    kind = compression_of(head)
    if kind and depth >= budget.max_depth:
        budget.note(f"{label}: {kind} content nested too deep, not followed")
        return
    if kind == "zip":
        if file_path:
            yield from _zip_parts(str(file_path), label, depth, budget)
            return
        with _spooled(chunks, budget.max_blob * 8, label, budget) as spool:
            yield from _zip_parts(spool, label, depth, budget)
        return
    if kind:
        inner = f"{label} ({kind})"
        yield from _guarded(decompress(chunks, kind, budget, inner), inner, depth + 1, budget)
        return
    members, chunks = _container(head, chunks, label, depth, budget, file_path)
    if members is not None:
        yield from _members(members, label, depth, budget)
        return
    if looks_like_pdf(head):
        document = _read_capped(chunks, MAX_PDF + 1, label, budget)
        yield from _text_part(pdf_text(document, budget, label), f"{label} (pdf)", depth, budget)
        return
    if looks_like_html(head, content_type):
        markup = _read_capped(chunks, MAX_HTML, label, budget)
        yield from _text_part(iter([html_to_text(decode_text(markup)).encode("utf-8")]), label, depth, budget)
        return
    text = to_utf8(chunks, sniff_encoding(head))
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") and b"\\u" in head:
        text = _json_unescaped(text)         # "Viam\u00e9dis" in API responses
    yield from _text_part(text, label, depth, budget)


Members = Iterator[tuple[str, Iterator[bytes]]]


def plain_text(head: bytes) -> bool:
    """Whether a document with this head is read as one part of plain UTF-8 text, lines as
    they are (what `watcher.parallel` may cut into slices): not compressed, no container, no
    PDF, HTML or JSON, no fixed-width NIR field to take out of its records."""
    return not (compression_of(head) or looks_like_tar(head) or looks_like_sqlite(head) or looks_like_mail(head)
                or looks_like_packed(head) or looks_like_ole2(head) or looks_like_pdf(head) or looks_like_html(head)
                or sniff_encoding(head) != "utf-8" or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
                or nir_fields(head))


def _container(head: bytes, chunks: Iterator[bytes], label: str, depth: int, budget: Budget,
               file_path: Path | None) -> tuple[Members | None, Iterator[bytes]]:
    """The members of a container document (a tar's, a 7-Zip's or a RAR's files, a SQLite
    database's tables, an .xls workbook's sheets, an e-mail's parts), or None; and the chunks
    left to read as text (an OLE2 file that is no workbook is read whole first)."""
    if depth >= budget.max_depth:
        return None, chunks
    if looks_like_tar(head):
        return tar_members(chunks, budget, label), chunks
    if looks_like_sqlite(head):
        return sqlite_tables(file_path or _read_capped(chunks, MAX_DATABASE, label, budget), budget, label), chunks
    if looks_like_mail(head):
        return mail_parts(_read_capped(chunks, MAX_MAILBOX, label, budget), budget, label), chunks
    if looks_like_packed(head):
        return packed_members(file_path or _read_capped(chunks, MAX_ARCHIVE, label, budget), budget, label), chunks
    if looks_like_ole2(head):
        document = _read_capped(chunks, MAX_WORKBOOK, label, budget)
        return xls_sheets(document, budget, label), iter([document])
    return None, chunks


_JSON_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})")


def _json_unescaped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """JSON text with its \\uXXXX escapes written as UTF-8, so names and accents match."""
    def char(match: re.Match[bytes]) -> bytes:
        code = int(match.group(1), 16)
        return match.group(0) if 0xD800 <= code <= 0xDFFF or code < 0x20 else chr(code).encode("utf-8")

    for chunk in chunks:
        yield _JSON_ESCAPE.sub(char, chunk)


def _zip_parts(source: ZipSource, label: str, depth: int, budget: Budget) -> Iterator[Part]:
    """The parts of each member of an archive (an office document's as its text)."""
    try:
        budget.spend_members(declared_members(source) or 0, label)
    except Refused as exc:
        budget.note(str(exc))
        return
    yield from _members(office_parts(source, budget, label) or zip_members(source, budget, label), label, depth, budget)


def _members(members: Iterable[tuple[str, Iterator[bytes]]], label: str, depth: int,
             budget: Budget) -> Iterator[Part]:
    """The parts of each member of a container (an archive's files, a workbook's sheets, a
    database's tables), one level deeper."""
    for name, member in members:
        yield from _guarded(member, f"{label}:{name}", depth + 1, budget)


def _guarded(chunks: Iterator[bytes], label: str, depth: int, budget: Budget) -> Iterator[Part]:
    """Parts of expanded content; a refusal (bomb), a corrupt stream or an unexpected error
    ends that content with a note (the next member or blob is still read)."""

    def safe(stream: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from stream
        except Refused as exc:
            budget.note(str(exc))
        except CORRUPT as exc:   # a truncated or corrupt archive or stream
            budget.note(f"{label}: unreadable ({exc.__class__.__name__}: {exc})")

    try:
        yield from _parts(safe(chunks), label, depth, budget)
    except Exception as exc:     # see _unexpected
        _unexpected(exc, label, budget)


def _text_part(chunks: Iterator[bytes], label: str, depth: int, budget: Budget) -> Iterator[Part]:
    """The text, then the blobs found in it (counted against the budget as they are found,
    so what is held meanwhile is bounded too)."""
    finder = BlobFinder()
    blobs: list[bytes] = []
    field: list[FixedField] = []            # NIR fields of fixed-width records, seen in the first chunk

    def scanned() -> Iterator[bytes]:
        collecting = depth < budget.max_depth
        for index, chunk in enumerate(chunks):
            chunk = plain_spaces_and_digits(chunk)
            if index == 0 and (offsets := nir_fields(chunk)):
                field.append(FixedField(offsets))
            yield chunk
            if field:
                field[0].feed(chunk)
            if collecting:
                collecting = _collect(finder.feed(chunk, budget.max_blob), blobs, label, budget)
        if collecting:
            _collect(finder.close(), blobs, label, budget)

    yield Part(label, scanned())
    if field:
        columns = ", ".join(str(offset + 1) for offset in field[0].offsets)
        inner = f"{label} (fixed-width NIR fields at columns {columns})"
        yield Part(inner, budget.counted(field[0].chunks(), inner))
    for index in range(len(blobs)):
        blob, blobs[index] = blobs[index], b""          # let each go once extracted
        yield from _guarded(iter([blob]), f"{label} (base64 block {index + 1})", depth + 1, budget)


def _collect(found: Iterable[bytes], blobs: list[bytes], label: str, budget: Budget) -> bool:
    """Keep decoded blobs while the budget allows; False once it refused one."""
    for blob in found:
        try:
            budget.spend(len(blob), f"{label}: base64 block {len(blobs) + 1}")
        except Refused as exc:
            budget.note(str(exc))
            return False
        blobs.append(blob)
    return True


def _read_capped(chunks: Iterator[bytes], cap: int, label: str, budget: Budget) -> bytes:
    data = bytearray()
    for chunk in chunks:
        room = cap - len(data)
        data += chunk[:room]
        if len(chunk) > room:
            budget.note(f"{label}: over {cap // MiB} MiB, only the first {cap // MiB} MiB read")
            break
    return bytes(data)


def _spooled(chunks: Iterator[bytes], cap: int, label: str, budget: Budget) -> IO[bytes]:
    """Content zipfile must seek in, without holding a big archive in memory: in memory up
    to SPOOL_IN_MEMORY, encrypted in an unlinked temporary file beyond (a leak's bytes are
    never on disk in clear; a disk error ends it early)."""
    spool = scratch(SPOOL_IN_MEMORY)
    size = 0
    try:
        for chunk in chunks:
            spool.write(chunk[:cap - size])
            size += len(chunk)
            if size > cap:
                budget.note(f"{label}: over {cap // MiB} MiB, only the first {cap // MiB} MiB read")
                break
    except OSError as exc:
        budget.note(f"{label}: not spooled ({exc.__class__.__name__}: {exc.strerror})")
    return spool


__all__ = ["Budget", "Part", "bytes_chunks", "extract", "file_chunks", "plain_text"]
