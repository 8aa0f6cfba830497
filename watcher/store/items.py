"""Items: recording what a poll found (with its finding and, through an `AlertHook`, its
alert, in one transaction), failed items, and `is_seen`, the daemon's per-item question.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..redact import redact
from ..report import Report
from ..score import severity_rank
from .connection import Connection, dict_rows
from .findings import upsert_finding
from .sources import require_source
from .texts import one_line, post_date, redact_text

if TYPE_CHECKING:
    from .state import StateDB

__all__ = ["AlertHook", "FindingEvent", "ItemFailure", "ItemQueries", "ItemRecord", "ItemResult", "is_seen_query"]


@dataclass(frozen=True)
class ItemFailure:
    """An item whose analysis failed, to be retried (or parked after `max_tries`)."""

    source: str
    item_id: str
    version: str
    url: str | None
    title: str | None
    error: str


@dataclass(frozen=True)
class ItemRecord:
    """One polled item to record; `report` is None when there was nothing to scan.

    `masked`: `url`, `title` and `author` come with every identifier masked already, by
    `watcher.redact.redact` itself (the daemon has its analysis workers do it, off its one
    busy process): they are stored as they are. Anything else is masked here.
    """

    source: str
    item_id: str
    version: str
    url: str | None
    title: str | None
    report: Report | None
    posted_at: str | None = None     # the post's own date, as the source gives it
    author: str | None = None        # the post's author (masked like any text)
    masked: bool = False             # url, title and author masked by `redact` already


@dataclass(frozen=True)
class ItemResult:
    """What recording an item did.

    `new_item`: this (source, item_id, version) had not been recorded before.
    `finding_id`: the finding of the item's current content, if its severity is not none.
    `new_finding`: that content had never been seen on any source (alert on it).
    `escalated`: the content was known, but this report raised its severity (alert again).
    """

    new_item: bool
    finding_id: int | None
    new_finding: bool
    escalated: bool
    alert: int | None = None    # the alerts row the alert hook wrote, if any


@dataclass(frozen=True)
class FindingEvent:
    """What recording one item did to a finding, as an `AlertHook` sees it.

    `item_id`, `url` and `title` are as stored (redacted); `now` the transaction's
    timestamp. Sent for every recorded item that has a finding, new or not: an alert hook
    decides itself whether a known finding on a new source is news.
    """

    source: str
    item_id: str
    url: str | None
    title: str | None
    finding_id: int
    new_finding: bool
    escalated: bool
    report: Report
    now: str
    posted_at: str | None = None
    author: str | None = None


class AlertHook(Protocol):
    """Called inside the recording transaction; may write through `state.db`, must not commit.

    Returns the id of the alerts row it wrote, or None. An exception rolls the whole
    transaction back (the item, the finding and the alert are written together or not at all).
    """

    def __call__(self, state: StateDB, event: FindingEvent) -> int | None: ...


def is_seen_query(conn: sqlite3.Connection, source: str, item_id: str, version: str) -> bool:
    """Whether this exact item version was recorded already, or parked after failing too
    often (then skip fetching it). A failed item not parked yet is not seen: it is retried."""
    key = (source, redact(str(item_id)), redact(str(version)))     # as `record_items` stores them
    row = conn.execute(
        """SELECT 1 FROM items WHERE source = ? AND item_id = ? AND version = ?
        UNION ALL SELECT 1 FROM failed_items WHERE source = ? AND item_id = ? AND version = ? AND parked
        LIMIT 1""",
        key + key,
    ).fetchone()
    return row is not None


class ItemQueries(Connection):
    """Items and failed items (a part of `StateDB`)."""

    def is_seen(self, source: str, item_id: str, version: str) -> bool:
        """Whether this exact item version was recorded already (then skip fetching it)."""
        return is_seen_query(self.db, source, item_id, version)

    def record_item(
        self,
        source: str,
        item_id: str,
        version: str,
        url: str | None,
        title: str | None,
        report: Report | None,
        alert: AlertHook | None = None,
    ) -> ItemResult:
        """Record one polled item and its report in one transaction; see `record_items`."""
        record = ItemRecord(source, item_id, version, url, title, report)
        return self.record_items([record], alert=alert)[0]

    def record_items(self, records: Sequence[ItemRecord], alert: AlertHook | None = None) -> list[ItemResult]:
        """Record items in ONE transaction (all or none), returning one result per record.

        For each record: upsert the item (keeping first_seen); if the report's severity is not
        none, insert the finding by sha256 with its fingerprints, or link the item to the
        existing finding (same bytes on another source or item = the same finding), raising
        its severity and analysis if this report is more severe. Recording the same item
        version twice is harmless. Batching amortizes the commit when the daemon is busy.

        `alert`, when given, is called for every record that has a finding, inside the same
        transaction, after the finding and its links are written: the alert row it writes
        commits with them (no finding without its alert, no alert without its finding).
        """
        for record in records:
            if record.report is not None:
                severity_rank(record.report.severity)  # ValueError before any write
        now = self.now()
        with self.transaction():
            for source in dict.fromkeys(record.source for record in records):
                require_source(self, source)    # once per source of the batch, not per item
            return [self._record_one(record, now, alert) for record in records]

    def _record_one(self, record: ItemRecord, now: str, alert: AlertHook | None = None) -> ItemResult:
        source, item_id, version = record.source, redact(str(record.item_id)), redact(str(record.version))
        url = record.url if record.masked else redact_text(record.url)
        existing = self.db.execute(
            "SELECT version, sha256, size, finding_id FROM items WHERE source = ? AND item_id = ?",
            (source, item_id),
        ).fetchone()
        same_version = existing is not None and existing[0] == version
        report = record.report
        finding_id: int | None = None
        new_finding = escalated = False
        sha256: str | None = None
        size: int | None = None
        if report is not None:
            sha256, size = report.sha256, report.size
            if report.severity != "none":
                finding_id, new_finding, escalated = upsert_finding(self, report, now)
        elif same_version:  # re-recorded without a report: keep what the version had
            sha256, size, finding_id = existing[1], existing[2], existing[3]
        title = record.title if record.masked else redact_text(record.title)
        author = record.author if record.masked else redact_text(record.author)
        posted_at = post_date(record.posted_at, now)
        self._write_item(record.source, item_id, version, url, title, sha256, size, finding_id, now, existing is None)
        self.db.execute("UPDATE items SET posted_at = ?, author = ? WHERE source = ? AND item_id = ?",
                        (posted_at, author, source, item_id))
        self.db.execute("DELETE FROM failed_items WHERE source = ? AND item_id = ?", (source, item_id))
        if finding_id is not None:
            self.db.execute(
                """INSERT OR IGNORE INTO item_findings
                    (finding_id, source, item_id, version, url, title, linked_at, posted_at, author)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (finding_id, source, item_id, version, url, title, now, posted_at, author),
            )
        alert_row = None
        if alert is not None and finding_id is not None and report is not None:
            event = FindingEvent(source, item_id, url, title, finding_id, new_finding, escalated, report, now,
                                 posted_at, author)
            alert_row = alert(cast("StateDB", self), event)      # every ItemQueries is a StateDB
        return ItemResult(not same_version, finding_id, new_finding, escalated, alert_row)

    def _write_item(
        self,
        source: str,
        item_id: str,
        version: str,
        url: str | None,
        title: str | None,
        sha256: str | None,
        size: int | None,
        finding_id: int | None,
        now: str,
        is_new: bool,
    ) -> None:
        """Insert the items row, or update it keeping its first_seen."""
        if is_new:
            self.db.execute(
                """INSERT INTO items (source, item_id, version, url, title, sha256, size,
                    first_seen, last_seen, finding_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (source, item_id, version, url, title, sha256, size, now, now, finding_id),
            )
            return
        self.db.execute(
            """UPDATE items SET version = ?, url = ?, title = ?, sha256 = ?, size = ?,
                last_seen = ?, finding_id = ? WHERE source = ? AND item_id = ?""",
            (version, url, title, sha256, size, now, finding_id, source, item_id),
        )

    def record_failures(self, failures: Sequence[ItemFailure], max_tries: int) -> list[tuple[int, bool]]:
        """Record items whose analysis failed, in one transaction: (tries, parked) for each.

        The same version failing again counts one more try; a new version starts over. At
        `max_tries` the item is parked: `is_seen` then skips it until its content changes.
        """
        now = self.now()
        outcomes: list[tuple[int, bool]] = []
        with self.transaction():
            for failure in failures:
                require_source(self, failure.source)
                item_id, version = redact(str(failure.item_id)), redact(str(failure.version))
                row = self.db.execute(
                    "SELECT version, tries FROM failed_items WHERE source = ? AND item_id = ?",
                    (failure.source, item_id),
                ).fetchone()
                tries = row[1] + 1 if row is not None and row[0] == version else 1
                parked = tries >= max_tries
                self.db.execute(
                    """INSERT INTO failed_items (source, item_id, version, url, title, error, tries,
                        parked, first_failed, last_failed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (source, item_id) DO UPDATE SET version = excluded.version,
                        url = excluded.url, title = excluded.title, error = excluded.error,
                        tries = excluded.tries, parked = excluded.parked,
                        last_failed = excluded.last_failed""",
                    (failure.source, item_id, version, redact_text(failure.url),
                     redact_text(failure.title), one_line(failure.error), tries, int(parked), now, now),
                )
                outcomes.append((tries, parked))
        return outcomes

    def failed_items(self, source: str | None = None) -> list[dict[str, Any]]:
        """Failed items (retried and parked), the latest first."""
        where, params = ("WHERE source = ?", (source,)) if source else ("", ())
        return dict_rows(
            self.db,
            f"""SELECT source, item_id, version, url, title, error, tries, parked = 1 AS parked,
                first_failed, last_failed FROM failed_items {where}
            ORDER BY last_failed DESC, source, item_id""", params)
