"""The daemon's state: sources, items, findings and fingerprints in one SQLite file.

One process writes the database (the daemon), through one connection owned by one thread.
`StateDB` is the synchronous core; `Store` is the asyncio facade that runs every call of a
`StateDB` on a dedicated single-worker `ThreadPoolExecutor`, whose thread also opens the
connection (an sqlite3 connection is bound to the thread that created it). Calls are thus
serialized in submission order and never block the event loop.

Nothing here stores a cleartext identifier: a `Report` carries keyed fingerprints (HMAC hex)
and masked samples only, and every text the store keeps (item ids, versions, URLs, titles,
errors, notices, samples, reasons) goes through `watcher.redact` first. The daemon passes item
ids and versions through `redact.keyed_id`, so two ids differing only by an identifier stay
two items; a URL holding an identifier is kept masked and gets no conditional-GET validators
(its page is fetched in full, its masked form would not match). The store also refuses a
fingerprint that is not a hex digest, and deletes with `secure_delete` (freed pages zeroed).

Schema (version 7). Times are ISO 8601 UTC strings, `2026-11-28T16:40:00Z`, so they sort and
compare as text; so are the posts' own dates (`posted_at`, `first_posted`), read on the way in
by `watcher.dates.normalise` (NULL when the source's text cannot be read unambiguously).
JSON columns hold JSON text (datasette renders it).

    schema_version (version PK, name, applied_at)       one row per applied migration
    sources        (name PK, kind, state ok|failing|disabled, created_at, last_poll,
                    last_success, last_error, last_error_at, consecutive_failures,
                    failing_since, next_poll, warning (a successful poll's doubt: the
                    view shows the source `degraded`), links (item links on its main page at
                    the last poll that fetched it), skipped, refused (items not fetched,
                    documents with refused parts: running totals), last_notice(_at))
    validators     (source, url) PK -> etag, last_modified, updated_at   (conditional GET)
    findings       (id PK, sha256 UNIQUE, size, severity low..critical, reasons JSON,
                    counts JSON, insurers JSON, records, samples JSON, rules JSON,
                    errors JSON, first_seen, last_seen)
                   One row per distinct content: the same bytes on two sources are one finding.
    items          (source, item_id) PK, version, url, title, sha256, size, first_seen,
                    last_seen, finding_id -> findings (the finding of the current version),
                    posted_at, author (the post's own, when the source gives them; posted_at
                    normalised, see above)
    item_findings  (finding_id, source, item_id, version) PK, url, title, linked_at, posted_at, author
                   Every item version a finding was seen in; kept when an item changes.
    failed_items   (source, item_id) PK, version, url, title, error, tries, parked,
                   first_failed, last_failed: an item whose analysis failed. Retried at the
                   next polls (not "seen") until `tries` reaches the limit, then parked (seen);
                   deleted when the item is recorded.
    fingerprints   (hmac, kind, finding_id) PK, WITHOUT ROWID; hmac leads the key so
                   "which findings share these fingerprints" is an index search.
    incidents      (id PK, severity, nirs, sources JSON, first_seen, last_seen,
                    alerted_severity, alerted_nirs, alerted_sources JSON, alerted_at, first_posted)
                   One leak: findings grouped by content hash or NIR overlap (watcher.alerts).
                   alerted_* is the state the last alert described (NULL: never alerted).
                   first_posted: the earliest post date of its documents (NULL: none known).
    incident_findings (finding_id PK -> findings, incident_id -> incidents, overlap, joined_at)
    alerts         (id PK, alert_id UNIQUE, kind new|update|health, severity info..critical,
                    incident_id, finding_id, source, title, tags JSON, payload JSON,
                    state pending|sent|logged|failed, tries, next_try, last_error,
                    delivered_to JSON, created_at, emitted_at, sent_at, acked_at)
                   The outbox: written in the transaction of the finding that raised it.
    health_notices (source PK -> sources, failing_since, alert -> alerts, notified_at)
                   A source whose failure streak has been announced (one notice per streak).
    views          source_health (what `sources_health()` returns),
                   finding_links (findings joined to the items they were seen in),
                   incident_overview (incidents with their finding and alert counts).

Alerting (watcher.alerts) keeps its tables here and works through two doors: an `AlertHook`
given to `record_item(s)` runs inside the recording transaction (so a finding and its alert
commit together or not at all), and `Store.call` runs its own functions on the store thread.

How to add a migration (as `_m003_alerts` added the alerts/incidents tables):

1. Write `def _m004_something(db: Database) -> None` that executes its DDL/DML with
   `db.execute(...)`. It runs inside one `BEGIN IMMEDIATE` transaction together with the
   `schema_version` row, so it is all-or-nothing; do not commit inside it, and do not use
   `db.executescript` (it would commit). A foreign-key check runs before the commit.
2. Append `Migration(4, "something", _m004_something)` to `MIGRATIONS`. Versions must be
   1, 2, 3... without gaps; `SCHEMA_VERSION` follows automatically.
3. Never edit a released migration: databases in the field already ran it.
4. Test it by building the previous version by hand in a test, opening it, and checking.

Rebuilding a table (`table.transform()`, or create/copy/drop/rename) with foreign keys ON
cascades deletes from referencing tables; prefer `ALTER TABLE ... ADD COLUMN`, or recreate the
dependent views in the same migration after a rebuild. Opening a database whose version is
newer than `SCHEMA_VERSION` raises `SchemaTooNewError` before anything is written.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlite_utils import Database

from .dates import normalise as normalise_date
from .redact import redact, redact_tree
from .report import Report
from .score import SEVERITIES, severity_rank
from .timestamps import format_time, parse_time

__all__ = [
    "AlertHook",
    "FindingEvent",
    "ItemFailure",
    "ItemRecord",
    "ItemResult",
    "MIGRATIONS",
    "Migration",
    "NotAStateDatabaseError",
    "PollHealth",
    "SCHEMA_VERSION",
    "SchemaTooNewError",
    "StateDB",
    "Store",
    "StoreClosedError",
    "Validators",
]

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
BUSY_TIMEOUT_MS = 5000
ERROR_MAX_CHARS = 500
SOURCE_STATES = ("ok", "failing", "disabled")
_HEX_DIGEST = re.compile(r"[0-9a-f]{32,128}")


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer leak-watcher; this code cannot safely use it."""


class NotAStateDatabaseError(RuntimeError):
    """The file is an SQLite database, but not one created by this module."""


class StoreClosedError(RuntimeError):
    """A `Store` method was called after `close()`."""


# --------------------------------------------------------------------------- times


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- redaction


def _redact(text: str | None) -> str | None:
    """`text` as stored: every identifier masked (see `watcher.redact`)."""
    return None if text is None else redact(text)


def _redact_json(text: str | None) -> str | None:
    """A JSON column with every string in it redacted (text that is not JSON: redacted)."""
    if text is None:
        return None
    try:
        return _json(redact_tree(json.loads(text)))
    except ValueError:
        return redact(text)


def _one_line(error: str | None) -> str | None:
    """An error message as one redacted line of at most ERROR_MAX_CHARS characters."""
    if error is None:
        return None
    line = " ".join(error.split())
    if len(line) > ERROR_MAX_CHARS:
        line = line[: ERROR_MAX_CHARS - 1] + "\u2026"
    return _redact(line)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _post_date(text: str | None, now: str) -> str | None:
    """A post's date as stored: normalised (`watcher.dates`, relative forms read against the
    recording time `now`), or None.

    The source's own text is not kept: it was shown as is before (unsortable, in a dozen
    forms), a readable one says nothing more than its normalised date, and an unreadable one is
    attacker-chosen free text in a field an analyst trusts as a date. A text that cannot be
    read is logged (masked, at debug level) so the form can be added to `watcher.dates`.
    """
    if text is None:
        return None
    date = normalise_date(text, now=parse_time(now))
    if date is None:
        logger.debug("post date not read: %.80r", redact(str(text)))
    return date


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    """One schema step: `apply(db)` brings a database at `version - 1` to `version`."""

    version: int
    name: str
    apply: Callable[[Database], None]
    vacuum: bool = False        # rewrite the file afterwards (no freed page keeps old text)


def _execute_all(db: Database, statements: Sequence[str]) -> None:
    """Run DDL one statement at a time (inside the caller's transaction, unlike executescript)."""
    for statement in statements:
        db.execute(statement)


def _m001_initial(db: Database) -> None:
    """Sources, validators, items, findings, their links and fingerprints."""
    _execute_all(
        db,
        [
            """CREATE TABLE sources (
                name TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'failing', 'disabled')),
                created_at TEXT NOT NULL,
                last_poll TEXT,
                last_success TEXT,
                last_error TEXT,
                last_error_at TEXT,
                consecutive_failures INTEGER NOT NULL DEFAULT 0,
                failing_since TEXT,
                next_poll TEXT
            )""",
            """CREATE TABLE validators (
                source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
                url TEXT NOT NULL,
                etag TEXT,
                last_modified TEXT,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (source, url)
            )""",
            """CREATE TABLE findings (
                id INTEGER PRIMARY KEY,
                sha256 TEXT NOT NULL UNIQUE,
                size INTEGER NOT NULL,
                severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
                reasons TEXT NOT NULL DEFAULT '[]',
                counts TEXT NOT NULL DEFAULT '{}',
                insurers TEXT NOT NULL DEFAULT '[]',
                records INTEGER,
                samples TEXT NOT NULL DEFAULT '[]',
                rules TEXT NOT NULL DEFAULT '{}',
                errors TEXT NOT NULL DEFAULT '[]',
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL
            )""",
            "CREATE INDEX findings_first_seen ON findings (first_seen)",
            """CREATE TABLE items (
                source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
                item_id TEXT NOT NULL,
                version TEXT NOT NULL,
                url TEXT,
                title TEXT,
                sha256 TEXT,
                size INTEGER,
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                finding_id INTEGER REFERENCES findings(id) ON DELETE SET NULL,
                PRIMARY KEY (source, item_id)
            )""",
            "CREATE INDEX items_finding_id ON items (finding_id)",
            """CREATE TABLE item_findings (
                finding_id INTEGER NOT NULL REFERENCES findings(id) ON DELETE CASCADE,
                source TEXT NOT NULL,
                item_id TEXT NOT NULL,
                version TEXT NOT NULL,
                url TEXT,
                title TEXT,
                linked_at TEXT NOT NULL,
                PRIMARY KEY (finding_id, source, item_id, version),
                FOREIGN KEY (source, item_id) REFERENCES items(source, item_id) ON DELETE CASCADE
            )""",
            "CREATE INDEX item_findings_item ON item_findings (source, item_id)",
            """CREATE TABLE fingerprints (
                hmac TEXT NOT NULL,
                kind TEXT NOT NULL,
                finding_id INTEGER NOT NULL REFERENCES findings(id) ON DELETE CASCADE,
                PRIMARY KEY (hmac, kind, finding_id)
            ) WITHOUT ROWID""",
            "CREATE INDEX fingerprints_finding ON fingerprints (finding_id, kind)",
        ],
    )


def _m002_views(db: Database) -> None:
    """Views that make the state readable as-is in datasette / `sqlite-utils rows`."""
    _execute_all(
        db,
        [
            """CREATE VIEW source_health AS
            SELECT s.name, s.kind, s.state, s.last_poll, s.last_success,
                (SELECT count(*) FROM items AS i WHERE i.source = s.name) AS items,
                (SELECT count(DISTINCT l.finding_id) FROM item_findings AS l
                    WHERE l.source = s.name) AS findings,
                s.consecutive_failures, s.failing_since, s.last_error, s.last_error_at,
                s.next_poll
            FROM sources AS s""",
            """CREATE VIEW finding_links AS
            SELECT f.id AS finding_id, f.severity, f.sha256, f.first_seen AS finding_first_seen,
                l.source, l.item_id, l.version, l.url, l.title, l.linked_at
            FROM item_findings AS l JOIN findings AS f ON f.id = l.finding_id""",
        ],
    )


def _m003_alerts(db: Database) -> None:
    """Incidents, the alert outbox and health notices; every existing finding becomes an incident.

    Backfilled incidents are marked as already alerted (alerted_* = their current state): the
    findings recorded before alerting existed were logged then, and replaying history would
    flood the SOC. They still group later reposts and raise updates when those grow.
    """
    _execute_all(
        db,
        [
            """CREATE TABLE incidents (
                id INTEGER PRIMARY KEY,
                severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
                nirs INTEGER NOT NULL DEFAULT 0,
                sources TEXT NOT NULL DEFAULT '[]',
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                alerted_severity TEXT,
                alerted_nirs INTEGER,
                alerted_sources TEXT,
                alerted_at TEXT
            )""",
            """CREATE TABLE incident_findings (
                finding_id INTEGER PRIMARY KEY REFERENCES findings(id) ON DELETE CASCADE,
                incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
                overlap REAL,
                joined_at TEXT NOT NULL
            )""",
            "CREATE INDEX incident_findings_incident ON incident_findings (incident_id)",
            """CREATE TABLE alerts (
                id INTEGER PRIMARY KEY,
                alert_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('new', 'update', 'health')),
                severity TEXT NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
                incident_id INTEGER REFERENCES incidents(id) ON DELETE SET NULL,
                finding_id INTEGER REFERENCES findings(id) ON DELETE SET NULL,
                source TEXT,
                title TEXT NOT NULL,
                tags TEXT NOT NULL DEFAULT '[]',
                payload TEXT NOT NULL DEFAULT '{}',
                state TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'logged', 'failed')),
                tries INTEGER NOT NULL DEFAULT 0,
                next_try TEXT NOT NULL,
                last_error TEXT,
                delivered_to TEXT NOT NULL DEFAULT '[]',
                created_at TEXT NOT NULL,
                emitted_at TEXT,
                sent_at TEXT,
                acked_at TEXT
            )""",
            "CREATE INDEX alerts_due ON alerts (state, next_try)",
            "CREATE INDEX alerts_unemitted ON alerts (id) WHERE emitted_at IS NULL",
            "CREATE INDEX alerts_incident ON alerts (incident_id)",
            """CREATE TABLE health_notices (
                source TEXT PRIMARY KEY REFERENCES sources(name) ON DELETE CASCADE,
                failing_since TEXT NOT NULL,
                alert INTEGER REFERENCES alerts(id) ON DELETE SET NULL,
                notified_at TEXT NOT NULL
            )""",
            """INSERT INTO incidents (id, severity, nirs, sources, first_seen, last_seen)
            SELECT f.id, f.severity, coalesce(json_extract(f.counts, '$.nir'), 0),
                (SELECT json_group_array(source) FROM
                    (SELECT DISTINCT l.source FROM item_findings AS l WHERE l.finding_id = f.id
                     ORDER BY l.source)),
                f.first_seen, f.last_seen
            FROM findings AS f""",
            """UPDATE incidents SET alerted_severity = severity, alerted_nirs = nirs,
                alerted_sources = sources""",
            """INSERT INTO incident_findings (finding_id, incident_id, overlap, joined_at)
            SELECT id, id, NULL, first_seen FROM findings""",
            """CREATE VIEW incident_overview AS
            SELECT i.id, i.severity, i.nirs, i.sources, i.first_seen, i.last_seen,
                (SELECT count(*) FROM incident_findings AS m WHERE m.incident_id = i.id) AS findings,
                (SELECT count(*) FROM alerts AS a WHERE a.incident_id = i.id) AS alerts,
                i.alerted_severity, i.alerted_nirs, i.alerted_at
            FROM incidents AS i""",
        ],
    )


def _m004_failures(db: Database) -> None:
    """Items whose analysis failed (retried, then parked), and what makes a source degraded:
    its last warning, the links its main page had, its skipped items and refused parts."""
    _execute_all(
        db,
        [
            """CREATE TABLE failed_items (
                source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
                item_id TEXT NOT NULL,
                version TEXT NOT NULL,
                url TEXT,
                title TEXT,
                error TEXT NOT NULL,
                tries INTEGER NOT NULL DEFAULT 1,
                parked INTEGER NOT NULL DEFAULT 0,
                first_failed TEXT NOT NULL,
                last_failed TEXT NOT NULL,
                PRIMARY KEY (source, item_id)
            )""",
            "ALTER TABLE sources ADD COLUMN warning TEXT",
            "ALTER TABLE sources ADD COLUMN links INTEGER",
            "ALTER TABLE sources ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sources ADD COLUMN refused INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE sources ADD COLUMN last_notice TEXT",
            "ALTER TABLE sources ADD COLUMN last_notice_at TEXT",
            "DROP VIEW source_health",
            """CREATE VIEW source_health AS
            SELECT s.name, s.kind,
                CASE WHEN s.state = 'ok' AND s.warning IS NOT NULL THEN 'degraded' ELSE s.state END AS state,
                s.last_poll, s.last_success,
                (SELECT count(*) FROM items AS i WHERE i.source = s.name) AS items,
                (SELECT count(DISTINCT l.finding_id) FROM item_findings AS l
                    WHERE l.source = s.name) AS findings,
                s.consecutive_failures, s.failing_since, s.last_error, s.last_error_at,
                s.next_poll, s.warning,
                (SELECT count(*) FROM failed_items AS f WHERE f.source = s.name AND NOT f.parked)
                    AS failed_items,
                (SELECT count(*) FROM failed_items AS f WHERE f.source = s.name AND f.parked)
                    AS parked_items,
                (SELECT f.error FROM failed_items AS f WHERE f.source = s.name
                    ORDER BY f.last_failed DESC LIMIT 1) AS last_item_error,
                s.skipped, s.refused, s.last_notice, s.last_notice_at
            FROM sources AS s""",
        ],
    )


def _m005_redact(db: Database) -> None:
    """Mask the identifiers older versions kept in clear (item ids, URLs, titles, errors, alert
    payloads; see the module docstring). An item id that changes gets a `#mN` suffix to stay
    distinct: the next poll sees the item under its keyed id, fetches it once more, and finds
    its finding by content (no second alert). `_migrate` then vacuums the file, so no old page
    keeps the clear text."""
    db.execute("PRAGMA defer_foreign_keys=ON")     # items and item_findings keys change together
    renamed: dict[tuple[str, str], str] = {}
    for rowid, source, item_id in db.execute("SELECT rowid, source, item_id FROM items").fetchall():
        masked = redact(item_id)
        if masked != item_id:
            renamed[source, item_id] = f"{masked} #m{rowid}"
    for table in ("items", "item_findings", "failed_items"):
        rows = db.execute(f"SELECT rowid, source, item_id, version, url, title FROM {table}").fetchall()
        for rowid, source, item_id, version, url, title in rows:
            new_id = renamed.get((source, item_id)) or redact(item_id)
            values = (new_id, redact(version), _redact(url), _redact(title))
            if values != (item_id, version, url, title):
                db.execute(f"UPDATE OR REPLACE {table} SET item_id = ?, version = ?, url = ?, title = ? "
                           "WHERE rowid = ?", (*values, rowid))
    db.execute("UPDATE failed_items SET error = redact_text(error)")
    db.execute("UPDATE sources SET last_error = redact_text(last_error), warning = redact_text(warning), "
               "last_notice = redact_text(last_notice)")
    for url, in db.execute("SELECT DISTINCT url FROM validators").fetchall():
        if redact(url) != url:
            db.execute("DELETE FROM validators WHERE url = ?", (url,))
    db.execute("UPDATE findings SET reasons = redact_json(reasons), samples = redact_json(samples), "
               "errors = redact_json(errors)")
    db.execute("UPDATE alerts SET title = redact_text(title), payload = redact_json(payload), "
               "last_error = redact_text(last_error)")


def _m006_posts(db: Database) -> None:
    """The post's own date and author, where the source gives them (a Telegram message, a
    feed entry, an API record's date field)."""
    _execute_all(db, [f"ALTER TABLE {table} ADD COLUMN {column} TEXT"
                      for table in ("items", "item_findings") for column in ("posted_at", "author")])


def _m007_post_dates(db: Database) -> None:
    """Post dates as one sortable form (`watcher.dates`), and each incident's first post date.

    The text each source gave is replaced by its normalised date, or NULL where it cannot be
    read: relative forms (`il y a 3 heures`) are read against when the row was written, the
    source's text is not kept (see `_post_date`). `first_posted` is filled from the item
    links of every finding of the incident; the incident_overview view gains it.
    """
    _execute_all(
        db,
        [
            "UPDATE items SET posted_at = normalise_date(posted_at, last_seen) WHERE posted_at IS NOT NULL",
            """UPDATE item_findings SET posted_at = normalise_date(posted_at, linked_at)
            WHERE posted_at IS NOT NULL""",
            "ALTER TABLE incidents ADD COLUMN first_posted TEXT",
            """UPDATE incidents SET first_posted = (
                SELECT min(l.posted_at) FROM incident_findings AS m
                JOIN item_findings AS l ON l.finding_id = m.finding_id
                WHERE m.incident_id = incidents.id)""",
            "DROP VIEW incident_overview",
            """CREATE VIEW incident_overview AS
            SELECT i.id, i.severity, i.nirs, i.sources, i.first_seen, i.last_seen,
                (SELECT count(*) FROM incident_findings AS m WHERE m.incident_id = i.id) AS findings,
                (SELECT count(*) FROM alerts AS a WHERE a.incident_id = i.id) AS alerts,
                i.alerted_severity, i.alerted_nirs, i.alerted_at, i.first_posted
            FROM incidents AS i""",
        ],
    )


def _normalise_stored_date(text: str | None, written_at: str | None) -> str | None:
    """`normalise_date` for SQL (migration 7): `text` read against the row's own time."""
    if text is None:
        return None
    try:
        now = parse_time(written_at) if written_at else None
    except ValueError:
        now = None
    return normalise_date(text, now=now)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", _m001_initial),
    Migration(2, "source_health and finding_links views", _m002_views),
    Migration(3, "incidents, alerts and health notices", _m003_alerts),
    Migration(4, "failed items and degraded sources", _m004_failures),
    Migration(5, "identifiers masked in item ids, URLs, titles, errors and alerts", _m005_redact, vacuum=True),
    Migration(6, "posts' own date and author", _m006_posts),
    Migration(7, "post dates normalised, incidents' first post date", _m007_post_dates),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise AssertionError("MIGRATIONS must be numbered 1, 2, 3... in order")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Validators:
    """HTTP validators of one URL, replayed as If-None-Match / If-Modified-Since."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class PollHealth:
    """What a poll noticed beside its items: a warning (the source is `degraded`), the links
    its main page had, items it could not fetch, documents with refused parts, and the last
    such notice as one line."""

    warning: str | None = None
    links: int | None = None
    skipped: int = 0
    refused: int = 0
    notice: str | None = None


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
    """One polled item to record; `report` is None when there was nothing to scan."""

    source: str
    item_id: str
    version: str
    url: str | None
    title: str | None
    report: Report | None
    posted_at: str | None = None     # the post's own date, as the source gives it
    author: str | None = None        # the post's author (masked like any text)


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


# --------------------------------------------------------------------------- file


def _prepare_file(path: Path) -> None:
    """Create `path` (and its directory) private to the owner before SQLite opens it.

    SQLite creates -wal and -shm with the database file's permissions, so 0600 here covers
    them too. An existing file readable by others is tightened, with a warning.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=DIR_MODE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            logger.warning("%s had mode %o; tightening to %o", path, mode, FILE_MODE)
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _tighten_sidecars(path: Path) -> None:
    """chmod 0600 the -wal/-shm files if present (they inherit the mode; this is a backstop)."""
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(sidecar.stat().st_mode) != FILE_MODE:
                sidecar.chmod(FILE_MODE)
        except FileNotFoundError:
            continue


# --------------------------------------------------------------------------- sync core


class StateDB:
    """The state database, used from the one thread that constructed it.

    Opening creates the file (mode 0600), checks the schema version (refusing a newer one),
    switches to WAL and applies pending migrations. Every write method is one transaction.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], datetime] = _utc_now):
        self.path = Path(path)
        self._clock = clock
        _prepare_file(self.path)
        self.db = Database(self.path)
        try:
            self._configure_connection()
            self._check_version()
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            _tighten_sidecars(self.path)
        except BaseException:
            self.db.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Let SQLite refresh its planner statistics, then close the connection."""
        try:
            self.db.execute("PRAGMA optimize")
        finally:
            self.db.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _configure_connection(self) -> None:
        """Per-connection settings: SQLite forgets them on every open."""
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA secure_delete=ON")     # a deleted or rewritten row leaves no trace
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        IMMEDIATE takes the write lock up front, so a transaction that reads then writes never
        fails half-way on a lock. `with db.conn:` is not used: sqlite-utils' `execute()`
        commits a statement run outside an explicit transaction on its own, which would
        break atomicity.
        """
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One BEGIN IMMEDIATE transaction, for modules that keep their own tables here."""
        return self._transaction()

    def now(self) -> str:
        """The current time as stored (from the clock this StateDB was opened with)."""
        return self._now()

    def _now(self) -> str:
        return format_time(self._clock())

    # -- schema ------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The version of the open database (0 for a new, empty file)."""
        tables = self.db.table_names()
        if "schema_version" not in tables:
            if tables:
                raise NotAStateDatabaseError(
                    f"{self.path} holds tables {sorted(tables)[:5]} but no schema_version "
                    "table: not a leak-watcher state database, refusing to modify it"
                )
            return 0
        return int(self.db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])

    def _check_version(self) -> None:
        """Refuse, before writing anything, a database written by newer code."""
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{self.path} has schema version {version}, but this leak-watcher only knows "
                f"versions up to {SCHEMA_VERSION}: upgrade leak-watcher, or point it at another "
                "state file. The database was not modified."
            )

    def _migrate(self) -> None:
        """Apply each pending migration in its own transaction, with its schema_version row;
        then vacuum and empty the WAL if one of them asked to."""
        current = self.schema_version()
        self.db.conn.create_function("redact_text", 1, _redact, deterministic=True)
        self.db.conn.create_function("redact_json", 1, _redact_json, deterministic=True)
        self.db.conn.create_function("normalise_date", 2, _normalise_stored_date, deterministic=True)
        for migration in MIGRATIONS[current:]:
            with self._transaction():  # re-checked under the write lock: another opener may have won
                if self.schema_version() >= migration.version:
                    continue
                if migration.version == 1:
                    self.db.execute(
                        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                        "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                    )
                migration.apply(self.db)
                self._check_foreign_keys(migration)
                self.db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, self._now()),
                )
            logger.info("%s: migrated to schema version %d (%s)", self.path, migration.version, migration.name)
        if any(migration.vacuum for migration in MIGRATIONS[current:]) and current:
            self.db.execute("VACUUM")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _check_foreign_keys(self, migration: Migration) -> None:
        violations = self.db.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise RuntimeError(
                f"migration {migration.version} ({migration.name}) left {len(violations)} "
                f"foreign-key violation(s), first: {violations[0]}; rolled back"
            )

    # -- sources -----------------------------------------------------------------------

    def upsert_source(self, name: str, kind: str) -> None:
        """Declare a configured source. A source disabled earlier is enabled again.

        The configuration is the source of truth: the daemon upserts every configured source
        at start and on reload, and `disable_source()`s the ones that disappeared.
        """
        with self._transaction():
            self.db.execute(
                """INSERT INTO sources (name, kind, state, created_at) VALUES (?, ?, 'ok', ?)
                ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
                    state = CASE WHEN state != 'disabled' THEN state
                                 WHEN consecutive_failures > 0 THEN 'failing' ELSE 'ok' END""",
                (name, kind, self._now()),
            )

    def disable_source(self, name: str) -> None:
        """Mark a source disabled (kept with its history; `upsert_source` enables it again)."""
        with self._transaction():
            self._require_source(name)
            self.db.execute("UPDATE sources SET state = 'disabled' WHERE name = ?", (name,))
        logger.info("source %s disabled", name)

    def record_poll(self, name: str, ok: bool, error: str | None, next_poll: datetime,
                    health: PollHealth | None = None) -> None:
        """Record the outcome of one poll of source `name` and when to poll it next.

        Success resets the failure streak; failure extends it and sets `failing_since` on the
        first one. `error` is kept as one redacted line even on success (a partial failure);
        `last_error` is never cleared, `last_error_at` dates it. A disabled source stays
        disabled. `health` (what the poll noticed) sets the warning that makes a successful
        source `degraded` (cleared by a poll without one), the link count, and adds to the
        skipped and refused totals.
        """
        now = self._now()
        next_text = format_time(next_poll)
        health = health or PollHealth()
        with self._transaction():
            before = self._require_source(name)
            self.db.execute(
                """UPDATE sources SET warning = ?, links = coalesce(?, links), skipped = skipped + ?,
                    refused = refused + ?,
                    last_notice = coalesce(?, last_notice),
                    last_notice_at = CASE WHEN ? IS NULL THEN last_notice_at ELSE ? END
                WHERE name = ?""",
                (_one_line(health.warning), health.links, health.skipped, health.refused,
                 _one_line(health.notice), health.notice, now, name),
            )
            if ok:
                self.db.execute(
                    """UPDATE sources SET last_poll = ?, last_success = ?, next_poll = ?,
                        consecutive_failures = 0, failing_since = NULL,
                        state = CASE WHEN state = 'disabled' THEN state ELSE 'ok' END
                    WHERE name = ?""",
                    (now, now, next_text, name),
                )
            else:
                self.db.execute(
                    """UPDATE sources SET last_poll = ?, next_poll = ?,
                        consecutive_failures = consecutive_failures + 1,
                        failing_since = coalesce(failing_since, ?),
                        state = CASE WHEN state = 'disabled' THEN state ELSE 'failing' END
                    WHERE name = ?""",
                    (now, next_text, now, name),
                )
            if error is not None:
                self.db.execute(
                    "UPDATE sources SET last_error = ?, last_error_at = ? WHERE name = ?",
                    (_one_line(error), now, name),
                )
        self._log_transition(name, before["state"], ok)

    @staticmethod
    def _log_transition(name: str, state_before: str, ok: bool) -> None:
        if state_before == "ok" and not ok:
            logger.warning("source %s is failing", name)
        elif state_before == "failing" and ok:
            logger.info("source %s recovered", name)

    def _require_source(self, name: str) -> dict[str, Any]:
        """The sources row of `name`; KeyError with a hint if it was never declared."""
        row = self.db.execute("SELECT name, state FROM sources WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(f"unknown source {name!r}: call upsert_source() first")
        return {"name": row[0], "state": row[1]}

    def sources_health(self) -> list[dict[str, Any]]:
        """One dict per source, by name: name, kind, state, last_poll, last_success, items,
        findings (distinct findings linked to its items), consecutive_failures,
        failing_since, last_error, last_error_at, next_poll. Times are stored strings."""
        return list(self.db.query("SELECT * FROM source_health ORDER BY name"))

    # -- validators --------------------------------------------------------------------

    def get_validators(self, source: str, url: str) -> Validators | None:
        """The ETag / Last-Modified last seen for `url` of `source`, or None."""
        row = self.db.execute(
            "SELECT etag, last_modified FROM validators WHERE source = ? AND url = ?", (source, url)
        ).fetchone()
        return None if row is None else Validators(etag=row[0], last_modified=row[1])

    def set_validators(self, source: str, url: str, etag: str | None, last_modified: str | None) -> None:
        """Remember the validators of `url`; both None forgets them. A URL holding an
        identifier is not stored (see the module docstring)."""
        with self._transaction():
            if etag is None and last_modified is None or redact(url) != url:
                self.db.execute("DELETE FROM validators WHERE source = ? AND url = ?", (source, url))
                return
            self._require_source(source)
            self.db.execute(
                """INSERT INTO validators (source, url, etag, last_modified, updated_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (source, url) DO UPDATE SET etag = excluded.etag,
                    last_modified = excluded.last_modified, updated_at = excluded.updated_at""",
                (source, url, etag, last_modified, self._now()),
            )

    def source_validators(self, source: str) -> dict[str, tuple[str | None, str | None]]:
        """All validators of `source` as {url: (etag, last_modified)}: `PollContext.validators`."""
        rows = self.db.execute(
            "SELECT url, etag, last_modified FROM validators WHERE source = ?", (source,)
        ).fetchall()
        return {url: (etag, last_modified) for url, etag, last_modified in rows}

    def save_validators(self, source: str, validators: Mapping[str, tuple[str | None, str | None]]) -> None:
        """Replace all validators of `source` by `validators` (the dict a poll left), atomically.

        URLs absent from `validators` are forgotten: a source drops a URL's validators when
        the next poll must fetch that page again.
        """
        now = self._now()
        rows = [(source, url, etag, modified, now) for url, (etag, modified) in validators.items()
                if (etag is not None or modified is not None) and redact(url) == url]
        with self._transaction():
            self._require_source(source)
            self.db.execute("DELETE FROM validators WHERE source = ?", (source,))
            self.db.conn.executemany(
                "INSERT INTO validators (source, url, etag, last_modified, updated_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    # -- items -------------------------------------------------------------------------

    def is_seen(self, source: str, item_id: str, version: str) -> bool:
        """Whether this exact item version was recorded already (then skip fetching it)."""
        return is_seen_query(self.db.conn, source, item_id, version)

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
        now = self._now()
        with self._transaction():
            for source in dict.fromkeys(record.source for record in records):
                self._require_source(source)    # once per source of the batch, not per item
            return [self._record_one(record, now, alert) for record in records]

    def _record_one(self, record: ItemRecord, now: str, alert: AlertHook | None = None) -> ItemResult:
        source, item_id, version = record.source, redact(str(record.item_id)), redact(str(record.version))
        url = _redact(record.url)
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
                finding_id, new_finding, escalated = self._upsert_finding(report, now)
        elif same_version:  # re-recorded without a report: keep what the version had
            sha256, size, finding_id = existing[1], existing[2], existing[3]
        title = _redact(record.title)
        posted_at, author = _post_date(record.posted_at, now), _redact(record.author)
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
            alert_row = alert(self, event)
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
        now = self._now()
        outcomes: list[tuple[int, bool]] = []
        with self._transaction():
            for failure in failures:
                self._require_source(failure.source)
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
                    (failure.source, item_id, version, _redact(failure.url),
                     _redact(failure.title), _one_line(failure.error), tries, int(parked), now, now),
                )
                outcomes.append((tries, parked))
        return outcomes

    def failed_items(self, source: str | None = None) -> list[dict[str, Any]]:
        """Failed items (retried and parked), the latest first."""
        where, params = ("WHERE source = ?", (source,)) if source else ("", ())
        return list(self.db.query(
            f"""SELECT source, item_id, version, url, title, error, tries, parked = 1 AS parked,
                first_failed, last_failed FROM failed_items {where}
            ORDER BY last_failed DESC, source, item_id""", params))

    def source_links(self, source: str) -> int | None:
        """The item links the source's main page had when last fetched (None: unknown)."""
        row = self.db.execute("SELECT links FROM sources WHERE name = ?", (source,)).fetchone()
        return None if row is None else row[0]

    # -- findings ----------------------------------------------------------------------

    @staticmethod
    def _analysis(report: Report) -> dict[str, Any]:
        """The report's analysis as column values (texts redacted once more)."""
        return {
            "severity": report.severity,
            "reasons": _json([redact(reason) for reason in report.reasons]),
            "counts": _json(report.counts),
            "insurers": _json(report.insurers),
            "records": report.records,
            "samples": _json([_redact(sample) for sample in report.samples]),
            "rules": _json(report.rules),
            "errors": _json([_one_line(error) for error in report.errors]),
        }

    def _upsert_finding(self, report: Report, now: str) -> tuple[int, bool, bool]:
        """(finding id, new?, escalated?) for the report's content."""
        row = self.db.execute(
            "SELECT id, severity FROM findings WHERE sha256 = ?", (report.sha256,)
        ).fetchone()
        analysis = self._analysis(report)
        if row is None:
            values = {"sha256": report.sha256, "size": report.size, **analysis,
                      "first_seen": now, "last_seen": now}
            columns = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            cursor = self.db.execute(f"INSERT INTO findings ({columns}) VALUES ({marks})", values)
            finding_id = int(cursor.lastrowid)  # type: ignore[arg-type]
            self._insert_fingerprints(finding_id, report.fingerprints)
            logger.debug("finding %d new, severity %s", finding_id, report.severity)
            return finding_id, True, False
        finding_id, old_severity = int(row[0]), row[1]
        if severity_rank(report.severity) <= severity_rank(old_severity):
            self.db.execute("UPDATE findings SET last_seen = ? WHERE id = ?", (now, finding_id))
            return finding_id, False, False
        assignments = ", ".join(f"{name} = :{name}" for name in analysis)
        self.db.execute(
            f"UPDATE findings SET {assignments}, last_seen = :now WHERE id = :id",
            {**analysis, "now": now, "id": finding_id},
        )
        self._insert_fingerprints(finding_id, report.fingerprints)
        logger.info("finding %d escalated %s -> %s", finding_id, old_severity, report.severity)
        return finding_id, False, True

    def _insert_fingerprints(self, finding_id: int, fingerprints: dict[str, list[str]]) -> None:
        """Insert a finding's fingerprints in one batched statement, refusing non-digests.

        `executemany` rather than sqlite-utils' `insert_all(ignore=True)`: the latter looks up
        a `rowid` after a one-row conflict, which WITHOUT ROWID tables lack (OperationalError,
        sqlite-utils 4.2), and executemany measured 1.8x faster for 50-row batches.
        """
        rows = []
        for kind, digests in fingerprints.items():
            for digest in digests:
                if not _HEX_DIGEST.fullmatch(digest):
                    raise ValueError(
                        f"fingerprint of kind {kind!r} is not a lowercase hex HMAC "
                        f"({len(digest)} chars): refusing to store what may be a cleartext value"
                    )
                rows.append((digest, kind, finding_id))
        self.db.conn.executemany(
            "INSERT OR IGNORE INTO fingerprints (hmac, kind, finding_id) VALUES (?, ?, ?)", rows
        )

    def findings(
        self, since: datetime | None = None, min_severity: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Findings first seen at or after `since` (inclusive), at least `min_severity`.

        One dict per finding, oldest first: id, sha256, size, severity, reasons, counts,
        insurers, records, samples, rules, errors (decoded JSON), first_seen, last_seen; the
        item it was first seen in as source, item_id, url, title; and `items`, every item
        version it was seen in (source, item_id, version, url, title, linked_at), oldest first.
        """
        clauses, params = self._finding_filters(since, min_severity)
        sql = "SELECT * FROM findings"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY first_seen, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = [self._decode_finding(row) for row in self.db.query(sql, params)]
        links = self._links([row["id"] for row in rows])
        for row in rows:
            row["items"] = links.get(row["id"], [])
            first = row["items"][0] if row["items"] else {}
            for key in ("source", "item_id", "url", "title", "posted_at", "author"):
                row[key] = first.get(key)
        return rows

    @staticmethod
    def _finding_filters(since: datetime | None, min_severity: str | None) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("first_seen >= ?")
            params.append(format_time(since))
        if min_severity is not None:
            allowed = SEVERITIES[max(severity_rank(min_severity), 1):]
            clauses.append(f"severity IN ({', '.join('?' * len(allowed))})")
            params.extend(allowed)
        return clauses, params

    @staticmethod
    def _decode_finding(row: dict[str, Any]) -> dict[str, Any]:
        for key in ("reasons", "counts", "insurers", "samples", "rules", "errors"):
            row[key] = json.loads(row[key])
        return row

    def _links(self, finding_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """finding id -> its item links, oldest first."""
        links: dict[int, list[dict[str, Any]]] = {}
        if not finding_ids:
            return links
        rows = self.db.query(
            """SELECT finding_id, source, item_id, version, url, title, linked_at, posted_at, author
            FROM item_findings WHERE finding_id IN (SELECT value FROM json_each(?))
            ORDER BY finding_id, linked_at, rowid""",
            [_json(finding_ids)],
        )
        for row in rows:
            links.setdefault(row.pop("finding_id"), []).append(row)
        return links

    # -- fingerprints ------------------------------------------------------------------

    def overlap(self, kind: str, hmacs: Sequence[str]) -> dict[int, int]:
        """finding id -> how many of `hmacs` (of `kind`) it shares, most shared first.

        One index search per distinct digest (the key starts with hmac); the digests travel as
        one JSON parameter, so there is no limit on their number.
        """
        if not hmacs:
            return {}
        rows = self.db.execute(
            """SELECT finding_id, count(*) AS shared FROM fingerprints
            WHERE kind = ? AND hmac IN (SELECT value FROM json_each(?))
            GROUP BY finding_id ORDER BY shared DESC, finding_id""",
            (kind, _json(list(hmacs))),
        ).fetchall()
        return {int(finding_id): int(shared) for finding_id, shared in rows}

    def fingerprint_counts(self, kind: str, finding_ids: Sequence[int]) -> dict[int, int]:
        """finding id -> number of its `kind` fingerprints (for overlap ratios)."""
        if not finding_ids:
            return {}
        rows = self.db.execute(
            """SELECT finding_id, count(*) FROM fingerprints
            WHERE finding_id IN (SELECT value FROM json_each(?)) AND kind = ?
            GROUP BY finding_id""",
            (_json(list(finding_ids)), kind),
        ).fetchall()
        return {int(finding_id): int(total) for finding_id, total in rows}


# --------------------------------------------------------------------------- async facade

P = ParamSpec("P")
R = TypeVar("R")


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


class Store:
    """Asyncio facade over `StateDB`: every call runs on one dedicated worker thread.

    The worker thread opens the connection and is the only one to use it, so calls from
    any number of tasks are serialized in submission order. A call whose awaiting task is
    cancelled still completes (its transaction is not left half-done).
    """

    def __init__(self, executor: ThreadPoolExecutor, state: StateDB, reader: sqlite3.Connection) -> None:
        """Use `await Store.open(path)`."""
        self._executor = executor
        self._state = state
        self._reader = reader
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, clock: Callable[[], datetime] = _utc_now) -> Store:
        """Open (create, migrate) the state database at `path` on a new worker thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-store")
        loop = asyncio.get_running_loop()
        try:
            state = await loop.run_in_executor(executor, functools.partial(StateDB, path, clock=clock))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        # A read-only connection of the event loop's own thread, for `is_seen`: a point query
        # on the primary key (tens of microseconds) costs less than a trip to the writer
        # thread, and WAL lets it read while the writer writes.
        reader = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        return cls(executor, state, reader)

    async def close(self) -> None:
        """Finish queued calls, close the connection, stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._state.close)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, method: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._closed:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, *args, **kwargs))

    async def schema_version(self) -> int:
        return await self._run(self._state.schema_version)

    async def upsert_source(self, name: str, kind: str) -> None:
        await self._run(self._state.upsert_source, name, kind)

    async def disable_source(self, name: str) -> None:
        await self._run(self._state.disable_source, name)

    async def record_poll(self, name: str, ok: bool, error: str | None, next_poll: datetime,
                          health: PollHealth | None = None) -> None:
        await self._run(self._state.record_poll, name, ok, error, next_poll, health)

    async def sources_health(self) -> list[dict[str, Any]]:
        return await self._run(self._state.sources_health)

    async def get_validators(self, source: str, url: str) -> Validators | None:
        return await self._run(self._state.get_validators, source, url)

    async def set_validators(self, source: str, url: str, etag: str | None, last_modified: str | None) -> None:
        await self._run(self._state.set_validators, source, url, etag, last_modified)

    async def source_validators(self, source: str) -> dict[str, tuple[str | None, str | None]]:
        return await self._run(self._state.source_validators, source)

    async def save_validators(self, source: str, validators: Mapping[str, tuple[str | None, str | None]]) -> None:
        await self._run(self._state.save_validators, source, dict(validators))

    async def is_seen(self, source: str, item_id: str, version: str) -> bool:
        """Read on the loop's own read-only connection (see `open`): no thread hop."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        return is_seen_query(self._reader, source, item_id, version)

    async def record_item(
        self,
        source: str,
        item_id: str,
        version: str,
        url: str | None,
        title: str | None,
        report: Report | None,
        alert: AlertHook | None = None,
    ) -> ItemResult:
        return await self._run(self._state.record_item, source, item_id, version, url, title, report, alert)

    async def record_items(self, records: Sequence[ItemRecord], alert: AlertHook | None = None) -> list[ItemResult]:
        return await self._run(self._state.record_items, list(records), alert)

    async def call(self, function: Callable[Concatenate[StateDB, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`function(state, *args, **kwargs)` on the store thread, with the store's StateDB.

        For modules that keep their own tables in this database (watcher.alerts): they go
        through the daemon's one connection, serialized with every other call.
        """
        return await self._run(function, self._state, *args, **kwargs)

    async def findings(
        self, since: datetime | None = None, min_severity: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(self._state.findings, since, min_severity, limit)

    async def overlap(self, kind: str, hmacs: Sequence[str]) -> dict[int, int]:
        return await self._run(self._state.overlap, kind, list(hmacs))

    async def fingerprint_counts(self, kind: str, finding_ids: Sequence[int]) -> dict[int, int]:
        return await self._run(self._state.fingerprint_counts, kind, list(finding_ids))
