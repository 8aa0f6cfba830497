"""Retention: age out what the state database would otherwise keep forever, and vacuum it.

What goes, and when (`[retention]` in sources.toml, `config.RetentionSettings`); "old" is
compared with the row's last activity, never its creation:

| rows | removed when | why |
| --- | --- | --- |
| findings | `last_seen` older than `fingerprints_days` (cascades to their fingerprints and item links) | a leak not seen for that long is closed |
| finding samples | `last_seen` older than `findings_days`, when `fingerprints_days` is longer: the finding is *retired*, its masked samples blanked, its fingerprints kept | a resurfacing leak is still recognised, with nothing readable left |
| item_findings | `linked_at` older than `findings_days` | where a finding was seen is evidence: kept as long as findings are |
| items | `last_seen` older than `items_days` and no link left | the dedup memory of sources; an item still evidencing a finding stays |
| validators | `updated_at` older than `items_days` | ETags of sources that are no longer polled |

`sources` rows follow the configuration and `schema_version` has one row per migration; neither
grows. A forgotten item that is still published is fetched and analysed once more; its content,
if its finding is still kept, is recognised by sha256 and raises no new alert. Tables added by
later migrations (alerts) go with their findings if their foreign key says ON DELETE CASCADE;
with RESTRICT/NO ACTION the findings step fails (logged) and the other steps still run.

Every statement runs on the store's single writer thread: the daemon passes a `StoreRunner`
(`store_runner(store)`), an async callable that runs `fn(state_db)` there. Deletions go in
batches, one transaction and one runner call each, so polls interleave with a long first purge.
The VACUUM (every `vacuum_every`, remembered across restarts in `<db>.vacuumed`, skipped when
the file has no free pages) runs outside any transaction and is followed by
`PRAGMA wal_checkpoint(TRUNCATE)`, which shrinks the WAL file the VACUUM filled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from .config import RetentionSettings
from .logs import log_event
from .store import StateDB, Store, StoreClosedError, format_time, parse_time

__all__ = [
    "FIRST_DELAY",
    "PASS_EVERY",
    "RetentionResult",
    "StoreRunner",
    "VacuumResult",
    "purge",
    "retention_task",
    "run_retention",
    "store_runner",
    "vacuum",
    "vacuum_due",
]

log = logging.getLogger(__name__)

R = TypeVar("R")
#: Runs `fn(state)` on the store's writer thread and returns its result.
StoreRunner = Callable[[Callable[[StateDB], R]], Awaitable[R]]
#: Settings, or a getter read at every pass (so a SIGHUP reload applies without a restart).
SettingsSource = RetentionSettings | Callable[[], RetentionSettings]

FIRST_DELAY = 60.0        # seconds after start: let the first polls go first
PASS_EVERY = 3600.0       # seconds between passes
ROW_BATCH = 1000          # rows per transaction (items, links, validators)
FINDING_BATCH = 50        # findings per transaction: each may cascade to thousands of fingerprints
STAMP_SUFFIX = ".vacuumed"
FILE_MODE = 0o600


def store_runner(store: Store) -> StoreRunner:
    """A `StoreRunner` over the daemon's `Store`: calls join its single-thread executor queue.

    `Store` has no public "run this on your thread" method, so this reaches `_run` and
    `_state`; it is the only place that does (swap for a public `Store.call(fn)` when one
    exists). `Store._run` raises `StoreClosedError` once the store is closed.
    """

    async def run(fn: Callable[[StateDB], R]) -> R:
        return await store._run(fn, store._state)  # noqa: SLF001

    return run


# --------------------------------------------------------------------------- deletion steps


@dataclass(frozen=True)
class _Step:
    """One kind of deletion: a statement with `:cutoff` and `:limit`, and which cutoff it uses."""

    name: str
    cutoff: str            # "items", "findings" or "fingerprints"
    batch: int
    sql: str


_STEPS: tuple[_Step, ...] = (
    _Step("findings_deleted", "fingerprints", FINDING_BATCH,
          """DELETE FROM findings WHERE id IN (
              SELECT id FROM findings WHERE last_seen < :cutoff ORDER BY id LIMIT :limit)"""),
    _Step("findings_retired", "findings", FINDING_BATCH,
          """UPDATE findings SET samples = '[]' WHERE id IN (
              SELECT id FROM findings WHERE last_seen < :cutoff AND samples != '[]'
              ORDER BY id LIMIT :limit)"""),
    _Step("links", "findings", ROW_BATCH,
          """DELETE FROM item_findings WHERE rowid IN (
              SELECT rowid FROM item_findings WHERE linked_at < :cutoff LIMIT :limit)"""),
    _Step("items", "items", ROW_BATCH,
          """DELETE FROM items WHERE rowid IN (
              SELECT i.rowid FROM items AS i WHERE i.last_seen < :cutoff AND NOT EXISTS (
                  SELECT 1 FROM item_findings AS l WHERE l.source = i.source AND l.item_id = i.item_id)
              LIMIT :limit)"""),
    _Step("validators", "items", ROW_BATCH,
          """DELETE FROM validators WHERE rowid IN (
              SELECT rowid FROM validators WHERE updated_at < :cutoff LIMIT :limit)"""),
)


def _cutoffs(settings: RetentionSettings, now: datetime) -> dict[str, str]:
    """Stored-time strings before which rows are old, per kind of cutoff."""
    return {
        "items": format_time(now - timedelta(days=settings.items_days)),
        "findings": format_time(now - timedelta(days=settings.findings_days)),
        "fingerprints": format_time(now - timedelta(days=settings.fingerprints_days)),
    }


@contextmanager
def _transaction(state: StateDB) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT on the store's connection, rolled back on any error."""
    conn = state.db.conn
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


def _run_batch(state: StateDB, step: _Step, cutoff: str, limit: int) -> int:
    """One batch of `step` in one transaction: the number of rows it changed."""
    with _transaction(state):
        cursor = state.db.conn.execute(step.sql, {"cutoff": cutoff, "limit": limit})
        return max(cursor.rowcount, 0)


@dataclass
class RetentionResult:
    """What one pass did: rows changed per step, steps that failed, and the vacuum if any."""

    findings_deleted: int = 0
    findings_retired: int = 0
    links: int = 0
    items: int = 0
    validators: int = 0
    failed: list[str] = field(default_factory=list)
    vacuum: VacuumResult | None = None

    @property
    def changed(self) -> int:
        """Rows deleted or retired in all."""
        return self.findings_deleted + self.findings_retired + self.links + self.items + self.validators


def purge(state: StateDB, settings: RetentionSettings, now: datetime) -> RetentionResult:
    """Every deletion step to completion, synchronously, on the calling (store) thread.

    For tests and maintenance tools; the daemon uses `run_retention`, which yields between
    batches. A failing step is recorded in `failed` and the next steps still run.
    """
    result = RetentionResult()
    cutoffs = _cutoffs(settings, now)
    for step in _STEPS:
        try:
            while True:
                changed = _run_batch(state, step, cutoffs[step.cutoff], step.batch)
                setattr(result, step.name, getattr(result, step.name) + changed)
                if changed < step.batch:
                    break
        except sqlite3.DatabaseError as exc:
            _step_failed(result, step, exc)
    return result


def _step_failed(result: RetentionResult, step: _Step, exc: sqlite3.DatabaseError) -> None:
    """Log a step that SQLite refused (e.g. a foreign key without ON DELETE) and note it."""
    result.failed.append(step.name)
    log_event(log, "error", "retention step failed, other steps still run", step=step.name,
              error=f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- vacuum


@dataclass(frozen=True)
class VacuumResult:
    """Database file size before and after, whether VACUUM ran, and the checkpoint outcome."""

    bytes_before: int
    bytes_after: int
    vacuumed: bool
    checkpoint_busy: bool


def _stamp_path(state: StateDB) -> Path:
    return state.path.with_name(state.path.name + STAMP_SUFFIX)


def _read_stamp(path: Path) -> datetime | None:
    """The time written in the stamp file, or None when missing or unreadable."""
    try:
        return parse_time(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _write_stamp(path: Path, now: datetime) -> None:
    """Write `now` to the stamp file (0600, like the database)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="ascii") as stamp:
        stamp.write(format_time(now) + "\n")


def vacuum_due(state: StateDB, settings: RetentionSettings, now: datetime) -> bool:
    """True when the last VACUUM is `vacuum_every` old; the first call only starts the clock.

    Remembered in a stamp file next to the database, so a daemon restarted daily still
    vacuums weekly. A stamp in the future (clock set back) counts as due.
    """
    stamp = _stamp_path(state)
    last = _read_stamp(stamp)
    if last is None:
        _write_stamp(stamp, now)
        return False
    elapsed = (now - last).total_seconds()
    return elapsed >= settings.vacuum_every or elapsed < 0


def _file_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


def vacuum(state: StateDB, now: datetime) -> VacuumResult:
    """VACUUM (if the file has free pages), then `wal_checkpoint(TRUNCATE)`; restamp.

    VACUUM cannot run inside a transaction: refuse rather than commit someone's half-done work.
    The checkpoint is "busy" when a reader (`watcher status`, a scrape) holds an old snapshot:
    the WAL is then truncated at a later pass.
    """
    conn = state.db.conn
    if conn.in_transaction:
        raise RuntimeError("vacuum: a transaction is open on the store's connection")
    before = _file_bytes(conn)
    free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if free_pages:
        conn.execute("VACUUM")
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    _write_stamp(_stamp_path(state), now)
    return VacuumResult(before, _file_bytes(conn), bool(free_pages), bool(busy))


# --------------------------------------------------------------------------- the task


async def run_retention(run: StoreRunner, settings: RetentionSettings, now: datetime) -> RetentionResult:
    """One pass through `run`: every step batch by batch (one runner call each), then the
    vacuum if it is due. Logs one line (INFO when something changed, else DEBUG)."""
    result = RetentionResult()
    cutoffs = _cutoffs(settings, now)
    for step in _STEPS:
        try:
            while True:
                changed = await run(lambda state, s=step: _run_batch(state, s, cutoffs[s.cutoff], s.batch))
                setattr(result, step.name, getattr(result, step.name) + changed)
                if changed < step.batch:
                    break
        except sqlite3.DatabaseError as exc:
            _step_failed(result, step, exc)
    if await run(lambda state: vacuum_due(state, settings, now)):
        result.vacuum = await run(lambda state: vacuum(state, now))
    _log_pass(result)
    return result


def _log_pass(result: RetentionResult) -> None:
    """One log line with the counts (and the vacuum's sizes when one ran)."""
    fields: dict[str, object] = {
        "findings_deleted": result.findings_deleted, "findings_retired": result.findings_retired,
        "links": result.links, "items": result.items, "validators": result.validators,
    }
    if result.vacuum is not None:
        fields.update(vacuumed=result.vacuum.vacuumed, bytes_before=result.vacuum.bytes_before,
                      bytes_after=result.vacuum.bytes_after, checkpoint_busy=result.vacuum.checkpoint_busy)
    level = "info" if result.changed or result.vacuum is not None else "debug"
    log_event(log, level, "retention pass done", **fields)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def retention_task(run: StoreRunner, settings: SettingsSource, *,
                         clock: Callable[[], datetime] = _utc_now,
                         first_delay: float = FIRST_DELAY, every: float = PASS_EVERY) -> None:
    """Run a retention pass `first_delay` seconds after start, then every `every` seconds.

    Until cancelled; returns when the store is closed. A failed pass is logged and retried at
    the next one: retention must never take the daemon down. `settings` may be a getter, read
    at each pass, so a reloaded configuration applies at once.
    """
    await asyncio.sleep(first_delay)
    while True:
        current = settings() if callable(settings) else settings
        try:
            await run_retention(run, current, clock())
        except StoreClosedError:
            return
        except Exception:  # noqa: BLE001 - logged with its traceback, retried next pass
            log.exception("retention pass failed; retrying at the next pass")
        await asyncio.sleep(every)
