"""The state database's schema: its tables and views, built by ordered migrations.

Schema (version 12). Times are ISO 8601 UTC strings, `2026-11-28T16:40:00Z`, so they sort and
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
                   state open|acked|closed|false-positive (triage), closed_severity (its
                   severity when closed: it alerts again only above it).
    triage         (id PK, incident_id -> incidents, action, who, note (masked), severity, at)
                   The log of triage actions on an incident, oldest first.
    suppressions   (kind sha256|incident, value) PK, who, note (masked), at
                   A document's content hash or an incident that never alerts again.
    incident_findings (finding_id PK -> findings, incident_id -> incidents, overlap, joined_at)
    evidence       (id PK, piece_id UNIQUE, status sealed|reused|refused, file_name, sha256,
                    size, kept_sha256, kept_bytes, truncated, sealed_size, file_sha256,
                    source, url (masked), title (masked), tor, fetched_at, sealed_at,
                    finding_id, incident_id, recipients JSON, note, expired_at)
                   Custody records of the sealed vault (watcher.evidence, queries in
                   watcher.store.evidence); no foreign key: a record outlives its finding.
    alerts         (id PK, alert_id UNIQUE, kind new|update|health, severity info..critical,
                    incident_id, finding_id, source, title, tags JSON, payload JSON,
                    state pending|sent|logged|failed, tries, next_try, last_error,
                    delivered_to JSON, created_at, emitted_at, sent_at, acked_at)
                   The outbox: written in the transaction of the finding that raised it.
    health_notices (source PK -> sources, failing_since, alert -> alerts, notified_at)
                   A source whose failure streak has been announced (one notice per streak).
    web_users      (name PK, password (scrypt$n$r$p$salt$hash), created_at, changed_at)
                   The analysts of the web console (`watcher web adduser`).
    web_sessions   (id_hash PK (sha256 of the cookie's random id: the cookie itself is never
                    stored), user -> web_users, csrf, address, created_at, seen_at, expires_at)
                   Signed-in browsers of the web console (watcher.web.auth).
    watchlists     (id PK AUTOINCREMENT: a new id at every import, name UNIQUE, members,
                    key_check, origin, created_at): the organisation's member lists
                    (watcher.watchlist); (max(id), count) changes whenever one does.
    watchlist_chunks (watchlist_id -> watchlists, seq) PK, members BLOB: a list's member
                    fingerprints, sorted unsigned 64-bit little-endian, up to 1M a chunk.
    incident_watchlist_members (incident_id -> incidents, watchlist, member) PK: the member
                    fingerprints an incident's documents matched (distinct counts per list);
                    findings.watchlist_hits and incidents.watchlist_hits (JSON name -> count).
    views          source_health (what `sources_health()` returns),
                   finding_links (findings joined to the items they were seen in),
                   incident_overview (incidents with their finding and alert counts).


The alert tables (incidents, incident_findings, alerts, health_notices) are created here with
the rest, because migrations are one ordered sequence; their queries live in `watcher.alerts`
(`records.py`, `incidents.py`, `health.py`).

How to add a migration (as `_m003_alerts` added the alerts/incidents tables):

1. Write `def _m008_something(db: sqlite3.Connection) -> None` that executes its DDL/DML with
   `db.execute(...)`. It runs inside one `BEGIN IMMEDIATE` transaction together with the
   `schema_version` row, so it is all-or-nothing; do not commit inside it, and do not use
   `db.executescript` (it would commit). A foreign-key check runs before the commit.
   `redact_text(text)`, `redact_json(text)` and `normalise_date(text, written_at)` are SQL
   functions there (`watcher.store.texts`).
2. Append `Migration(8, "something", _m008_something)` to `MIGRATIONS`. Versions must be
   1, 2, 3... without gaps; `SCHEMA_VERSION` follows automatically.
3. Never edit a released migration: databases in the field already ran it.
4. Test it by building the previous version by hand in a test, opening it, and checking.

Rebuilding a table (create/copy/drop/rename) with foreign keys ON cascades deletes from
referencing tables; prefer `ALTER TABLE ... ADD COLUMN`, or recreate the dependent views in the
same migration after a rebuild. `watcher.store.connection` applies the migrations when the
writer opens the database; opening one whose version is newer than `SCHEMA_VERSION` raises
`SchemaTooNewError` before anything is written.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from ..redact import redact
from .texts import normalise_stored_date, redact_json, redact_text

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "NotAStateDatabaseError", "SchemaTooNewError",
           "SchemaTooOldError", "migrate", "schema_version"]

logger = logging.getLogger("watcher.store")


class NotAStateDatabaseError(RuntimeError):
    """The file is an SQLite database, but not one created by this module."""


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer leak-watcher; this code cannot safely use it."""


class SchemaTooOldError(RuntimeError):
    """A read-only opener met a database the daemon has not migrated to this version yet."""


@dataclass(frozen=True)
class Migration:
    """One schema step: `apply(db)` brings a database at `version - 1` to `version`."""

    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]
    vacuum: bool = False        # rewrite the file afterwards (no freed page keeps old text)


def _execute_all(db: sqlite3.Connection, statements: Sequence[str]) -> None:
    """Run DDL one statement at a time (inside the caller's transaction, unlike executescript)."""
    for statement in statements:
        db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
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


def _m002_views(db: sqlite3.Connection) -> None:
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


def _m003_alerts(db: sqlite3.Connection) -> None:
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


def _m004_failures(db: sqlite3.Connection) -> None:
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


def _m005_redact(db: sqlite3.Connection) -> None:
    """Mask the identifiers older versions kept in clear (item ids, URLs, titles, errors, alert
    payloads; see `watcher.store`). An item id that changes gets a `#mN` suffix to stay
    distinct: the next poll sees the item under its keyed id, fetches it once more, and finds
    its finding by content (no second alert). The opener then vacuums the file, so no old page
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
            values = (new_id, redact(version), redact_text(url), redact_text(title))
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


def _m006_posts(db: sqlite3.Connection) -> None:
    """The post's own date and author, where the source gives them (a Telegram message, a
    feed entry, an API record's date field)."""
    _execute_all(db, [f"ALTER TABLE {table} ADD COLUMN {column} TEXT"
                      for table in ("items", "item_findings") for column in ("posted_at", "author")])


def _m007_post_dates(db: sqlite3.Connection) -> None:
    """Post dates as one sortable form (`watcher.dates`), and each incident's first post date.

    The text each source gave is replaced by its normalised date, or NULL where it cannot be
    read: relative forms (`il y a 3 heures`) are read against when the row was written, the
    source's text is not kept (see `texts.post_date`). `first_posted` is filled from the item
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


def _m008_triage(db: sqlite3.Connection) -> None:
    """Incident triage: each incident's state, the log of who changed it and why, suppressions.

    `incidents.state` is open (every existing incident), acked, closed or false-positive;
    `closed_severity` the severity it had when an analyst closed it (a closed incident alerts
    again only when it grows more severe than that, see `watcher.alerts.incidents`). `triage`
    is the append-only log of analysts' actions (ack, close, false-positive, reopen, suppress,
    unsuppress, and the daemon's own reopen), its note masked by `watcher.redact` before it is
    written. `suppressions` holds a content hash (`sha256`) or an incident id (`incident`)
    that never alerts again. The incident_overview view gains the state.
    """
    _execute_all(
        db,
        [
            """ALTER TABLE incidents ADD COLUMN state TEXT NOT NULL DEFAULT 'open'
                CHECK (state IN ('open', 'acked', 'closed', 'false-positive'))""",
            "ALTER TABLE incidents ADD COLUMN closed_severity TEXT",
            """CREATE TABLE triage (
                id INTEGER PRIMARY KEY,
                incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
                action TEXT NOT NULL,
                who TEXT NOT NULL,
                note TEXT,
                severity TEXT,
                at TEXT NOT NULL
            )""",
            "CREATE INDEX triage_incident ON triage (incident_id, id)",
            """CREATE TABLE suppressions (
                kind TEXT NOT NULL CHECK (kind IN ('sha256', 'incident')),
                value TEXT NOT NULL,
                who TEXT NOT NULL,
                note TEXT,
                at TEXT NOT NULL,
                PRIMARY KEY (kind, value)
            )""",
            "DROP VIEW incident_overview",
            """CREATE VIEW incident_overview AS
            SELECT i.id, i.severity, i.nirs, i.sources, i.first_seen, i.last_seen,
                (SELECT count(*) FROM incident_findings AS m WHERE m.incident_id = i.id) AS findings,
                (SELECT count(*) FROM alerts AS a WHERE a.incident_id = i.id) AS alerts,
                i.alerted_severity, i.alerted_nirs, i.alerted_at, i.first_posted, i.state
            FROM incidents AS i""",
        ],
    )


def _m009_evidence(db: sqlite3.Connection) -> None:
    """Custody records of the sealed evidence vault (`watcher.evidence`): one row per document
    sealed (or reused, or refused by a full vault). finding_id and incident_id are plain
    numbers, not foreign keys: what supports a CNIL notification outlives the finding's
    retention; `expired_at` is set when retention deletes the piece's file."""
    _execute_all(
        db,
        [
            """CREATE TABLE evidence (
                id INTEGER PRIMARY KEY,
                piece_id TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL CHECK (status IN ('sealed', 'reused', 'refused')),
                file_name TEXT,
                sha256 TEXT NOT NULL,
                size INTEGER NOT NULL,
                kept_sha256 TEXT NOT NULL,
                kept_bytes INTEGER NOT NULL,
                truncated INTEGER NOT NULL DEFAULT 0,
                sealed_size INTEGER,
                file_sha256 TEXT,
                source TEXT NOT NULL,
                url TEXT,
                title TEXT,
                tor INTEGER NOT NULL DEFAULT 0,
                fetched_at TEXT NOT NULL,
                sealed_at TEXT NOT NULL,
                finding_id INTEGER,
                incident_id INTEGER,
                recipients TEXT NOT NULL DEFAULT '[]',
                note TEXT NOT NULL DEFAULT '',
                expired_at TEXT
            )""",
            "CREATE INDEX evidence_sealed ON evidence (sealed_at)",
            "CREATE INDEX evidence_file ON evidence (file_name) WHERE file_name IS NOT NULL",
        ],
    )


def _m010_web_users(db: sqlite3.Connection) -> None:
    """The web console's analysts and their sessions (`watcher.web.auth`). A password is kept as
    a scrypt hash with its own salt; a session row is keyed by the sha256 of its cookie's random
    id, so a copy of the database signs no one in. Deleting a user ends their sessions."""
    _execute_all(
        db,
        [
            """CREATE TABLE web_users (
                name TEXT PRIMARY KEY,
                password TEXT NOT NULL,
                created_at TEXT NOT NULL,
                changed_at TEXT NOT NULL
            )""",
            """CREATE TABLE web_sessions (
                id_hash TEXT PRIMARY KEY,
                user TEXT NOT NULL REFERENCES web_users(name) ON DELETE CASCADE,
                csrf TEXT NOT NULL,
                address TEXT,
                created_at TEXT NOT NULL,
                seen_at TEXT NOT NULL,
                expires_at TEXT NOT NULL
            )""",
            "CREATE INDEX web_sessions_user ON web_sessions (user)",
            "CREATE INDEX web_sessions_expiry ON web_sessions (expires_at)",
        ],
    )


def _m011_watchlists(db: sqlite3.Connection) -> None:
    """Member watchlists (`watcher.watchlist`): keyed 64-bit fingerprints of an organisation's
    members in sorted chunks, never a NIR; the matches an incident's documents made."""
    _execute_all(
        db,
        [
            """CREATE TABLE watchlists (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                members INTEGER NOT NULL,
                key_check TEXT NOT NULL,
                origin TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE watchlist_chunks (
                watchlist_id INTEGER NOT NULL REFERENCES watchlists(id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                members BLOB NOT NULL,
                PRIMARY KEY (watchlist_id, seq)
            )""",
            """CREATE TABLE incident_watchlist_members (
                incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
                watchlist TEXT NOT NULL,
                member INTEGER NOT NULL,
                PRIMARY KEY (incident_id, watchlist, member)
            ) WITHOUT ROWID""",
            "ALTER TABLE findings ADD COLUMN watchlist_hits TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE incidents ADD COLUMN watchlist_hits TEXT NOT NULL DEFAULT '{}'",
        ],
    )


def _m012_console_indexes(db: sqlite3.Connection) -> None:
    """Indexes of the web console's read model (`watcher.web.views`), measured at 100,000
    findings and 1,000 sources (bench/bench_web.py): findings per source over 30 days
    (item links by date: 113 -> 15 ms), findings per source and incidents of a source (links
    by source and finding: 117 -> 6 ms), incidents of an insurer and the insurers offered
    (the distinct insurer lists: a scan of findings -> 4 ms), an incident's custody records."""
    _execute_all(
        db,
        [
            "CREATE INDEX item_findings_linked ON item_findings (linked_at, source, finding_id)",
            "CREATE INDEX item_findings_source ON item_findings (source, finding_id)",
            "CREATE INDEX findings_insurers ON findings (insurers) WHERE insurers != '[]'",
            "CREATE INDEX evidence_incident ON evidence (incident_id) WHERE incident_id IS NOT NULL",
        ],
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", _m001_initial),
    Migration(2, "source_health and finding_links views", _m002_views),
    Migration(3, "incidents, alerts and health notices", _m003_alerts),
    Migration(4, "failed items and degraded sources", _m004_failures),
    Migration(5, "identifiers masked in item ids, URLs, titles, errors and alerts", _m005_redact, vacuum=True),
    Migration(6, "posts' own date and author", _m006_posts),
    Migration(7, "post dates normalised, incidents' first post date", _m007_post_dates),
    Migration(8, "incident triage: state, triage log, suppressions", _m008_triage),
    Migration(9, "sealed evidence custody records", _m009_evidence),
    Migration(10, "web console users and sessions", _m010_web_users),
    Migration(11, "member watchlists", _m011_watchlists),
    Migration(12, "indexes of the web console's queries", _m012_console_indexes),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise AssertionError("MIGRATIONS must be numbered 1, 2, 3... in order")


# --------------------------------------------------------------------------- applying them


def table_names(db: sqlite3.Connection) -> list[str]:
    """The database's tables, by name."""
    return [name for name, in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def schema_version(db: sqlite3.Connection, path: Path) -> int:
    """The version of the open database (0 for a new, empty file)."""
    tables = table_names(db)
    if "schema_version" not in tables:
        if tables:
            raise NotAStateDatabaseError(
                f"{path} holds tables {sorted(tables)[:5]} but no schema_version "
                "table: not a leak-watcher state database, refusing to modify it"
            )
        return 0
    return int(db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def check_not_newer(db: sqlite3.Connection, path: Path) -> int:
    """The database's version; SchemaTooNewError, before anything is written, if newer code wrote it."""
    version = schema_version(db, path)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path} has schema version {version}, but this leak-watcher only knows "
            f"versions up to {SCHEMA_VERSION}: upgrade leak-watcher, or point it at another "
            "state file. The database was not modified."
        )
    return version


def migrate(db: sqlite3.Connection, path: Path, now: str,
            transaction: Callable[[], AbstractContextManager[None]]) -> None:
    """Apply each pending migration in its own `transaction()`, with its schema_version row;
    then vacuum and empty the WAL if one of them asked to."""
    current = schema_version(db, path)
    db.create_function("redact_text", 1, redact_text, deterministic=True)
    db.create_function("redact_json", 1, redact_json, deterministic=True)
    db.create_function("normalise_date", 2, normalise_stored_date, deterministic=True)
    for migration in MIGRATIONS[current:]:
        with transaction():  # re-checked under the write lock: another opener may have won
            if schema_version(db, path) >= migration.version:
                continue
            if migration.version == 1:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
            migration.apply(db)
            _check_foreign_keys(db, migration)
            db.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
        logger.info("%s: migrated to schema version %d (%s)", path, migration.version, migration.name)
    if any(migration.vacuum for migration in MIGRATIONS[current:]) and current:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _check_foreign_keys(db: sqlite3.Connection, migration: Migration) -> None:
    violations = db.execute("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise RuntimeError(
            f"migration {migration.version} ({migration.name}) left {len(violations)} "
            f"foreign-key violation(s), first: {violations[0]}; rolled back"
        )
