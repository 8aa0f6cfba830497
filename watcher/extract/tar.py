"""Tar archives (`.tar`, and `.tar.gz`, `.tgz`, `.tar.xz` once decompressed): each regular
member read as a document of its own, so a workbook, a zip or a PDF packed in a tar is opened
as if it had been dropped alone. Scanned as one stream, a tar shows the text of its plain
members but hides everything compressed inside it (a `.xlsx` is a zip).

Read as the archive streams past (`tarfile`'s `r|` mode: no seeking, nothing spooled, each
member's bytes read once, in order). Members count against the document's `max_members` and
their bytes against its expansion budget, as a zip's do.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator

from .blobs import CORRUPT, MiB, Budget, Refused

_MAGIC_AT = 257             # "ustar" in a POSIX header, "ustar  " in a GNU one
_BLOCK = 512


def looks_like_tar(head: bytes) -> bool:
    """A tar's first header: the magic, and a checksum that holds (text that happens to say
    "ustar" 257 bytes in is text). The checksum is the sum of the header's bytes, its own
    field counted as spaces, written in octal (signed bytes in some old tars); tarfile, 1.3 ms
    to import, is left for the tars themselves."""
    if len(head) < _BLOCK or head[_MAGIC_AT:_MAGIC_AT + 5] != b"ustar":
        return False
    try:
        stored = int(head[148:156].split(b"\0", 1)[0].strip() or b"x", 8)
    except ValueError:
        return False
    block = head[:148] + b" " * 8 + head[156:_BLOCK]
    return stored in (sum(block), sum(byte - 256 if byte > 127 else byte for byte in block))


class _ChunkStream(io.RawIOBase):
    """A readable file over an iterator of chunks (what `tarfile` reads a stream from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._chunk:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._chunk = memoryview(chunk)
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size


def tar_members(chunks: Iterator[bytes], budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, chunks) for each regular member, in the archive's order; a member must be read
    (or dropped) before the next is asked for. A corrupt or truncated archive ends with a
    note; the members read so far stand."""
    import tarfile

    try:
        archive = tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks), MiB), mode="r|")  # noqa: SIM115 (with below)
    except tarfile.TarError as exc:
        budget.note(f"{what}: unreadable tar ({exc.__class__.__name__})")
        return
    with archive:
        try:
            for info in archive:
                if not info.isfile():
                    continue
                budget.spend_members(1, what)
                member = archive.extractfile(info)
                if member is not None:
                    chunks = iter(functools.partial(member.read, MiB), b"")
                    yield info.name, budget.counted(chunks, f"{what}: member {info.name!r}")
        except Refused as exc:
            budget.note(str(exc))
        except (tarfile.TarError, *CORRUPT) as exc:
            budget.note(f"{what}: unreadable past a point ({exc.__class__.__name__})")

