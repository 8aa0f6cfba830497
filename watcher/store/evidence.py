"""Custody records of the sealed evidence vault (`watcher.evidence`), in the `evidence` table.

The daemon writes one row per document it seals (or finds already sealed, or a full vault
refuses) through `await store.call(record_custodies, [(record, title), ...])`; retention marks the rows
of the files it deleted (`mark_expired`); `watcher evidence list|show` reads them on a
read-only connection (`custody_records`, `custody_record`). Every text is stored masked
(`watcher.redact`): the URL the vault already masked, the title and the note again here.
finding_id and incident_id are plain numbers (no foreign key): a record outlives the finding
it supports, as what was exposed must still be shown after the finding's retention.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..timestamps import format_time
from .connection import dict_rows
from .texts import one_line, redact_text

if TYPE_CHECKING:
    from ..evidence import CustodyRecord
    from .state import StateDB

__all__ = ["custody_record", "custody_records", "incident_of", "mark_expired", "record_custodies", "record_custody"]

_COLUMNS = ("piece_id", "status", "file_name", "sha256", "size", "kept_sha256", "kept_bytes", "truncated",
            "sealed_size", "file_sha256", "source", "url", "title", "tor", "fetched_at", "sealed_at",
            "finding_id", "incident_id", "recipients", "note")


def incident_of(state: StateDB, finding_id: int) -> int | None:
    """The incident a finding belongs to (None before alerting grouped it, or after retention)."""
    row = state.db.execute("SELECT incident_id FROM incident_findings WHERE finding_id = ?",
                           (finding_id,)).fetchone()
    return int(row[0]) if row else None


def record_custodies(state: StateDB,
                     entries: Sequence[tuple[CustodyRecord, str | None]]) -> list[tuple[int, int | None]]:
    """Write the records of `entries` (record, the item's title), each with the incident of
    its finding, in one transaction; (row id, incident id) for each."""
    written = []
    with state.transaction():
        for record, title in entries:
            incident = incident_of(state, int(record.finding_id)) if record.finding_id is not None else None
            written.append((_insert(state, replace(record, incident_id=incident), title), incident))
    return written


def record_custody(state: StateDB, record: CustodyRecord, title: str | None = None) -> int:
    """Write `record` (with the item's `title`, masked); the row's id, the number
    `watcher evidence show` takes."""
    with state.transaction():
        return _insert(state, record, title)


def _insert(state: StateDB, record: CustodyRecord, title: str | None) -> int:
    values = record.to_dict()
    values.update(url=redact_text(record.url), title=redact_text(title), note=one_line(record.note) or "",
                  recipients=json.dumps(list(record.recipients)), truncated=int(record.truncated),
                  tor=int(record.tor))
    for key in ("finding_id", "incident_id"):
        values[key] = int(values[key]) if values[key] is not None else None
    placeholders = ", ".join("?" for _ in _COLUMNS)
    cursor = state.db.execute(f"INSERT INTO evidence ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                              [values[column] for column in _COLUMNS])
    return int(cursor.lastrowid or 0)


def mark_expired(state: StateDB, file_names: Sequence[str], now: str | None = None) -> int:
    """Mark the records of the deleted pieces `file_names` expired; how many rows changed."""
    if not file_names:
        return 0
    with state.transaction():
        cursor = state.db.execute(
            """UPDATE evidence SET expired_at = ? WHERE expired_at IS NULL
            AND file_name IN (SELECT value FROM json_each(?))""",
            (now or state.now(), json.dumps(list(file_names))))
    return max(cursor.rowcount, 0)


def custody_records(state: StateDB, since: datetime | None = None, limit: int | None = None,
                    incident_id: int | None = None) -> list[dict[str, Any]]:
    """Records sealed at or after `since` (of the incident `incident_id`), the latest first
    (recipients decoded)."""
    sql = "SELECT * FROM evidence WHERE 1"
    params: list[Any] = []
    if since is not None:
        sql += " AND sealed_at >= ?"
        params.append(format_time(since))
    if incident_id is not None:
        sql += " AND incident_id = ?"
        params.append(incident_id)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_decode(row) for row in dict_rows(state.db, sql, params)]


def custody_record(state: StateDB, record_id: int) -> dict[str, Any] | None:
    """The record numbered `record_id`, or None."""
    rows = dict_rows(state.db, "SELECT * FROM evidence WHERE id = ?", (record_id,))
    return _decode(rows[0]) if rows else None


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["recipients"] = json.loads(row["recipients"])
    row["truncated"], row["tor"] = bool(row["truncated"]), bool(row["tor"])
    return row
