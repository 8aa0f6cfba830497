"""watcher.retention on real SQLite files: what ages out, what stays, batching, vacuum, the task."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watcher import retention
from watcher.config import RetentionSettings
from watcher.report import Report
from watcher.retention import purge, retention_task, run_retention, store_runner, vacuum, vacuum_due
from watcher.store import StateDB, Store, table_names
from watcher.timestamps import format_time

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SETTINGS = RetentionSettings(items_days=90, findings_days=365, fingerprints_days=365, vacuum_every=7 * 86400.0)
LONG_FINGERPRINTS = RetentionSettings(items_days=90, findings_days=365, fingerprints_days=730)


class Clock:
    """A settable clock shared by the database and the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


def sha(n: int) -> str:
    return f"{n:064x}"


def report(n: int, nirs: int = 3) -> Report:
    """A critical report whose fingerprints are `nirs` distinct hex digests derived from `n`."""
    return Report(path=f"https://paste.example/{n}", sha256=sha(n), size=100, severity="critical",
                  reasons=[f"{nirs} valid NIRs"], counts={"nir": nirs}, samples=["nir 1 84 12 •• ••• ••• ••"],
                  fingerprints={"nir": sorted(f"{n:032x}{k:032x}" for k in range(nirs))})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path, clock: Clock) -> Iterator[StateDB]:
    with StateDB(tmp_path / "watcher.db", clock=clock) as state:
        state.upsert_source("paste", "listing")
        yield state


def count(state: StateDB, table: str, where: str = "1") -> int:
    return int(state.db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])


def item(state: StateDB, n: int, finding: bool = False) -> None:
    """Record item `n` of source "paste", with a finding (content `n`) or without one."""
    state.record_item("paste", f"item-{n}", "v1", f"https://paste.example/{n}", f"title {n}",
                      report(n) if finding else None)


# -- items, links, validators ---------------------------------------------------------------------

def test_old_items_without_findings_go_recent_ones_stay(db: StateDB, clock: Clock) -> None:
    item(db, 1)
    clock.advance(60)
    item(db, 2)
    clock.advance(40)                       # item 1 is 100 days old, item 2 is 40
    result = purge(db, SETTINGS, clock())
    assert result.items == 1 and result.failed == []
    assert [row[0] for row in db.db.execute("SELECT item_id FROM items")] == ["item-2"]
    assert not db.is_seen("paste", "item-1", "v1") and db.is_seen("paste", "item-2", "v1")


def test_an_item_evidencing_a_kept_finding_stays_until_its_link_ages_out(db: StateDB, clock: Clock) -> None:
    item(db, 1, finding=True)
    clock.advance(200)
    result = purge(db, SETTINGS, clock())
    assert (result.items, result.links, result.findings_deleted) == (0, 0, 0)
    assert count(db, "items") == 1 and count(db, "item_findings") == 1
    clock.advance(200)                     # 400 days: finding, link and item all go
    result = purge(db, SETTINGS, clock())
    assert (result.findings_deleted, result.items) == (1, 1)
    assert count(db, "items") == count(db, "item_findings") == count(db, "findings") == 0
    assert count(db, "fingerprints") == 0


def test_seeing_an_item_again_keeps_it(db: StateDB, clock: Clock) -> None:
    item(db, 1)
    clock.advance(80)
    db.record_item("paste", "item-1", "v2", None, None, None)   # a new version: last_seen moves
    clock.advance(80)
    assert purge(db, SETTINGS, clock()).items == 0


def test_validators_of_urls_not_polled_for_long_go(db: StateDB, clock: Clock) -> None:
    db.upsert_source("old-forum", "forum")
    db.save_validators("old-forum", {"https://forum.example/a": ("etag-a", None)})
    clock.advance(100)
    db.save_validators("paste", {"https://paste.example/archive": ('"v9"', None)})
    result = purge(db, SETTINGS, clock())
    assert result.validators == 1
    assert db.source_validators("old-forum") == {}
    assert db.source_validators("paste") == {"https://paste.example/archive": ('"v9"', None)}


# -- findings and fingerprints --------------------------------------------------------------------

def test_findings_age_out_by_last_seen_with_their_fingerprints(db: StateDB, clock: Clock) -> None:
    item(db, 1, finding=True)
    item(db, 2, finding=True)
    clock.advance(300)
    db.record_item("paste", "repost-2", "v1", None, None, report(2))   # finding 2 seen again
    clock.advance(100)
    result = purge(db, SETTINGS, clock())
    assert result.findings_deleted == 1 and result.findings_retired == 0
    assert [row[0] for row in db.db.execute("SELECT sha256 FROM findings")] == [sha(2)]
    assert count(db, "fingerprints") == 3
    assert db.overlap("nir", [f"{1:032x}{0:032x}"]) == {}


def test_longer_fingerprints_retire_findings_first(db: StateDB, clock: Clock) -> None:
    item(db, 1, finding=True)
    clock.advance(400)
    result = purge(db, LONG_FINGERPRINTS, clock())
    assert (result.findings_retired, result.findings_deleted, result.links, result.items) == (1, 0, 1, 1)
    (finding,) = db.findings()
    assert finding["samples"] == [] and finding["items"] == [] and finding["severity"] == "critical"
    assert finding["counts"] == {"nir": 3} and finding["reasons"] == ["3 valid NIRs"]
    # The fingerprints still recognise the leak when it resurfaces.
    assert db.overlap("nir", [f"{1:032x}{0:032x}", f"{1:032x}{1:032x}"]) == {finding["id"]: 2}
    assert purge(db, LONG_FINGERPRINTS, clock()).changed == 0          # idempotent
    clock.advance(400)                                                  # 800 days: gone
    result = purge(db, LONG_FINGERPRINTS, clock())
    assert result.findings_deleted == 1
    assert count(db, "findings") == count(db, "fingerprints") == 0


def test_a_second_pass_changes_nothing(db: StateDB, clock: Clock) -> None:
    for n in range(5):
        item(db, n, finding=n % 2 == 0)
    clock.advance(1000)
    assert purge(db, LONG_FINGERPRINTS, clock()).changed > 0
    assert purge(db, LONG_FINGERPRINTS, clock()).changed == 0


# -- alerting tables (schema 3) -------------------------------------------------------------------

def alert(state: StateDB, n: int, state_name: str, created: datetime, finding_id: int | None = None) -> None:
    state.db.execute(
        """INSERT INTO alerts (alert_id, kind, severity, finding_id, title, state, next_try, created_at)
        VALUES (?, 'new', 'critical', ?, 'leak', ?, ?, ?)""",
        (f"a{n}", finding_id, state_name, format_time(created), format_time(created)),
    )


def incident_for(state: StateDB, finding_id: int, seen: datetime) -> None:
    state.db.execute("INSERT INTO incidents (id, severity, first_seen, last_seen) VALUES (?, 'critical', ?, ?)",
                     (finding_id, format_time(seen), format_time(seen)))
    state.db.execute("INSERT INTO incident_findings (finding_id, incident_id, joined_at) VALUES (?, ?, ?)",
                     (finding_id, finding_id, format_time(seen)))


def test_old_alerts_and_orphan_incidents_go_pending_alerts_stay(db: StateDB, clock: Clock) -> None:
    if "alerts" not in table_names(db.db):
        pytest.skip("schema without the alerts tables")
    item(db, 1, finding=True)
    finding_id = db.findings()[0]["id"]
    incident_for(db, finding_id, clock())
    alert(db, 1, "sent", clock(), finding_id)
    alert(db, 2, "pending", clock())
    alert(db, 3, "failed", clock())
    clock.advance(400)
    alert(db, 4, "sent", clock())
    result = purge(db, SETTINGS, clock())
    assert result.failed == []
    assert (result.findings_deleted, result.incidents, result.alerts) == (1, 1, 2)
    assert sorted(row[0] for row in db.db.execute("SELECT alert_id FROM alerts")) == ["a2", "a4"]
    assert count(db, "incidents") == count(db, "incident_findings") == 0


def test_a_step_sqlite_refuses_is_logged_and_the_others_run(db: StateDB, clock: Clock,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    db.db.execute("CREATE TABLE pinned (finding_id INTEGER NOT NULL REFERENCES findings(id))")
    item(db, 1, finding=True)
    item(db, 2)
    db.db.execute("INSERT INTO pinned VALUES (?)", (db.findings()[0]["id"],))
    clock.advance(400)
    with caplog.at_level(logging.ERROR, logger="watcher.retention"):
        result = purge(db, SETTINGS, clock())
    assert result.failed == ["findings_deleted"]
    assert count(db, "findings") == 1 and (result.findings_retired, result.links, result.items) == (1, 1, 2)
    assert any("retention step failed" in r.getMessage() for r in caplog.records)


# -- vacuum ---------------------------------------------------------------------------------------

def test_vacuum_is_due_after_the_period_and_remembered_across_opens(tmp_path: Path, db: StateDB,
                                                                    clock: Clock) -> None:
    stamp = tmp_path / "watcher.db.vacuumed"
    assert not vacuum_due(db, SETTINGS, clock())          # the first look starts the clock
    assert stamp.read_text() == format_time(T0) + "\n"
    assert stat.S_IMODE(stamp.stat().st_mode) == 0o600
    clock.advance(6)
    assert not vacuum_due(db, SETTINGS, clock())
    clock.advance(1)
    assert vacuum_due(db, SETTINGS, clock())
    with StateDB(tmp_path / "watcher.db", clock=clock) as again:   # a restarted daemon agrees
        assert vacuum_due(again, SETTINGS, clock())
    vacuum(db, clock())
    assert not vacuum_due(db, SETTINGS, clock())
    stamp.write_text("garbage")
    assert not vacuum_due(db, SETTINGS, clock())                   # unreadable: start again


def test_vacuum_shrinks_the_file_and_truncates_the_wal(tmp_path: Path, db: StateDB, clock: Clock) -> None:
    for n in range(300):
        db.record_item("paste", f"item-{n}", "v1", None, "x" * 2000, None)
    clock.advance(100)
    assert purge(db, SETTINGS, clock()).items == 300
    result = vacuum(db, clock())
    assert result.vacuumed and result.bytes_after < result.bytes_before / 4
    assert not result.checkpoint_busy
    assert os.path.getsize(tmp_path / "watcher.db-wal") == 0
    assert int(db.db.execute("PRAGMA freelist_count").fetchone()[0]) == 0
    again = vacuum(db, clock())                       # no free page: no VACUUM, still a checkpoint
    assert not again.vacuumed and again.bytes_after == result.bytes_after


def test_vacuum_refuses_to_run_inside_a_transaction(db: StateDB, clock: Clock) -> None:
    with db.transaction(), pytest.raises(RuntimeError, match="transaction is open"):
        vacuum(db, clock())


# -- through the store thread, as the daemon runs it ----------------------------------------------

async def test_run_retention_goes_through_the_store_in_batches(tmp_path: Path, clock: Clock) -> None:
    store = await Store.open(tmp_path / "watcher.db", clock=clock)
    try:
        await store.call(StateDB.upsert_source, "paste", "listing")
        base = store_runner(store)
        calls: list[Callable[[StateDB], Any]] = []

        async def counting(fn: Callable[[StateDB], Any]) -> Any:
            calls.append(fn)
            return await base(fn)

        rare_vacuum = RetentionSettings(vacuum_every=1000 * 86400.0)
        await run_retention(counting, rare_vacuum, clock())       # nothing to delete
        calls_when_empty = len(calls)
        def record(state: StateDB, first: int) -> None:
            for n in range(first, first + 500):
                state.record_item("paste", f"i{n}", "v", None, None, None)

        for first in range(0, 2500, 500):
            await store.call(record, first)
        clock.advance(100)
        calls.clear()
        result = await run_retention(counting, rare_vacuum, clock())
        assert result.items == 2500
        # 1000 + 1000 + 500: two more store calls than an empty pass, other calls interleave.
        assert len(calls) == calls_when_empty + 2
        assert await store.call(lambda state: count(state, "items")) == 0
        assert result.vacuum is None
        assert (await run_retention(base, SETTINGS, clock())).vacuum is not None   # 100 days > 7
    finally:
        await store.close()


async def test_the_task_runs_passes_survives_a_failure_and_ends_with_the_store(
        tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    store = await Store.open(tmp_path / "watcher.db", clock=clock)
    await store.call(StateDB.upsert_source, "paste", "listing")
    await store.call(StateDB.record_item, "paste", "old", "v", None, None, None)
    clock.advance(100)
    base = store_runner(store)
    passes: list[str] = []
    failed_once = False

    async def flaky(fn: Callable[[StateDB], Any]) -> Any:
        nonlocal failed_once
        if not failed_once:
            failed_once = True
            raise RuntimeError("disk on fire")
        passes.append("call")
        return await base(fn)

    settings = iter([SETTINGS] * 1000)
    with caplog.at_level(logging.INFO, logger="watcher.retention"):
        task = asyncio.create_task(retention_task(flaky, lambda: next(settings), clock=clock,
                                                  first_delay=0, every=0.01))
        for _ in range(500):
            if await store.call(lambda state: count(state, "items")) == 0:
                break
            await asyncio.sleep(0.01)
        assert any("retention pass failed" in r.getMessage() for r in caplog.records)
        assert any("retention pass done" in r.getMessage() for r in caplog.records)
        await store.close()
        await asyncio.wait_for(task, 5)            # StoreClosedError ends the task quietly
    assert task.done() and task.exception() is None


async def test_the_task_is_cancellable_while_waiting(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "watcher.db")
    try:
        task = asyncio.create_task(retention_task(store_runner(store), SETTINGS))   # first pass in 60 s
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await store.close()


def test_module_constants_are_sane() -> None:
    assert retention.FIRST_DELAY < retention.PASS_EVERY
    assert retention.FINDING_BATCH <= retention.ROW_BATCH
