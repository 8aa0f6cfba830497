"""The daemon's evidence stage: a document whose report is at or above `[evidence]
min_severity` is sealed into the vault (`watcher.evidence`) and given its custody record.

    batch analysed -> [thread: read, gzip, age-encrypt, write atomically] -> items recorded
                   -> custody records (finding, incident) in one store call

Which documents: every analysed item whose report reaches `min_severity`. Only new item
versions are fetched and analysed, so that is a new finding, an escalated one, and a known
content seen again on another source or item (a repost joining its incident: the vault keeps
the bytes once, `reused`, and the repost gets its own custody record with its URL and time).

Sealing comes before recording, so a crash never loses a document: killed before the item
is recorded, the daemon fetches it again at its next start and finds its piece (`reused`);
killed while sealing, it leaves a temporary file the vault deletes at its next opening. The
price is the seal's time on the item's way to its alert (see the README's measurements).
Between the recording and the custody record's write (one store call) a kill leaves a piece
without a record: counted nowhere, aged out by retention.

What is sealed is the item as fetched: `Item.content`, or for a drop folder's file the file
itself, read in the sealing thread up to `max_bytes` and hashed whole as it is read (a file
that changed since its analysis is said so in the note). Nothing of it is read on the event
loop: the loop hands one batch to one thread and makes one store call.

A failure (a full disk, an unreadable file, the database) is logged and counted and costs
neither the item nor its poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .evidence import MIB, CustodyRecord, EvidenceSettings, EvidenceVault
from .logs import log_event
from .report import Report
from .sources.base import Item
from .store import ItemResult, Store
from .store.evidence import record_custodies
from .timestamps import format_time

__all__ = ["EvidenceStage", "read_head"]

log = logging.getLogger("watcher.evidence")


def read_head(path: Path, limit: int) -> tuple[bytes, int, str]:
    """(the first `limit` bytes of the file, its size, the sha256 of all of it), in one read."""
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
            size += len(block)
            if len(head) < limit:
                head += block[:limit - len(head)]
    return bytes(head), size, digest.hexdigest()


class EvidenceStage:
    """Seals the documents of findings (see the module docstring); one per daemon."""

    def __init__(self, settings: EvidenceSettings, folder: Path, store: Store) -> None:
        self.folder = folder
        self.store = store
        self.counts: Counter[str] = Counter()        # sealed, reused, refused, failed
        self.settings = settings
        self.vault: EvidenceVault | None = None

    async def open(self) -> None:
        """Open the vault (in a thread: it cleans dead writers' partial files) and say, once,
        what is kept or that evidence is off."""
        await self.reconfigure(self.settings, force=True)

    async def reconfigure(self, settings: EvidenceSettings, force: bool = False) -> None:
        """New `[evidence]` settings (a reload); said again only when they changed."""
        if settings == self.settings and not force:
            return
        self.settings = settings
        self.vault = await asyncio.to_thread(EvidenceVault.from_settings, self.folder, settings) \
            if settings.enabled else None
        log_event(log, "info" if settings.enabled else "warning", settings.notice())

    async def seal(self, analysed: Sequence[tuple[Item, Report]],
                   tor: Callable[[str], bool]) -> list[CustodyRecord | None]:
        """Seal, in one thread, the documents of `analysed` whose report reaches min_severity,
        before they are recorded; one record (or None: not kept, or failed) per item.
        `tor(source)`: whether that source fetches through Tor."""
        vault = self.vault
        if vault is None or not any(self.settings.keeps(report.severity) for _, report in analysed):
            return [None] * len(analysed)
        wanted = [(item, report) if self.settings.keeps(report.severity) else None for item, report in analysed]
        tors = [tor(pair[0].source) if pair else False for pair in wanted]
        outcomes = await asyncio.to_thread(_seal_all, vault, wanted, tors, format_time(datetime.now(UTC)))
        records: list[CustodyRecord | None] = []
        for pair, outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, Exception):
                assert pair is not None
                self.counts["failed"] += 1
                log_event(log, "error", "evidence not sealed", source=pair[0].source, item=pair[0].item_id,
                          url=pair[0].url, error=f"{type(outcome).__name__}: {outcome}", failed=self.counts["failed"])
                outcome = None
            records.append(outcome)
        return records

    async def record(self, analysed: Sequence[tuple[Item, Report]], sealed: Sequence[CustodyRecord | None],
                     results: Sequence[ItemResult | Exception]) -> None:
        """Write the custody records of the items sealed and recorded (one store call), with
        their finding and incident. An item whose recording failed has none: it is fetched
        again at the next poll, its piece then reused and recorded."""
        entries = [(replace(record, finding_id=result.finding_id), item.title)
                   for (item, _), record, result in zip(analysed, sealed, results, strict=True)
                   if record is not None and isinstance(result, ItemResult) and result.finding_id is not None]
        if not entries:
            return
        try:
            rows = await self.store.call(record_custodies, entries)
        except Exception as exc:     # the database: logged, never the poll's
            self.counts["failed"] += len(entries)
            log_event(log, "error", "evidence custody records not written", pieces=len(entries),
                      error=f"{type(exc).__name__}: {exc}", failed=self.counts["failed"])
            return
        for (record, _), (row, incident) in zip(entries, rows, strict=True):
            self.counts[record.status] += 1
            fields = {"source": record.source, "finding": record.finding_id, "incident": incident, "evidence": row,
                      "bytes": record.kept_bytes, "truncated": record.truncated}
            if record.note:
                fields["note"] = record.note
            log_event(log, "warning" if record.status == "refused" else "info", f"evidence {record.status}",
                      **fields)


def _seal_all(vault: EvidenceVault, wanted: Sequence[tuple[Item, Report] | None], tors: Sequence[bool],
              fetched_at: str) -> list[CustodyRecord | Exception | None]:
    """The sealing thread: each wanted item sealed, or the exception that stopped it."""
    outcomes: list[CustodyRecord | Exception | None] = []
    for pair, tor in zip(wanted, tors, strict=True):
        if pair is None:
            outcomes.append(None)
            continue
        try:
            outcomes.append(_seal(vault, pair[0], pair[1], fetched_at, tor))
        except Exception as exc:     # a full disk, an unreadable file: this item only
            outcomes.append(exc)
    return outcomes


def _seal(vault: EvidenceVault, item: Item, report: Report, fetched_at: str, tor: bool) -> CustodyRecord:
    """The sealing thread's work: the document's bytes, sealed, and its custody record."""
    whole: tuple[int, str] | None = None
    if item.path is not None:
        raw, size, sha256 = read_head(item.path, vault.max_bytes)
        whole = (size, sha256)
    else:
        raw = item.content or b""
    record = vault.write(uuid.uuid4().hex, raw, source=item.source, url=item.url or item.item_id,
                         fetched_at=fetched_at, tor=tor, whole=whole)
    notes = [record.note] if record.note else []
    if item.truncated:
        notes.append("the source cut the body at its max_bytes: the piece holds what was fetched")
    if record.sha256 != report.sha256:
        notes.append("the document changed after its analysis: the piece holds it as read when sealed")
    return replace(record, note="; ".join(notes))
