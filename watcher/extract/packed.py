"""7-Zip and RAR archives, how leaks are packed on forums and file hosts: each member read as a
document of its own through libarchive (the C library Debian ships as libarchive13, through
the libarchive-c binding). Scanned raw they are compressed noise: nothing was found in them.

A file scanned from disk is read from it (7-Zip keeps its index at the end: the reader seeks);
one fetched or found in another archive is held in memory, at most MAX_ARCHIVE bytes. Members
count against the document's `max_members`, their bytes against its expansion budget and its
ratio (a bomb is refused as a gzip one is). A password-protected archive, as many leaks are
("infected"), cannot be read: that is noted, with the members it lists. Without libarchive
on the machine the archive is noted as not read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blobs import MiB, Budget, Refused

MAGICS = (b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")      # 7-Zip; RAR 4 and 5
MAX_ARCHIVE = 256 * MiB


def looks_like_packed(head: bytes) -> bool:
    return head.startswith(MAGICS)


def packed_members(source: bytes | Path, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, chunks) for each regular member, in the archive's order; a member must be read
    (or dropped) before the next is asked for."""
    try:
        import libarchive
    except (ImportError, OSError, AttributeError) as exc:   # the binding, or the C library it loads
        budget.note(f"{what}: 7-Zip/RAR archive not read (libarchive unavailable: {exc.__class__.__name__})")
        return
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    produced = [0]
    try:
        reader = libarchive.file_reader(str(source)) if isinstance(source, Path) else libarchive.memory_reader(source)
        with reader as archive:
            for entry in archive:
                if not entry.isfile:
                    continue
                budget.spend_members(1, what)
                name = entry.pathname or "member"
                yield name, _blocks(entry, budget, f"{what}: member {name!r}", size, produced)
    except Refused as exc:
        budget.note(str(exc))
    except libarchive.ArchiveError as exc:      # damaged, truncated, encrypted headers
        budget.note(f"{what}: unreadable past a point ({_reason(exc)})")


def _blocks(entry: object, budget: Budget, label: str, size: int, produced: list[int]) -> Iterator[bytes]:
    """A member's bytes, counted against the budget and, with the members before it, the
    archive's expansion ratio."""
    import libarchive

    try:
        for block in entry.get_blocks():        # type: ignore[attr-defined]
            produced[0] += len(block)
            budget.spend(len(block), label)
            budget.check_ratio(produced[0], size, label)
            yield bytes(block)
    except libarchive.ArchiveError as exc:
        budget.note(f"{label}: not read ({_reason(exc)})")


def _reason(exc: Exception) -> str:
    """libarchive's own words for what stopped it ("Passphrase required for this entry"...),
    without the pointers and paths its exceptions carry."""
    message = str(getattr(exc, "msg", "") or exc.__class__.__name__)
    return message.split("(errno")[0].strip()[:120] or exc.__class__.__name__
