"""Source-health notices: one when a source has been failing too long, one when it recovers.

The daemon keeps each source's failure streak in `sources` (state, failing_since,
consecutive_failures, last_error). `check_sources` compares it with `health_notices`, the
streaks already announced, and writes `health` alerts for the differences, all in one
transaction. Calling it again changes nothing, so one notice per streak, never one per
failed poll, whatever the polling rate:

- failing since at least `after` seconds and not announced -> a `failing` notice;
- announced, and the streak it announced is over (the source succeeded since, even if it
  fails again now) -> a `recovered` notice (a new streak is announced on its own later);
- disabled sources are forgotten quietly.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ..store import StateDB
from ..timestamps import format_time, parse_time
from .message import health_title
from .records import insert_alert

__all__ = ["check_sources"]

log = logging.getLogger(__name__)


def check_sources(state: StateDB, now: datetime, after: float) -> list[int]:
    """Write the health alerts due at `now`; returns their row ids."""
    created: list[int] = []
    with state.transaction():
        sources = state.db.execute(
            "SELECT name, state, failing_since, consecutive_failures, last_error FROM sources ORDER BY name"
        ).fetchall()
        noticed = dict(state.db.execute("SELECT source, failing_since FROM health_notices").fetchall())
        for name, source_state, failing_since, failures, last_error in sources:
            announced = noticed.get(name)
            if source_state == "disabled":
                if announced is not None:
                    state.db.execute("DELETE FROM health_notices WHERE source = ?", (name,))
                continue
            if announced is not None and failing_since != announced:
                created.append(_notice(state, now, name, "recovered", announced, failures, None))
                state.db.execute("DELETE FROM health_notices WHERE source = ?", (name,))
                announced = None
            if failing_since and announced is None and (now - parse_time(failing_since)).total_seconds() >= after:
                alert = _notice(state, now, name, "failing", failing_since, failures, last_error)
                state.db.execute(
                    "INSERT INTO health_notices (source, failing_since, alert, notified_at) VALUES (?, ?, ?, ?)",
                    (name, failing_since, alert, format_time(now)),
                )
                created.append(alert)
    return created


def _notice(state: StateDB, now: datetime, source: str, kind: str, failing_since: str, failures: int,
            last_error: str | None) -> int:
    """Insert one health alert (inside the caller's transaction)."""
    payload: dict[str, Any] = {
        "source": source,
        "state": kind,
        "failing_since": failing_since,
        "seconds": max(0.0, (now - parse_time(failing_since)).total_seconds()),
        "failures": failures,
        "last_error": last_error,
    }
    log.info("source %s: %s notice", source, kind)
    return insert_alert(state, kind="health", severity="info", title=health_title(payload), tags=["health"],
                        payload=payload, now=format_time(now), source=source)
