"""The alert tables as values and queries: `Alert` rows, the outbox's reads and writes.

Every function takes the `StateDB` first, so the daemon runs it on its store thread with
`Store.call(function, ...)` and the CLI calls it directly on its own `StateDB` (read-only for
`watcher alerts` and `watcher incidents`, the writer for `alerts ack|retry`). Functions
that write open their own transaction, except `insert_alert`, which runs inside the caller's
(the recording transaction of the finding that raised the alert).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

from ..redact import redact
from ..store import StateDB, dict_rows

__all__ = [
    "Alert",
    "ALERT_KINDS",
    "ALERT_LEVELS",
    "ALERT_STATES",
    "ack_alert",
    "alert_by_ref",
    "due_alerts",
    "INCIDENT_STATES",
    "SUPPRESSION_KINDS",
    "TRIAGE_ACTIONS",
    "TriageError",
    "alert_incident_states",
    "finding_incidents",
    "document_alerts",
    "incident_documents",
    "incident_row",
    "incident_timeline",
    "incidents",
    "insert_alert",
    "log_triage",
    "list_alerts",
    "mark_emitted",
    "pending_alerts",
    "record_attempt",
    "requeue_failed",
    "suppress",
    "suppressed",
    "suppressions",
    "triage_incident",
    "triage_log",
    "unemitted_alerts",
    "unsuppress",
]

ALERT_KINDS = ("new", "update", "health")
#: An alert's severity: a finding severity, or `info` (health notices); lowest first.
ALERT_LEVELS = ("info", "low", "medium", "high", "critical")
ALERT_STATES = ("pending", "sent", "logged", "failed")
_COLUMNS = ("id", "alert_id", "kind", "severity", "incident_id", "finding_id", "source", "title",
            "tags", "payload", "state", "tries", "next_try", "last_error", "delivered_to",
            "created_at", "emitted_at", "sent_at", "acked_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM alerts"
#: An incident's triage state, and the state each analyst action puts it in.
INCIDENT_STATES = ("open", "acked", "closed", "false-positive")
TRIAGE_ACTIONS = {"ack": "acked", "close": "closed", "false-positive": "false-positive", "reopen": "open"}
SUPPRESSION_KINDS = ("sha256", "incident")
NOTE_CHARS = 2000           # a triage note longer than this is cut
_HEX = frozenset("0123456789abcdef")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Alert:
    """One alerts row. `alert_id` is random and stable: receivers deduplicate on it."""

    id: int
    alert_id: str
    kind: str
    severity: str
    incident_id: int | None
    finding_id: int | None
    source: str | None
    title: str
    tags: tuple[str, ...]
    payload: dict[str, Any]
    state: str
    tries: int
    next_try: str
    last_error: str | None
    delivered_to: frozenset[str]
    created_at: str
    emitted_at: str | None
    sent_at: str | None
    acked_at: str | None

    @property
    def rank(self) -> int:
        """The severity's position in ALERT_LEVELS (most severe highest)."""
        return ALERT_LEVELS.index(self.severity) if self.severity in ALERT_LEVELS else 0

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Alert:
        values = dict(zip(_COLUMNS, row, strict=False))
        values["tags"] = tuple(json.loads(values["tags"]))
        values["payload"] = json.loads(values["payload"])
        values["delivered_to"] = frozenset(json.loads(values["delivered_to"]))
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The row for `watcher alerts --format json` (delivered_to as a sorted list)."""
        data = {name: getattr(self, name) for name in _COLUMNS}
        data["tags"] = list(self.tags)
        data["delivered_to"] = sorted(self.delivered_to)
        return data


# --------------------------------------------------------------------------- writes


def insert_alert(
    state: StateDB,
    *,
    kind: str,
    severity: str,
    title: str,
    tags: list[str],
    payload: dict[str, Any],
    now: str,
    incident_id: int | None = None,
    finding_id: int | None = None,
    source: str | None = None,
) -> int:
    """Write a pending alert (due now) inside the caller's transaction; returns its row id."""
    cursor = state.db.execute(
        """INSERT INTO alerts (alert_id, kind, severity, incident_id, finding_id, source, title,
            tags, payload, state, tries, next_try, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)""",
        (uuid.uuid4().hex, kind, severity, incident_id, finding_id, source, title, _json(tags),
         _json(payload), now, now),
    )
    return int(cursor.lastrowid)  # type: ignore[arg-type]


def mark_emitted(state: StateDB, ids: list[int], now: str) -> None:
    """Record that these alerts were logged and appended to the JSONL sink."""
    with state.transaction():
        state.db.executemany(
            "UPDATE alerts SET emitted_at = ? WHERE id = ? AND emitted_at IS NULL",
            [(now, alert_id) for alert_id in ids],
        )


def record_attempt(
    state: StateDB,
    alert_id: int,
    *,
    delivered_to: frozenset[str],
    new_state: str,
    next_try: str,
    error: str | None,
    now: str,
) -> None:
    """Store the outcome of one delivery attempt of one alert (tries + 1)."""
    with state.transaction():
        state.db.execute(
            """UPDATE alerts SET tries = tries + 1, state = ?, next_try = ?, last_error = ?,
                delivered_to = ?, sent_at = CASE WHEN ? IN ('sent', 'logged') THEN ? ELSE sent_at END
            WHERE id = ?""",
            (new_state, next_try, error, _json(sorted(delivered_to)), new_state, now, alert_id),
        )


def requeue_failed(state: StateDB, now: str, alert_id: int | None = None) -> list[int]:
    """Put failed alerts (every one, or the row `alert_id`) back in the outbox; their row ids.

    Each becomes pending, due `now`, with a fresh budget of `max_tries` attempts. What an
    attempt needs to not repeat itself is kept: `delivered_to` (a target that accepted the
    alert is not sent it again) and `alert_id` (receivers deduplicate on it). `last_error`
    is kept too, as the reason of the last failure, until the next attempt replaces it; an
    acknowledgement stays, since it records a person's reading, not a delivery.

    Safe while the daemon runs: its sender reads only pending rows and writes only the rows
    it read, so a failed row is never in its hands; it finds the re-queued rows on its next
    round (it polls the outbox every second).
    """
    with state.transaction():
        rows = state.db.execute(
            """UPDATE alerts SET state = 'pending', tries = 0, next_try = ?
            WHERE state = 'failed' AND (? IS NULL OR id = ?) RETURNING id""",
            (now, alert_id, alert_id),
        ).fetchall()
    return sorted(row[0] for row in rows)


def ack_alert(state: StateDB, ref: str) -> Alert | None:
    """Mark an alert acknowledged by an analyst (kept: acknowledging twice keeps the first time)."""
    alert = alert_by_ref(state, ref)
    if alert is None:
        return None
    with state.transaction():
        state.db.execute("UPDATE alerts SET acked_at = coalesce(acked_at, ?) WHERE id = ?",
                         (state.now(), alert.id))
    return alert_by_ref(state, str(alert.id))


# --------------------------------------------------------------------------- reads


def unemitted_alerts(state: StateDB, limit: int = 500) -> list[Alert]:
    """Alerts not yet logged and written to the JSONL sink, oldest first."""
    rows = state.db.execute(f"{_SELECT} WHERE emitted_at IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [Alert.from_row(row) for row in rows]


def due_alerts(state: StateDB, now: str, limit: int = 500) -> list[Alert]:
    """Pending alerts whose next attempt is due, oldest first."""
    rows = state.db.execute(
        f"{_SELECT} WHERE state = 'pending' AND next_try <= ? ORDER BY id LIMIT ?", (now, limit)
    ).fetchall()
    return [Alert.from_row(row) for row in rows]


def pending_alerts(state: StateDB, limit: int = 500) -> list[Alert]:
    """Every pending alert, due or not, oldest first (digest bookkeeping)."""
    rows = state.db.execute(f"{_SELECT} WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [Alert.from_row(row) for row in rows]


def alert_by_ref(state: StateDB, ref: str) -> Alert | None:
    """The alert whose row id or alert_id (or a unique alert_id prefix of 6+ chars) is `ref`.
    Digits are a row id first, else a prefix: an Alert ID starts with 8 digits 1 time in 40."""
    ref = ref.strip()
    if ref.isdigit():
        row = state.db.execute(f"{_SELECT} WHERE id = ?", (int(ref),)).fetchone()
        if row is not None:
            return Alert.from_row(row)
    if len(ref) < 6:
        return None
    rows = state.db.execute(f"{_SELECT} WHERE alert_id LIKE ? || '%' LIMIT 2", (ref.lower(),)).fetchall()
    return Alert.from_row(rows[0]) if len(rows) == 1 else None


def list_alerts(state: StateDB, limit: int = 100, states: tuple[str, ...] = (),
                since: str | None = None) -> list[Alert]:
    """The `limit` most recent alerts (optionally in some states, created at or after `since`),
    oldest first."""
    clauses: list[str] = []
    params: list[Any] = []
    if states:
        clauses.append(f"state IN ({', '.join('?' * len(states))})")
        params.extend(states)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(since)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = state.db.execute(f"{_SELECT} {where} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [Alert.from_row(row) for row in reversed(rows)]


def incidents(state: StateDB, limit: int = 100, since: str | None = None) -> list[dict[str, Any]]:
    """The `limit` most recently seen incidents (seen at or after `since`), oldest first, from
    the incident_overview view."""
    rows = dict_rows(state.db, "SELECT * FROM incident_overview WHERE (? IS NULL OR last_seen >= ?) "
                     "ORDER BY last_seen DESC, id DESC LIMIT ?", [since, since, limit])
    for row in rows:
        row["sources"] = json.loads(row["sources"])
    return list(reversed(rows))


def incident_row(state: StateDB, incident_id: int) -> dict[str, Any] | None:
    """One incident from incident_overview (sources decoded), with its closed_severity and the
    number of its alerts that reached a target or the log (`sent`); None if unknown."""
    rows = dict_rows(
        state.db,
        """SELECT o.*, i.closed_severity,
            (SELECT count(*) FROM alerts AS a WHERE a.incident_id = o.id AND a.state IN ('sent', 'logged')) AS sent
        FROM incident_overview AS o JOIN incidents AS i ON i.id = o.id WHERE o.id = ?""",
        [incident_id],
    )
    if not rows:
        return None
    rows[0]["sources"] = json.loads(rows[0]["sources"])
    return rows[0]


#: An incident's documents: the first `?2` item links of its findings by first sighting (an
#: index search of the links, no finding read before the LIMIT), then their findings and sources.
_DOCUMENTS = """WITH links AS (
    SELECT l.rowid AS link, m.overlap FROM incident_findings AS m JOIN item_findings AS l ON l.finding_id = m.finding_id
    WHERE m.incident_id = ?1 ORDER BY l.linked_at, l.rowid LIMIT ?2)
SELECT l.finding_id, l.source, s.kind AS source_kind, l.item_id, l.version, l.url, l.title, l.posted_at, l.author,
    l.linked_at AS first_seen, f.severity, f.sha256, f.size, f.records, f.first_seen AS finding_seen, links.overlap,
    f.counts, f.insurers, f.reasons, f.samples
FROM links JOIN item_findings AS l ON l.rowid = links.link JOIN findings AS f ON f.id = l.finding_id
LEFT JOIN sources AS s ON s.name = l.source
ORDER BY l.linked_at, l.rowid"""
_DOCUMENT_JSON = ("counts", "insurers", "reasons", "samples")


def incident_documents(db: sqlite3.Connection, incident_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Every document of an incident in the order leak-watcher saw them (the first `limit`):
    one per item version a finding of the incident was seen in, with the link's source and its
    kind, item_id, version, masked url, title and author, post date and `first_seen`, and its
    finding's id, severity, sha256, size, records, first sighting (`finding_seen`), overlap,
    counts, insurers, reasons and masked samples (decoded).

    The one query of an incident's documents, on a plain connection: `incident_timeline`
    (`watcher incidents show`), `watcher.exports.incident_payload` and the console's incident
    page (`watcher.web.views`) read it.
    """
    rows = dict_rows(db, _DOCUMENTS, [incident_id, -1 if limit is None else max(limit, 0)])
    for row in rows:
        for key in _DOCUMENT_JSON:
            row[key] = json.loads(row[key])
    return rows


def document_alerts(db: sqlite3.Connection, incident_id: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(finding_id, source, item_id) -> the first alert that document raised (id, kind, state)."""
    raised: dict[tuple[Any, ...], dict[str, Any]] = {}
    for alert_id, kind, alert_state, finding_id, source, item_id in db.execute(
            """SELECT id, kind, state, finding_id, source, json_extract(payload, '$.item_id') FROM alerts
            WHERE incident_id = ? ORDER BY id""", (incident_id,)):
        raised.setdefault((finding_id, source, item_id), {"id": alert_id, "kind": kind, "state": alert_state})
    return raised


_TIMELINE_KEYS = ("finding_id", "source", "item_id", "version", "url", "title", "posted_at", "author",
                  "first_seen", "severity", "counts", "sha256", "records", "overlap")


def incident_timeline(state: StateDB, incident_id: int) -> list[dict[str, Any]]:
    """Every document of an incident, in the order leak-watcher saw them (`incident_documents`):
    source, item_id, masked url and title, post date, first seen, its finding's severity, counts
    and sha256, and the alert it raised, if any (`alert`: id, kind, state; matched on finding,
    source and item)."""
    raised = document_alerts(state.db, incident_id)
    rows = []
    for document in incident_documents(state.db, incident_id):
        row = {key: document[key] for key in _TIMELINE_KEYS}
        row["alert"] = raised.get((row["finding_id"], row["source"], row["item_id"]))
        rows.append(row)
    return rows


def finding_incidents(state: StateDB, finding_ids: list[int]) -> dict[int, tuple[int, str]]:
    """finding id -> (its incident's id, the incident's triage state)."""
    rows = state.db.execute(
        """SELECT m.finding_id, i.id, i.state FROM incident_findings AS m JOIN incidents AS i
        ON i.id = m.incident_id WHERE m.finding_id IN (SELECT value FROM json_each(?))""",
        (_json(finding_ids),),
    ).fetchall()
    return {int(finding): (int(incident), str(triaged)) for finding, incident, triaged in rows}


def alert_incident_states(state: StateDB, incident_ids: list[int]) -> dict[int, str]:
    """incident id -> its current triage state (`suppressed` added when it is suppressed)."""
    rows = state.db.execute(
        """SELECT i.id, i.state, s.value IS NOT NULL FROM incidents AS i
        LEFT JOIN suppressions AS s ON s.kind = 'incident' AND s.value = CAST(i.id AS TEXT)
        WHERE i.id IN (SELECT value FROM json_each(?))""",
        (_json(incident_ids),),
    ).fetchall()
    return {int(i): str(st) + (", suppressed" if sup else "") for i, st, sup in rows}


# --------------------------------------------------------------------------- triage


class TriageError(ValueError):
    """A triage command that cannot apply (unknown incident, bad hash): its message says why."""


def clean_note(text: str | None, limit: int = NOTE_CHARS) -> str | None:
    """An analyst's note or name as stored: one line, at most `limit` characters, masked by
    `watcher.redact` (a NIR pasted into a note is never stored in clear)."""
    if text is None:
        return None
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return redact(flat[:limit]) or None


def log_triage(state: StateDB, incident_id: int, action: str, who: str, note: str | None,
               severity: str | None, now: str) -> None:
    """Append one entry to an incident's triage log, inside the caller's transaction."""
    state.db.execute(
        "INSERT INTO triage (incident_id, action, who, note, severity, at) VALUES (?, ?, ?, ?, ?, ?)",
        (incident_id, action, clean_note(who, 120) or "?", clean_note(note), severity, now),
    )


def triage_incident(state: StateDB, incident_id: int, action: str, who: str, note: str | None) -> dict[str, Any]:
    """Apply an analyst's action (a key of TRIAGE_ACTIONS) to an incident, logged with who,
    when and the (masked) note; returns the new log entry. Closing or marking false-positive
    records the severity it had then (`closed_severity`): see `watcher.alerts.incidents`."""
    new_state = TRIAGE_ACTIONS[action]
    now = state.now()
    with state.transaction():
        row = state.db.execute("SELECT severity FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise TriageError(f"no incident {incident_id} (see `watcher incidents`)")
        closed = row[0] if new_state in ("closed", "false-positive") else None
        state.db.execute("UPDATE incidents SET state = ?, closed_severity = ? WHERE id = ?",
                         (new_state, closed, incident_id))
        log_triage(state, incident_id, action, who, note, row[0], now)
    return triage_log(state, incident_id)[-1]


def triage_log(state: StateDB, incident_id: int) -> list[dict[str, Any]]:
    """An incident's triage log, oldest first."""
    return dict_rows(state.db, "SELECT action, who, note, severity, at FROM triage WHERE incident_id = ? "
                     "ORDER BY id", [incident_id])


def _suppression_value(kind: str, value: str) -> str:
    if kind == "sha256":
        digest = value.strip().lower()
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise TriageError(f"{value!r} is not a sha256 (64 hexadecimal digits)")
        return digest
    if not value.strip().isdigit():
        raise TriageError(f"{value!r} is not an incident number")
    return str(int(value))


def suppress(state: StateDB, kind: str, value: str, who: str, note: str | None) -> dict[str, Any]:
    """Suppress a content hash or an incident (see SUPPRESSION_KINDS): it never alerts again.
    Logged in the triage log of the incident concerned (the one holding the hash, if any)."""
    value = _suppression_value(kind, value)
    now = state.now()
    with state.transaction():
        incident_id = _incident_of(state, kind, value)
        if kind == "incident" and incident_id is None:
            raise TriageError(f"no incident {value} (see `watcher incidents`)")
        state.db.execute(
            """INSERT INTO suppressions (kind, value, who, note, at) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (kind, value) DO UPDATE SET who = excluded.who, note = excluded.note, at = excluded.at""",
            (kind, value, clean_note(who, 120) or "?", clean_note(note), now),
        )
        if incident_id is not None:
            what = "incident" if kind == "incident" else f"document sha256 {value[:12]}"
            log_triage(state, incident_id, "suppress", who, f"{what} suppressed" + (f": {note}" if note else ""),
                       None, now)
    return {"kind": kind, "value": value, "incident_id": incident_id, "at": now}


def unsuppress(state: StateDB, kind: str, value: str, who: str) -> bool:
    """Remove a suppression; False if there was none. Logged like `suppress`."""
    value = _suppression_value(kind, value)
    now = state.now()
    with state.transaction():
        removed = state.db.execute("DELETE FROM suppressions WHERE kind = ? AND value = ?", (kind, value)).rowcount
        incident_id = _incident_of(state, kind, value)
        if removed and incident_id is not None:
            what = "incident" if kind == "incident" else f"document sha256 {value[:12]}"
            log_triage(state, incident_id, "unsuppress", who, f"{what} no longer suppressed", None, now)
    return bool(removed)


def _incident_of(state: StateDB, kind: str, value: str) -> int | None:
    if kind == "incident":
        row = state.db.execute("SELECT id FROM incidents WHERE id = ?", (int(value),)).fetchone()
    else:
        row = state.db.execute(
            """SELECT m.incident_id FROM findings AS f JOIN incident_findings AS m ON m.finding_id = f.id
            WHERE f.sha256 = ?""", (value,)).fetchone()
    return int(row[0]) if row else None


def suppressions(state: StateDB) -> list[dict[str, Any]]:
    """Every suppression, oldest first, with the incident it concerns (None: a hash not seen yet)."""
    rows = dict_rows(state.db, "SELECT kind, value, who, note, at FROM suppressions ORDER BY at, kind, value")
    for row in rows:
        row["incident_id"] = _incident_of(state, row["kind"], row["value"])
    return rows


def suppressed(state: StateDB, sha256: str | None, incident_id: int) -> str | None:
    """Why an alert for this document in this incident is suppressed, or None if it is not."""
    row = state.db.execute(
        """SELECT kind FROM suppressions WHERE (kind = 'sha256' AND value = ?)
        OR (kind = 'incident' AND value = ?) ORDER BY kind DESC LIMIT 1""",
        (sha256 or "", str(incident_id)),
    ).fetchone()
    if row is None:
        return None
    return f"document sha256 {(sha256 or '')[:12]} suppressed" if row[0] == "sha256" else "incident suppressed"
