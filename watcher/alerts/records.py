"""The alert tables as values and queries: `Alert` rows, the outbox's reads and writes.

Every function takes the `StateDB` first, so the daemon runs it on its store thread with
`Store.call(function, ...)` and the CLI calls it directly on its own `StateDB` (read-only for
`watcher alerts` and `watcher incidents`, the writer for `alerts ack|retry`). Functions
that write open their own transaction, except `insert_alert`, which runs inside the caller's
(the recording transaction of the finding that raised the alert).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from ..store import StateDB, dict_rows

__all__ = [
    "Alert",
    "ALERT_KINDS",
    "ALERT_LEVELS",
    "ALERT_STATES",
    "ack_alert",
    "alert_by_ref",
    "due_alerts",
    "incidents",
    "insert_alert",
    "list_alerts",
    "mark_emitted",
    "pending_alerts",
    "record_attempt",
    "requeue_failed",
    "unemitted_alerts",
]

ALERT_KINDS = ("new", "update", "health")
#: An alert's severity: a finding severity, or `info` (health notices); lowest first.
ALERT_LEVELS = ("info", "low", "medium", "high", "critical")
ALERT_STATES = ("pending", "sent", "logged", "failed")
_COLUMNS = ("id", "alert_id", "kind", "severity", "incident_id", "finding_id", "source", "title",
            "tags", "payload", "state", "tries", "next_try", "last_error", "delivered_to",
            "created_at", "emitted_at", "sent_at", "acked_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM alerts"


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


def list_alerts(state: StateDB, limit: int = 100, states: tuple[str, ...] = ()) -> list[Alert]:
    """The `limit` most recent alerts (optionally in some states), oldest first."""
    where = f"WHERE state IN ({', '.join('?' * len(states))})" if states else ""
    rows = state.db.execute(f"{_SELECT} {where} ORDER BY id DESC LIMIT ?", (*states, limit)).fetchall()
    return [Alert.from_row(row) for row in reversed(rows)]


def incidents(state: StateDB, limit: int = 100) -> list[dict[str, Any]]:
    """The `limit` most recently seen incidents, oldest first, from the incident_overview view."""
    rows = dict_rows(state.db, "SELECT * FROM incident_overview ORDER BY last_seen DESC, id DESC LIMIT ?", [limit])
    for row in rows:
        row["sources"] = json.loads(row["sources"])
    return list(reversed(rows))
