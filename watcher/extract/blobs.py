"""Embedded and compressed content: base64 blocks, gzip/zlib, bzip2, xz and zip.

Every expansion is budgeted: a document may expand to at most `Budget.max_expanded` bytes in
total, and a stream that inflates more than `max_ratio` times its input (past a small
allowance) is refused as a decompression bomb with a readable reason. Zip archives may
declare at most `max_members` entries per document, all archives together (read from their
end record before zipfile builds an object per entry), so a 42.zip-style tree of archives
costs bounded time and memory; past `max_notes`, refusals are counted, not listed.
"""

from __future__ import annotations

import binascii
import bz2
import functools
import io
import lzma
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO
from collections.abc import Iterable, Iterator

import hyperscan

from ..detect.compiled import speedups
from ..detect.engine import compile_database
from ..detect.base import Pattern
import contextlib

MiB = 1024 * 1024
_B64_RUN = re.compile(rb"(?:[A-Za-z0-9+/]{4}|\r?\n|[ \t]){40,}[A-Za-z0-9+/=]{0,4}")
# What continues a block carried from the previous chunk: up to its padding, which ends it
# (binascii ignores whatever follows a padding, so the next block must not be joined to it).
_B64_CONTINUES = re.compile(rb"^(?:[A-Za-z0-9+/]|\r?\n)*=*")
# One long run, or two lines of a block wrapped at 64 or 76 characters (MIME, PEM).
_B64_TRIGGER = Pattern(rb"[A-Za-z0-9+/]{120}|[A-Za-z0-9+/]{56}\r?\n[ \t]*[A-Za-z0-9+/]{56}", caseless=False)
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}
_ZLIB_FLAGS = (0x01, 0x5E, 0x9C, 0xDA)        # the four compression levels zlib writes


# What a truncated or corrupt compressed stream or archive raises.
CORRUPT = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


class Refused(Exception):
    """Content not followed, with the reason an analyst reads."""


# A zip archive: its bytes, its path, or a file object over it.
ZipSource = bytes | str | IO[bytes]


@dataclass
class Budget:
    """Limits shared by every part of one document."""

    max_depth: int = 3
    max_expanded: int = 256 * MiB
    max_ratio: int = 200
    max_blob: int = 32 * MiB
    max_members: int = 20_000
    max_notes: int = 50
    expanded: int = 0
    members: int = 0
    notes: list[str] = field(default_factory=list)
    unlisted: int = 0

    def note(self, text: str) -> None:
        """Say why a part was refused or skipped; past `max_notes` the last note counts the
        others (a tree of archives could otherwise list thousands)."""
        if len(self.notes) < self.max_notes:
            self.notes.append(text)
            return
        self.unlisted += 1
        summary = f"... and {self.unlisted} more parts refused or skipped (not listed)"
        if self.unlisted == 1:
            self.notes.append(summary)
        else:
            self.notes[-1] = summary

    def spend_members(self, count: int, what: str) -> None:
        """Count the entries an archive declares against the document's `max_members`."""
        if self.members + count > self.max_members:
            raise Refused(f"{what} refused: declares {count:,} members, over the {self.max_members:,} "
                          f"a document may hold ({self.members:,} already read)")
        self.members += count

    def spend(self, produced: int, what: str) -> None:
        """Count `produced` expanded bytes against the document's total."""
        self.expanded += produced
        if self.expanded > self.max_expanded:
            raise Refused(f"{what} refused: expands past {self.max_expanded // MiB} MiB (decompression bomb?)")

    def counted(self, chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
        """`chunks` as they pass, each `spend`-counted (content made here, not read as is)."""
        for chunk in chunks:
            self.spend(len(chunk), what)
            yield chunk

    def check_ratio(self, produced: int, consumed: int, what: str) -> None:
        """Refuse a stream that has inflated `max_ratio` times its input (past 8 MiB)."""
        if produced > 8 * MiB and produced > self.max_ratio * max(consumed, 1):
            raise Refused(f"{what} refused: expands more than {self.max_ratio}x (decompression bomb?)")


def compression_of(head: bytes) -> str | None:
    """The compression of a document by its magic bytes (zlib, which has none, by trial)."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    if len(head) >= 8 and head[0] == 0x78 and head[1] in _ZLIB_FLAGS:
        try:
            zlib.decompressobj().decompress(head[:4096], 64)
            return "zlib"
        except zlib.error:
            return None     # text that happens to start with "x^"
    return None


def _decompressor(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(wbits=47)     # gzip, with concatenated members handled below
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


PIECE = 16 * 1024       # input fed to a decompressor at a time


def decompress(chunks: Iterable[bytes], kind: str, budget: Budget, what: str) -> Iterator[bytes]:
    """Stream-decompress `chunks` (every member of a gzip stream), never producing more than
    the budget allows; output in chunks of about a MiB."""
    consumed = [0]
    produced = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
        for out in _inflated(chunks, kind, consumed):
            produced += len(out)
            budget.spend(len(out), what)
            budget.check_ratio(produced, consumed[0], what)
            pending.append(out)
            pending_size += len(out)
            if pending_size >= MiB:
                yield b"".join(pending)
                pending, pending_size = [], 0
    except Refused:
        if pending:                 # what came before the refusal is scanned
            yield b"".join(pending)
        raise
    if pending:
        yield b"".join(pending)


def _inflated(chunks: Iterable[bytes], kind: str, consumed: list[int]) -> Iterator[bytes]:
    """The decompressed output of `chunks`; `consumed[0]` counts the input taken. Input goes
    in PIECE bytes at a time: zlib hands back what follows the end of a gzip member as a new
    bytes object, and a chunk of thousands of tiny members copied its rest for each."""
    engine = _decompressor(kind)
    zlib_like = kind in ("gzip", "zlib")
    for chunk in chunks:
        consumed[0] += len(chunk)
        view = memoryview(chunk)
        for start in range(0, len(chunk), PIECE):
            data: bytes | memoryview = view[start:start + PIECE]
            while True:
                if engine.eof:                  # the next gzip member, or the end of the stream
                    if kind != "gzip" or data[:1] != b"\x1f":
                        return
                    engine = _decompressor(kind)
                out = engine.decompress(data, MiB)
                if out:
                    yield out
                if engine.eof:
                    data = engine.unused_data
                    if not data:
                        break
                    continue
                data = engine.unconsumed_tail if zlib_like else b""
                if not (data if zlib_like else not engine.needs_input):
                    break


_END_RECORD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END_RECORD = b"PK\x06\x06"


def declared_members(source: ZipSource) -> int | None:
    """The number of entries a zip's end record declares (zip64 too), read without opening
    the archive; None when there is no end record."""
    if not isinstance(source, str):
        return _end_record_entries(io.BytesIO(source) if isinstance(source, bytes) else source)
    try:
        with open(source, "rb") as handle:
            return _end_record_entries(handle)
    except OSError:
        return None


def _end_record_entries(handle: IO[bytes]) -> int | None:
    try:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(max(0, size - (1 << 16) - 22))      # the record, and a comment of up to 64 KiB
        tail = handle.read()
        at = tail.rfind(_END_RECORD)
        if at < 0 or len(tail) < at + 22:
            return None
        entries = int.from_bytes(tail[at + 10:at + 12], "little")
        locator = tail[at - 20:at] if at >= 20 else b""
        if entries != 0xFFFF or not locator.startswith(_ZIP64_LOCATOR):
            return entries
        handle.seek(int.from_bytes(locator[8:16], "little"))
        record = handle.read(40)
        return int.from_bytes(record[32:40], "little") if record.startswith(_ZIP64_END_RECORD) else entries
    except (OSError, ValueError):
        return None


def open_zip(source: ZipSource) -> zipfile.ZipFile:
    """A zip archive over bytes, a path or a file object."""
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def zip_members(source: ZipSource, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, chunks) for each readable member; encrypted or oversized members are noted."""
    try:
        archive = open_zip(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        budget.note(f"{what}: unreadable zip ({exc})")
        return
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                budget.note(f"{what}: member {info.filename!r} is password-protected, not scanned")
                continue
            if info.file_size > budget.max_expanded - budget.expanded:
                budget.note(f"{what}: member {info.filename!r} refused: "
                            f"declares {info.file_size // MiB} MiB (over budget)")
                continue
            yield info.filename, read_member(archive, info, budget, what)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget, what: str) -> Iterator[bytes]:
    """A member's bytes in chunks, counted against the budget and the expansion ratio."""
    label = f"{what}: member {info.filename!r}"
    produced = 0
    with archive.open(info) as member:
        while chunk := member.read(MiB):
            produced += len(chunk)
            budget.spend(len(chunk), label)
            budget.check_ratio(produced, info.compress_size, label)
            yield chunk


@functools.lru_cache(maxsize=1)
def _trigger_database() -> hyperscan.Database:
    """Compiled once per process (a few ms: too much to pay for every part of every paste)."""
    return compile_database([_B64_TRIGGER])


def triggered_py(data: bytes) -> bool:
    """Whether `data` holds a base64 run worth the regular expression (stops at the first)."""
    hit: list[int] = []

    def on_match(*_: object) -> bool:
        hit.append(1)
        return True          # stop scanning at the first match

    with contextlib.suppress(hyperscan.ScanTerminated):
        _trigger_database().scan(data, match_event_handler=on_match)
    return bool(hit)


class BlobFinder:
    """Finds base64 blocks (one or many lines) in a stream of UTF-8 chunks.

    A cheap Hyperscan trigger (a 120-character base64 run) gates the regular expression, so
    ordinary text costs almost nothing. A block reaching the end of a chunk is carried into
    the next one.
    """

    def __init__(self, min_decoded: int = 90) -> None:
        self._carry = bytearray()       # grown in place: linear however small the chunks
        self.min_decoded = min_decoded

    def _triggered(self, data: bytes) -> bool:
        if speedups:                          # the same trigger in C, 2x faster than Hyperscan
            return speedups.base64_run(data)
        return triggered_py(data)

    def feed(self, chunk: bytes, max_blob: int) -> Iterator[bytes]:
        """Decoded blobs completed by this chunk."""
        if self._carry:
            cont = _B64_CONTINUES.match(chunk)
            assert cont is not None
            self._carry += chunk[: cont.end()]
            if cont.end() == len(chunk) and len(self._carry) < max_blob:
                return
            yield from self._decode(bytes(self._carry))
            self._carry.clear()
            chunk = chunk[cont.end():]
        if not chunk or not self._triggered(chunk):
            return
        for match in _B64_RUN.finditer(chunk):
            if match.end() == len(chunk) and match.end() - match.start() < max_blob and chunk[-1:] != b"=":
                self._carry[:] = match.group(0)
            else:
                yield from self._decode(match.group(0))

    def close(self) -> Iterator[bytes]:
        if self._carry:
            yield from self._decode(bytes(self._carry))
            self._carry.clear()

    def _decode(self, text: bytes) -> Iterator[bytes]:
        compact = re.sub(rb"\s+", b"", text)
        compact = compact[: len(compact) - len(compact) % 4] if not compact.endswith(b"=") else compact
        try:
            data = binascii.a2b_base64(compact)
        except binascii.Error:
            return
        if len(data) >= self.min_decoded and (compression_of(data) or _mostly_text(data)):
            yield data


def _mostly_text(data: bytes) -> bool:
    """Printable UTF-8 or Latin-1 text (not random bytes or an image)."""
    sample = data[:4096]
    printable = sum(1 for b in sample if b >= 32 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)
