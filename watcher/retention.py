"""Retention: age out what the state database would otherwise keep forever, and vacuum it.

What goes, and when (`[retention]` in sources.toml, `config.RetentionSettings`). Age is
measured from a row's last activity, never from its creation:

- findings: deleted when `last_seen` is older than `fingerprints_days`, with their
  fingerprints and item links (ON DELETE CASCADE): a leak not seen for that long is closed;
- finding samples: when `fingerprints_days` is longer than `findings_days`, a finding whose
  `last_seen` is older than `findings_days` is *retired*: its masked samples are blanked, its
  fingerprints kept, so a resurfacing leak is still recognised with nothing readable left;
- item_findings: `linked_at` older than `findings_days` (where a finding was seen is
  evidence, kept as long as findings are);
- items: `last_seen` older than `items_days` and no link left (the sources' dedup memory;
  an item that still evidences a finding stays);
- validators: `updated_at` older than `items_days` (ETags of sources no longer polled);
- incidents: no finding left and `last_seen` older than `fingerprints_days`;
- alerts: `created_at` older than `findings_days`, unless still `pending` (outbox history);
- sealed evidence (`[evidence] evidence_days`, `watcher.evidence`): the vault's pieces sealed
  (or last reused) longer ago are deleted, in a thread, and their custody records marked
  `expired_at` (the records stay: what was kept and when it went is part of the custody).

`incident_findings` rows go with their findings (ON DELETE CASCADE); `sources` and
`health_notices` rows follow the configuration and `schema_version` has one row per migration:
none of them grows. The incidents and alerts steps run only when those tables exist (schema 3).
A forgotten item that is still published is fetched and analysed once more; its content, if
its finding is still kept, is recognised by sha256: the same finding, not a new one. A step that SQLite
refuses (say a future table referencing findings without ON DELETE) is logged and the other
steps still run.

Every statement runs on the store's single writer thread: the daemon passes a `StoreRunner`
(`store_runner(store)`, over `Store.call`), an async callable that runs `fn(state_db)` there.
Deletions go in batches, one transaction and one runner call each, so polls interleave with a
long first purge.
The VACUUM (every `vacuum_every`, remembered across restarts in `<db>.vacuumed`, skipped when
the file has no free pages) runs outside any transaction and is followed by
`PRAGMA wal_checkpoint(TRUNCATE)`, which shrinks the WAL file the VACUUM filled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from .config import RetentionSettings
from .evidence import EvidenceVault
from .logs import log_event
from .store import StateDB, Store, StoreClosedError, table_names
from .store.evidence import mark_expired
from .timestamps import format_time, parse_time

__all__ = [
    "EvidenceRetention",
    "FIRST_DELAY",
    "PASS_EVERY",
    "RetentionResult",
    "StoreRunner",
    "VacuumResult",
    "purge",
    "retention_pass",
    "retention_task",
    "run_retention",
    "store_runner",
    "vacuum",
    "vacuum_due",
]

log = logging.getLogger(__name__)

R = TypeVar("R")


class StoreRunner(Protocol):
    """Runs `fn(state)` on the store's writer thread; awaits its result."""

    def __call__(self, fn: Callable[[StateDB], R], /) -> Awaitable[R]: ...


#: Settings, or a getter read at every pass (so a SIGHUP reload applies without a restart).
SettingsSource = RetentionSettings | Callable[[], RetentionSettings]


@dataclass(frozen=True)
class EvidenceRetention:
    """The sealed vault's folder and how many days its pieces are kept."""

    folder: Path
    days: int


EvidenceSource = EvidenceRetention | Callable[[], EvidenceRetention] | None

FIRST_DELAY = 60.0        # seconds after start: let the first polls go first
PASS_EVERY = 3600.0       # seconds between passes
ROW_BATCH = 1000          # rows per transaction (items, links, validators)
FINDING_BATCH = 50        # findings per transaction: each may cascade to thousands of fingerprints
STAMP_SUFFIX = ".vacuumed"
FILE_MODE = 0o600


def store_runner(store: Store) -> StoreRunner:
    """A `StoreRunner` over the daemon's `Store`: calls join its single-thread executor queue
    (`Store.call`, which raises `StoreClosedError` once the store is closed)."""

    async def run(fn: Callable[[StateDB], R]) -> R:
        return await store.call(fn)

    return run


# --------------------------------------------------------------------------- deletion steps


@dataclass(frozen=True)
class _Step:
    """One kind of deletion: a statement with `:cutoff` and `:limit`, and which cutoff it uses.

    `table`: the step runs only when this table exists (tables of later migrations).
    """

    name: str
    cutoff: str            # "items", "findings" or "fingerprints"
    batch: int
    sql: str
    table: str | None = None


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
    _Step("incidents", "fingerprints", ROW_BATCH,
          """DELETE FROM incidents WHERE id IN (
              SELECT i.id FROM incidents AS i WHERE i.last_seen < :cutoff AND NOT EXISTS (
                  SELECT 1 FROM incident_findings AS m WHERE m.incident_id = i.id)
              LIMIT :limit)""", table="incidents"),
    _Step("alerts", "findings", ROW_BATCH,
          """DELETE FROM alerts WHERE id IN (
              SELECT id FROM alerts WHERE created_at < :cutoff AND state != 'pending' LIMIT :limit)""",
          table="alerts"),
)


def _cutoffs(settings: RetentionSettings, now: datetime) -> dict[str, str]:
    """Stored-time strings before which rows are old, per kind of cutoff."""
    return {
        "items": format_time(now - timedelta(days=settings.items_days)),
        "findings": format_time(now - timedelta(days=settings.findings_days)),
        "fingerprints": format_time(now - timedelta(days=settings.fingerprints_days)),
    }


def _steps(state: StateDB) -> list[_Step]:
    """The steps that apply to this database (those whose table exists)."""
    tables = set(table_names(state.db))
    return [step for step in _STEPS if step.table is None or step.table in tables]


def _run_batch(state: StateDB, step: _Step, cutoff: str, limit: int) -> int:
    """One batch of `step` in one transaction: the number of rows it changed."""
    with state.transaction():
        cursor = state.db.execute(step.sql, {"cutoff": cutoff, "limit": limit})
        return max(cursor.rowcount, 0)


@dataclass
class RetentionResult:
    """What one pass did: rows changed per step, steps that failed, and the vacuum if any."""

    findings_deleted: int = 0
    findings_retired: int = 0
    links: int = 0
    items: int = 0
    validators: int = 0
    incidents: int = 0
    alerts: int = 0
    evidence: int = 0           # sealed pieces deleted (not a row count: their records are marked)
    failed: list[str] = field(default_factory=list)
    vacuum: VacuumResult | None = None

    @property
    def changed(self) -> int:
        """Rows deleted or retired in all."""
        return sum(getattr(self, step.name) for step in _STEPS)


def purge(state: StateDB, settings: RetentionSettings, now: datetime) -> RetentionResult:
    """Every deletion step to completion, synchronously, on the calling (store) thread.

    For tests and maintenance tools; the daemon uses `run_retention`, which yields between
    batches. A failing step is recorded in `failed` and the next steps still run.
    """
    result = RetentionResult()
    cutoffs = _cutoffs(settings, now)
    for step in _steps(state):
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
    conn = state.db
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
    for step in await run(_steps):
        try:
            while True:
                changed = await run(functools.partial(_run_batch, step=step, cutoff=cutoffs[step.cutoff],
                                                      limit=step.batch))
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
    fields: dict[str, object] = {step.name: getattr(result, step.name) for step in _STEPS}
    fields["evidence"] = result.evidence
    if result.vacuum is not None:
        fields.update(vacuumed=result.vacuum.vacuumed, bytes_before=result.vacuum.bytes_before,
                      bytes_after=result.vacuum.bytes_after, checkpoint_busy=result.vacuum.checkpoint_busy)
    level = "info" if result.changed or result.evidence or result.vacuum is not None else "debug"
    log_event(log, level, "retention pass done", **fields)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def expire_evidence(run: StoreRunner, evidence: EvidenceRetention, now: datetime) -> list[str]:
    """Delete the vault's pieces older than `evidence.days` (in a thread) and mark their
    custody records expired; the names deleted. No vault folder (never sealed): nothing."""
    def expire() -> list[str]:
        if not evidence.folder.is_dir():
            return []
        return EvidenceVault(evidence.folder).expire(evidence.days, now.timestamp())

    gone = await asyncio.to_thread(expire)
    if gone:
        await run(functools.partial(mark_expired, file_names=gone, now=format_time(now)))
    return gone


async def retention_pass(run: StoreRunner, settings: RetentionSettings, *,
                         clock: Callable[[], datetime] = _utc_now,
                         evidence: EvidenceSource = None) -> RetentionResult | None:
    """One pass now, for `watcher run --once`, and the sealed evidence's expiry when
    `evidence` is given. A failure is logged and None returned, never raised: retention must
    not take the daemon down. Only `StoreClosedError` propagates."""
    now = clock()
    try:
        result = await run_retention(run, settings, now)
        if evidence is not None:
            current = evidence() if callable(evidence) else evidence
            result.evidence = len(await expire_evidence(run, current, now))
            if result.evidence:
                log_event(log, "info", "evidence expired", pieces=result.evidence, days=current.days)
        return result
    except StoreClosedError:
        raise
    except Exception:  # logged with its traceback, retried at the next pass
        log.exception("retention pass failed; retrying at the next pass")
        return None


async def retention_task(run: StoreRunner, settings: SettingsSource, *,
                         clock: Callable[[], datetime] = _utc_now,
                         first_delay: float = FIRST_DELAY, every: float = PASS_EVERY,
                         evidence: EvidenceSource = None) -> None:
    """Run a retention pass `first_delay` seconds after start, then every `every` seconds.

    Until cancelled; returns when the store is closed. A failed pass is logged and retried at
    the next one. `settings` may be a getter, read at each pass, so a reloaded configuration
    applies at once.
    """
    await asyncio.sleep(first_delay)
    while True:
        current = settings() if callable(settings) else settings
        try:
            await retention_pass(run, current, clock=clock, evidence=evidence)
        except StoreClosedError:
            return
        await asyncio.sleep(every)
