"""Watchlists in the state database (tables of migration 11, see `watcher.store.schema`).

No numpy here: the daemon's own process (reload checks) and the alerting stage (incident
counts) import this module; members travel as bytes (sorted little-endian uint64 chunks) and
as signed 64-bit integers (SQLite's).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import StateDB

CHUNK_MEMBERS = 1 << 20          # fingerprints per stored chunk (8 MiB)
MAPPED_DIR = "watchlists"        # beside the state database: each list's members as a flat file (members.py)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class WatchlistError(ValueError):
    """A watchlist operation refused, one line for the operator (never a NIR in it)."""


def check_name(name: str) -> str:
    """A watchlist name: 1-64 letters, digits, `.`, `_`, `-`, starting with a letter or digit."""
    if not NAME.fullmatch(name):
        raise WatchlistError(f"watchlist name {name!r}: 1-64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class WatchlistRow:
    """A stored watchlist, without its members."""

    id: int
    name: str
    members: int
    key_check: str
    origin: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "members": self.members, "origin": self.origin,
                "created_at": self.created_at, "key_check": self.key_check}


def save(state: StateDB, name: str, chunks: Iterable[bytes], members: int, key_check: str,
         origin: str) -> WatchlistRow:
    """Store a list under `name` in one transaction, replacing any list of that name (its
    rows are deleted first: secure_delete leaves no trace of the old chunks). The new row gets
    a new id, which is what tells the daemon to reload."""
    check_name(name)
    now = state.now()
    with state.transaction():
        state.db.execute("DELETE FROM watchlists WHERE name = ?", (name,))
        cursor = state.db.execute(
            "INSERT INTO watchlists (name, members, key_check, origin, created_at) VALUES (?, ?, ?, ?, ?)",
            (name, members, key_check, origin, now))
        row_id = int(cursor.lastrowid)  # type: ignore[arg-type]
        state.db.executemany(
            "INSERT INTO watchlist_chunks (watchlist_id, seq, members) VALUES (?, ?, ?)",
            ((row_id, seq, chunk) for seq, chunk in enumerate(chunks)))
    forget_files(state.path.parent / MAPPED_DIR, {file_name(row) for row in rows(state.db)})
    return WatchlistRow(row_id, name, members, key_check, origin, now)


def remove(state: StateDB, name: str) -> bool:
    """Delete the list `name` and its chunks; False when there is none. The incidents keep
    the counts they had (their matched fingerprints are history, like their findings)."""
    with state.transaction():
        cursor = state.db.execute("DELETE FROM watchlists WHERE name = ?", (name,))
    forget_files(state.path.parent / MAPPED_DIR, {file_name(row) for row in rows(state.db)})
    return cursor.rowcount > 0


def file_name(row: WatchlistRow) -> str:
    """The name of a list's flat file in MAPPED_DIR (its id is new at every import)."""
    return f"{row.id}-{row.key_check}.u64"


def forget_files(folder: Path, current: set[str]) -> None:
    """Remove the flat files of lists no longer stored (replaced or removed), like their
    chunks: best effort; a worker that still maps one keeps its pages until it stops."""
    with contextlib.suppress(OSError):
        for path in folder.glob("*.u64"):
            if path.name not in current:
                with contextlib.suppress(OSError):
                    path.unlink()


def rows(db: sqlite3.Connection) -> list[WatchlistRow]:
    """Every stored list, by name."""
    found = db.execute("SELECT id, name, members, key_check, origin, created_at FROM watchlists ORDER BY name")
    return [WatchlistRow(*row) for row in found]


def chunks(db: sqlite3.Connection, watchlist_id: int) -> Iterator[bytes]:
    """A list's member chunks in order, one at a time (a 20M list is never read twice over)."""
    last = -1
    while True:
        row = db.execute("SELECT seq, members FROM watchlist_chunks WHERE watchlist_id = ? AND seq > ? "
                         "ORDER BY seq LIMIT 1", (watchlist_id, last)).fetchone()
        if row is None:
            return
        last = row[0]
        yield bytes(row[1])


def generation(db: sqlite3.Connection) -> tuple[int, int]:
    """(highest id, number of lists): changes at every import (a new id) and removal."""
    try:
        top, count = db.execute("SELECT coalesce(max(id), 0), count(*) FROM watchlists").fetchone()
    except sqlite3.OperationalError:             # a database before migration 11
        return (0, 0)
    return int(top), int(count)


def stored_hits(text: str | None) -> dict[str, int]:
    """A stored `watchlist_hits` (JSON: watchlist name -> distinct members) by name, zeros and
    anything unreadable left out; a name is masked like any text shown (an operator may have
    named a list after anything)."""
    from ..redact import redact

    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {redact(str(name)): int(count) for name, count in sorted(found.items())
            if isinstance(count, int) and count > 0}


def record_incident_hits(state: StateDB, incident_id: int, matched: dict[str, list[int]]) -> dict[str, int]:
    """Add a document's matched member fingerprints to its incident; the incident's distinct
    counts per watchlist, also kept in `incidents.watchlist_hits` (inside the caller's
    transaction)."""
    db = state.db
    if matched:
        db.executemany(
            "INSERT OR IGNORE INTO incident_watchlist_members (incident_id, watchlist, member) VALUES (?, ?, ?)",
            ((incident_id, name, member) for name, members in matched.items() for member in members))
    elif db.execute("SELECT watchlist_hits FROM incidents WHERE id = ?", (incident_id,)).fetchone() == ("{}",):
        return {}
    counts = {name: int(count) for name, count in db.execute(
        "SELECT watchlist, count(*) FROM incident_watchlist_members WHERE incident_id = ? GROUP BY watchlist "
        "ORDER BY watchlist", (incident_id,))}
    db.execute("UPDATE incidents SET watchlist_hits = ? WHERE id = ?", (json.dumps(counts), incident_id))
    return counts


def alerted_watchlist_hits(state: StateDB, incident_id: int) -> dict[str, int]:
    """The incident's member counts as its last alert described them ({} before any)."""
    row = state.db.execute(
        """SELECT json_extract(payload, '$.incident.watchlist_hits') FROM alerts
        WHERE incident_id = ? AND kind != 'health' ORDER BY id DESC LIMIT 1""", (incident_id,)).fetchone()
    found = json.loads(row[0]) if row and row[0] else {}
    return {str(name): int(count) for name, count in found.items()} if isinstance(found, dict) else {}
