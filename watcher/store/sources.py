"""Sources, their poll outcomes and their HTTP validators: the queries the daemon's poll loop
runs (on the store thread: `await store.call(StateDB.record_poll, ...)`) and `watcher sources`
reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..redact import redact
from ..timestamps import format_time
from .connection import Connection, dict_rows
from .texts import one_line

__all__ = ["PollHealth", "SOURCE_STATES", "SourceQueries", "Validators", "require_source"]

logger = logging.getLogger("watcher.store")

SOURCE_STATES = ("ok", "failing", "disabled")


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


def require_source(state: Connection, name: str) -> dict[str, Any]:
    """The sources row of `name`; KeyError with a hint if it was never declared."""
    row = state.db.execute("SELECT name, state FROM sources WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise KeyError(f"unknown source {name!r}: call upsert_source() first")
    return {"name": row[0], "state": row[1]}


class SourceQueries(Connection):
    """Sources and validators (a part of `StateDB`)."""

    def upsert_source(self, name: str, kind: str) -> None:
        """Declare a configured source. A source disabled earlier is enabled again.

        The configuration is the source of truth: the daemon upserts every configured source
        at start and on reload, and `disable_source()`s the ones that disappeared.
        """
        with self.transaction():
            self.db.execute(
                """INSERT INTO sources (name, kind, state, created_at) VALUES (?, ?, 'ok', ?)
                ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
                    state = CASE WHEN state != 'disabled' THEN state
                                 WHEN consecutive_failures > 0 THEN 'failing' ELSE 'ok' END""",
                (name, kind, self.now()),
            )

    def source_added(self, name: str) -> str | None:
        """When source `name` was first declared in this database (stored time), or None."""
        row = self.db.execute("SELECT created_at FROM sources WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def disable_source(self, name: str) -> None:
        """Mark a source disabled (kept with its history; `upsert_source` enables it again)."""
        with self.transaction():
            require_source(self, name)
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
        now = self.now()
        next_text = format_time(next_poll)
        health = health or PollHealth()
        with self.transaction():
            before = require_source(self, name)
            self.db.execute(
                """UPDATE sources SET warning = ?, links = coalesce(?, links), skipped = skipped + ?,
                    refused = refused + ?,
                    last_notice = coalesce(?, last_notice),
                    last_notice_at = CASE WHEN ? IS NULL THEN last_notice_at ELSE ? END
                WHERE name = ?""",
                (one_line(health.warning), health.links, health.skipped, health.refused,
                 one_line(health.notice), health.notice, now, name),
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
                    (one_line(error), now, name),
                )
        self._log_transition(name, before["state"], ok)

    @staticmethod
    def _log_transition(name: str, state_before: str, ok: bool) -> None:
        if state_before == "ok" and not ok:
            logger.warning("source %s is failing", name)
        elif state_before == "failing" and ok:
            logger.info("source %s recovered", name)

    def sources_health(self) -> list[dict[str, Any]]:
        """One dict per source, by name: name, kind, state, last_poll, last_success, items,
        findings (distinct findings linked to its items), consecutive_failures,
        failing_since, last_error, last_error_at, next_poll. Times are stored strings."""
        return dict_rows(self.db, "SELECT * FROM source_health ORDER BY name")

    def source_links(self, source: str) -> int | None:
        """The item links the source's main page had when last fetched (None: unknown)."""
        row = self.db.execute("SELECT links FROM sources WHERE name = ?", (source,)).fetchone()
        return None if row is None else row[0]

    # -- validators --------------------------------------------------------------------

    def get_validators(self, source: str, url: str) -> Validators | None:
        """The ETag / Last-Modified last seen for `url` of `source`, or None."""
        row = self.db.execute(
            "SELECT etag, last_modified FROM validators WHERE source = ? AND url = ?", (source, url)
        ).fetchone()
        return None if row is None else Validators(etag=row[0], last_modified=row[1])

    def set_validators(self, source: str, url: str, etag: str | None, last_modified: str | None) -> None:
        """Remember the validators of `url`; both None forgets them. A URL holding an
        identifier is not stored (see `watcher.store`)."""
        with self.transaction():
            if etag is None and last_modified is None or redact(url) != url:
                self.db.execute("DELETE FROM validators WHERE source = ? AND url = ?", (source, url))
                return
            require_source(self, source)
            self.db.execute(
                """INSERT INTO validators (source, url, etag, last_modified, updated_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (source, url) DO UPDATE SET etag = excluded.etag,
                    last_modified = excluded.last_modified, updated_at = excluded.updated_at""",
                (source, url, etag, last_modified, self.now()),
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
        now = self.now()
        rows = [(source, url, etag, modified, now) for url, (etag, modified) in validators.items()
                if (etag is not None or modified is not None) and redact(url) == url]
        with self.transaction():
            require_source(self, source)
            self.db.execute("DELETE FROM validators WHERE source = ?", (source,))
            self.db.executemany(
                "INSERT INTO validators (source, url, etag, last_modified, updated_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
