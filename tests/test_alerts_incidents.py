"""Incidents and the alert row: same transaction as the finding, grouping, when to update."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from receivers import Clock, leak, nir

import watcher.store
from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.alerts.incidents import SAMPLE_SIZE, bottom_k
from watcher.report import Report
from watcher.store import MIGRATIONS, FindingEvent, StateDB, Store

POLICY = IncidentPolicy(AlertSettings())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "watcher.db", clock=Clock())
    for name in ("paste", "forum", "mirror"):
        await opened.upsert_source(name, "listing")
    yield opened
    await opened.close()


async def record(store: Store, source: str, item: str, report: Report) -> int | None:
    result = await store.record_item(source, item, "1", f"https://{source}.example/{item}", item, report, alert=POLICY)
    return result.alert


def rows(store: Store, sql: str) -> list[tuple]:
    conn = sqlite3.connect(store._state.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def alerts(store: Store) -> list[tuple]:
    return rows(store, "SELECT kind, severity, incident_id, source, payload FROM alerts ORDER BY id")


# --------------------------------------------------------------------------- transaction


async def test_the_alert_commits_with_the_finding_or_not_at_all(store: Store) -> None:
    def failing_hook(state: StateDB, event: FindingEvent) -> int | None:
        POLICY(state, event)
        raise RuntimeError("crash after the alert row was written")

    with pytest.raises(RuntimeError):
        await store.record_item("paste", "1", "1", None, None, leak(range(25)), alert=failing_hook)
    for table in ("items", "findings", "fingerprints", "incidents", "alerts"):
        assert rows(store, f"SELECT count(*) FROM {table}") == [(0,)], table

    alert_row = await record(store, "paste", "1", leak(range(25)))
    assert alert_row is not None
    assert rows(store, "SELECT count(*) FROM findings") == [(1,)]
    assert [a[:3] for a in alerts(store)] == [("new", "critical", 1)]


async def test_without_a_hook_nothing_is_alerted(store: Store) -> None:
    result = await store.record_item("paste", "1", "1", None, None, leak(range(25)))
    assert result.new_finding and result.alert is None
    assert rows(store, "SELECT count(*) FROM alerts") == [(0,)]


async def test_below_min_severity_an_incident_is_kept_but_silent(store: Store) -> None:
    assert await record(store, "paste", "1", leak([], severity="low")) is None
    assert rows(store, "SELECT severity FROM incidents") == [("low",)]
    assert alerts(store) == []


# --------------------------------------------------------------------------- grouping


async def test_same_leak_on_two_sources_and_a_bigger_repost(store: Store) -> None:
    """One incident, one new alert and one update (a new source with +50% NIRs)."""
    original, bigger = leak(range(100)), leak(range(160), tag="repost")
    assert await record(store, "paste", "p1", original) is not None          # new
    assert await record(store, "forum", "t9", bigger) is not None            # update: new source, 100 -> 160
    assert await record(store, "forum", "t10", original) is None             # same bytes, source known
    assert await record(store, "paste", "p2", leak(range(20, 120), tag="again")) is None  # a repost, nothing new
    kinds = [(kind, incident) for kind, _, incident, _, _ in alerts(store)]
    assert kinds == [("new", 1), ("update", 1)]
    assert rows(store, "SELECT id, nirs, sources FROM incidents") == [(1, 160, '["paste","forum"]')]
    changes = json.loads(alerts(store)[1][4])["changes"]
    assert changes == ["new source: forum", "distinct NIRs ~100 -> ~160"]


async def test_same_bytes_on_a_new_source_is_an_update(store: Store) -> None:
    await record(store, "paste", "p1", leak(range(30)))
    assert await record(store, "mirror", "m1", leak(range(30))) is not None
    assert [a[0] for a in alerts(store)] == ["new", "update"]
    assert rows(store, "SELECT count(*) FROM incident_findings") == [(1,)]


async def test_an_unrelated_leak_is_another_incident(store: Store) -> None:
    await record(store, "paste", "p1", leak(range(50)))
    await record(store, "paste", "p2", leak(range(1000, 1050)))
    await record(store, "paste", "p3", leak(range(45, 95), tag="5 shared of 50"))
    assert [(a[0], a[2]) for a in alerts(store)] == [("new", 1), ("new", 2), ("new", 3)]


@pytest.mark.parametrize(
    ("before", "after", "updates"),
    [(20, 29, False),   # +45%: not material
     (20, 31, True),    # +55% and +11
     (4, 8, False),     # +100% but only +4
     ],
)
async def test_growth_must_be_material(store: Store, before: int, after: int, updates: bool) -> None:
    await record(store, "paste", "p1", leak(range(before)))
    update = await record(store, "paste", "p2", leak(range(after), tag="grown"))
    assert (update is not None) is updates


async def test_a_severity_rise_is_an_update(store: Store) -> None:
    await record(store, "paste", "p1", leak(range(5), severity="medium"))
    assert await record(store, "paste", "p2", leak(range(5), severity="high", tag="context")) is not None
    [_, (kind, severity, _, _, payload)] = alerts(store)
    assert (kind, severity) == ("update", "high")
    assert json.loads(payload)["changes"] == ["severity medium -> high"]


async def test_overlap_is_estimated_from_a_bounded_sample(store: Store) -> None:
    """3,000 NIRs sharing 1,500 with a 2,000-NIR incident: joins it, the union is estimated."""
    await record(store, "paste", "p1", leak(range(2000)))
    update = await record(store, "forum", "t1", leak(range(500, 3500), tag="bigger"))
    assert update is not None
    [(incident, nirs)] = rows(store, "SELECT id, nirs FROM incidents")
    assert incident == 1 and 3500 * 0.9 <= nirs <= 3500 * 1.1
    [(overlap,)] = rows(store, "SELECT overlap FROM incident_findings WHERE overlap IS NOT NULL")
    assert 0.6 <= overlap <= 0.9


async def test_a_tiny_old_leak_inside_a_huge_dump_alerts_as_new(store: Store) -> None:
    """The documented limit of the sample: an extra alert, never a lost one."""
    await record(store, "paste", "p1", leak(range(20)))
    assert await record(store, "forum", "t1", leak(range(5000), tag="dump")) is not None
    assert [(a[0], a[2]) for a in alerts(store)] == [("new", 1), ("new", 2)]


def test_bottom_k_is_the_k_smallest_distinct_hmacs() -> None:
    hmacs = leak(range(1000)).fingerprints["nir"]            # sorted, as in a report
    assert bottom_k(hmacs) == (hmacs[:SAMPLE_SIZE], 1000)
    assert bottom_k(list(reversed(hmacs)) + hmacs[:10]) == (hmacs[:SAMPLE_SIZE], 1000)
    assert bottom_k(hmacs[:10]) == (hmacs[:10], 10)


# --------------------------------------------------------------------------- migration


async def test_migration_makes_each_old_finding_an_incident_without_alerting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v2.db"
    old = leak(range(40))
    with monkeypatch.context() as v2:  # the code before migration 3
        v2.setattr(watcher.store, "MIGRATIONS", MIGRATIONS[:2])
        v2.setattr(watcher.store, "SCHEMA_VERSION", 2)
        async with await Store.open(path, clock=Clock()) as store:
            # Today's record_item clears an item's failure (schema 4): a stand-in table for it.
            # And the post's date and author columns (schema 6): stand-ins too, dropped after.
            stand_ins = [f"{table} ADD COLUMN {column} TEXT" for table in ("items", "item_findings")
                         for column in ("posted_at", "author")]
            await store.call(lambda state: state.db.execute("CREATE TABLE failed_items (source, item_id)"))
            for change in stand_ins:
                await store.call(lambda state, change=change: state.db.execute(f"ALTER TABLE {change}"))
            await store.upsert_source("paste", "listing")
            await store.upsert_source("forum", "listing")
            await store.record_item("paste", "p1", "1", None, None, old)
            await store.call(lambda state: state.db.execute("DROP TABLE failed_items"))
            for change in stand_ins:
                dropped = change.replace("ADD COLUMN", "DROP COLUMN").removesuffix(" TEXT")
                await store.call(lambda state, dropped=dropped: state.db.execute(f"ALTER TABLE {dropped}"))
            assert await store.schema_version() == 2

    async with await Store.open(path, clock=Clock()) as store:
        assert await store.schema_version() == watcher.store.SCHEMA_VERSION
        assert rows(store, "SELECT id, severity, nirs, sources, alerted_severity FROM incidents") == [
            (1, "critical", 40, '["paste"]', "critical")]
        assert rows(store, "SELECT count(*) FROM alerts") == [(0,)]
        assert await record(store, "paste", "p2", old) is None                    # nothing new
        assert await record(store, "forum", "t1", old) is not None                # a new source
        assert [(a[0], a[2]) for a in alerts(store)] == [("new", 1)]


async def test_no_cleartext_identifier_in_the_alert_row(store: Store) -> None:
    """A NIR written with no-break spaces in an item title (a form the store does not blank)."""
    clear = nir(777)
    spaced = "\u00a0".join([clear[0], clear[1:3], clear[3:5], clear[5:7], clear[7:10], clear[10:13], clear[13:]])
    await store.record_item("paste", "1", "1", "https://paste.example/1", f"dump {spaced}", leak(range(25)),
                            alert=POLICY)
    [(title, payload)] = rows(store, "SELECT title, payload FROM alerts")
    for text in (title, payload, json.loads(payload)["item_title"]):
        assert spaced not in text and clear not in text
