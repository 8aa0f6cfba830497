"""Embedded and compressed content: base64 blocks, gzip/zlib, bzip2, xz and zip.

Every expansion is budgeted: a document may expand to at most `Budget.max_expanded` bytes in
total, and a stream that inflates more than `max_ratio` times its input (past a small
allowance) is refused as a decompression bomb with a readable reason.
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
from typing import Iterable, Iterator

import hyperscan

from ..detect.compiled import speedups
from ..detect.engine import compile_database
from ..detect.base import Pattern

MiB = 1024 * 1024
_B64_RUN = re.compile(rb"(?:[A-Za-z0-9+/]{4}|\r?\n|[ \t]){40,}[A-Za-z0-9+/=]{0,4}")
_B64_CONTINUES = re.compile(rb"^(?:[A-Za-z0-9+/=]|\r?\n)*")
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


@dataclass
class Budget:
    """Limits shared by every part of one document."""

    max_depth: int = 3
    max_expanded: int = 256 * MiB
    max_ratio: int = 200
    max_blob: int = 32 * MiB
    expanded: int = 0
    notes: list[str] = field(default_factory=list)

    def spend(self, produced: int, what: str) -> None:
        """Count `produced` expanded bytes against the document's total."""
        self.expanded += produced
        if self.expanded > self.max_expanded:
            raise Refused(f"{what} refused: expands past {self.max_expanded // MiB} MiB (decompression bomb?)")

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


def decompress(chunks: Iterable[bytes], kind: str, budget: Budget, what: str) -> Iterator[bytes]:
    """Stream-decompress `chunks`, never producing more than the budget allows."""
    engine = _decompressor(kind)
    zlib_like = kind in ("gzip", "zlib")
    consumed = produced = 0
    for chunk in chunks:
        consumed += len(chunk)
        data = chunk
        while True:
            out = engine.decompress(data, MiB)
            data = engine.unconsumed_tail if zlib_like else b""
            if out:
                produced += len(out)
                budget.spend(len(out), what)
                budget.check_ratio(produced, consumed, what)
                yield out
            if engine.eof:
                rest = engine.unused_data
                if kind == "gzip" and rest.startswith(b"\x1f\x8b"):
                    engine, data = _decompressor(kind), rest      # the next gzip member
                    continue
                return
            if not (data if zlib_like else not engine.needs_input):
                break


def zip_members(data: bytes | str, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, chunks) for each readable member; encrypted or oversized members are noted."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        budget.notes.append(f"{what}: unreadable zip ({exc})")
        return
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                budget.notes.append(f"{what}: member {info.filename!r} is password-protected, not scanned")
                continue
            if info.file_size > budget.max_expanded - budget.expanded:
                budget.notes.append(
                    f"{what}: member {info.filename!r} refused: declares {info.file_size // MiB} MiB (over budget)"
                )
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

    try:
        _trigger_database().scan(data, match_event_handler=on_match)
    except hyperscan.ScanTerminated:
        pass
    return bool(hit)


class BlobFinder:
    """Finds base64 blocks (one or many lines) in a stream of UTF-8 chunks.

    A cheap Hyperscan trigger (a 120-character base64 run) gates the regular expression, so
    ordinary text costs almost nothing. A block reaching the end of a chunk is carried into
    the next one.
    """

    def __init__(self, min_decoded: int = 90) -> None:
        self._carry = b""
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
            yield from self._decode(self._carry)
            self._carry = b""
            chunk = chunk[cont.end():]
        if not chunk or not self._triggered(chunk):
            return
        for match in _B64_RUN.finditer(chunk):
            if match.end() == len(chunk) and match.end() - match.start() < max_blob:
                self._carry = match.group(0)
            else:
                yield from self._decode(match.group(0))

    def close(self) -> Iterator[bytes]:
        if self._carry:
            yield from self._decode(self._carry)
            self._carry = b""

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
