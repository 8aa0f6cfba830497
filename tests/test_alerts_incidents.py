"""Incidents and the alert row: same transaction as the finding, grouping, when to update."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.nirs import nir_forms, random_nir
from tests.support.receivers import Clock, leak, nir

import watcher.store
from watcher.alerts import AlertSettings, IncidentPolicy, jsonl_record, render
from watcher.alerts.incidents import SAMPLE_SIZE, bottom_k
from watcher.alerts.records import Alert, list_alerts
from watcher.report import Report
from watcher.store import MIGRATIONS, FindingEvent, ItemRecord, StateDB, Store

POLICY = IncidentPolicy(AlertSettings())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "watcher.db", clock=Clock())
    for name in ("paste", "forum", "mirror"):
        await opened.call(StateDB.upsert_source, name, "listing")
    yield opened
    await opened.close()


async def record(store: Store, source: str, item: str, report: Report) -> int | None:
    result = await store.call(StateDB.record_item, source, item, "1", f"https://{source}.example/{item}", item, report, alert=POLICY)
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
        await store.call(StateDB.record_item, "paste", "1", "1", None, None, leak(range(25)), alert=failing_hook)
    for table in ("items", "findings", "fingerprints", "incidents", "alerts"):
        assert rows(store, f"SELECT count(*) FROM {table}") == [(0,)], table

    alert_row = await record(store, "paste", "1", leak(range(25)))
    assert alert_row is not None
    assert rows(store, "SELECT count(*) FROM findings") == [(1,)]
    assert [a[:3] for a in alerts(store)] == [("new", "critical", 1)]


async def test_without_a_hook_nothing_is_alerted(store: Store) -> None:
    result = await store.call(StateDB.record_item, "paste", "1", "1", None, None, leak(range(25)))
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
    assert changes == ["+1 document on forum", "NIRs ~100 -> ~160"]


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
    assert json.loads(payload)["changes"] == ["+1 document on paste", "severity medium -> high"]


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
        v2.setattr(watcher.store.schema, "MIGRATIONS", MIGRATIONS[:2])
        v2.setattr(watcher.store.schema, "SCHEMA_VERSION", 2)
        async with await Store.open(path, clock=Clock()) as store:
            # Today's record_item clears an item's failure (schema 4): a stand-in table for it.
            # And the post's date and author columns (schema 6): stand-ins too, dropped after.
            stand_ins = [f"{table} ADD COLUMN {column} TEXT" for table in ("items", "item_findings")
                         for column in ("posted_at", "author")]
            await store.call(lambda state: state.db.execute("CREATE TABLE failed_items (source, item_id)"))
            for change in stand_ins:
                await store.call(lambda state, change=change: state.db.execute(f"ALTER TABLE {change}"))
            await store.call(StateDB.upsert_source, "paste", "listing")
            await store.call(StateDB.upsert_source, "forum", "listing")
            await store.call(StateDB.record_item, "paste", "p1", "1", None, None, old)
            await store.call(lambda state: state.db.execute("DROP TABLE failed_items"))
            for change in stand_ins:
                dropped = change.replace("ADD COLUMN", "DROP COLUMN").removesuffix(" TEXT")
                await store.call(lambda state, dropped=dropped: state.db.execute(f"ALTER TABLE {dropped}"))
            assert await store.call(StateDB.schema_version) == 2

    async with await Store.open(path, clock=Clock()) as store:
        assert await store.call(StateDB.schema_version) == watcher.store.SCHEMA_VERSION
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
    await store.call(StateDB.record_item, "paste", "1", "1", "https://paste.example/1", f"dump {spaced}", leak(range(25)),
                            alert=POLICY)
    [(title, payload)] = rows(store, "SELECT title, payload FROM alerts")
    for text in (title, payload, json.loads(payload)["item_title"]):
        assert spaced not in text and clear not in text


# --------------------------------------------------------------------------- first posted


async def post(store: Store, source: str, item: str, report: Report, posted_at: str | None) -> int | None:
    """Record an item whose source gave `posted_at` as its post's date; the alert row, if any."""
    record = ItemRecord(source, item, "1", f"https://{source}.example/{item}", item, report, posted_at=posted_at)
    [result] = await store.call(StateDB.record_items, [record], alert=POLICY)
    return result.alert


async def alert_rows(store: Store) -> list[Alert]:
    return await store.call(list_alerts)


async def test_first_posted_is_the_earliest_post_date_of_the_incidents_documents(store: Store) -> None:
    """Two documents of one leak (same NIRs, other bytes) dated differently: the incident keeps
    the earlier date, whatever the order; a later one does not move it. The clock is T0,
    2026-11-28T16:40Z."""
    assert await post(store, "paste", "p1", leak(range(100)), "2026-11-27T10:00:00+01:00") is not None
    assert rows(store, "SELECT first_posted FROM incidents") == [("2026-11-27T09:00:00Z",)]
    assert await post(store, "forum", "t1", leak(range(100), tag="repost"), "le 20/11/2026 à 08h00") is not None
    await post(store, "mirror", "m1", leak(range(100), tag="mirror"), "il y a 2 heures")
    assert rows(store, "SELECT count(*), first_posted FROM incidents") == [(1, "2026-11-20T08:00:00Z")]

    new, update, *_ = await alert_rows(store)
    assert new.payload["first_posted"] == new.payload["incident"]["first_posted"] == "2026-11-27T09:00:00Z"
    assert update.payload["first_posted"] == "2026-11-20T08:00:00Z"
    assert update.payload["posted_at"] == "2026-11-20T08:00:00Z"          # this document's own date
    body = render(update).body
    assert "First seen: 2026-11-28T16:40:00Z\nFirst posted: 2026-11-20T08:00:00Z (the incident's earliest" in body
    assert jsonl_record(update)["first_posted"] == "2026-11-20T08:00:00Z"


async def test_an_unknown_post_date_leaves_first_posted_empty(store: Store) -> None:
    """No date, or one that cannot be read: NULL, no "First posted" line, null in the JSONL;
    the first document with a readable date fills it."""
    await post(store, "paste", "p1", leak(range(30)), None)
    await post(store, "forum", "t1", leak(range(30), tag="repost"), "posted 06/11/2026, edited 07/11/2026")
    assert rows(store, "SELECT first_posted FROM incidents") == [(None,)]
    for alert in await alert_rows(store):
        assert alert.payload["first_posted"] is None and jsonl_record(alert)["first_posted"] is None
        assert "First posted" not in render(alert).body
    await post(store, "mirror", "m1", leak(range(30), tag="mirror"), "Nov 2, 2026")
    assert rows(store, "SELECT first_posted FROM incidents") == [("2026-11-02T00:00:00Z",)]


async def test_first_posted_is_a_normalised_date_or_nothing(store: Store) -> None:
    """An identifier in a source's date text never reaches the incident or the alert: the store
    keeps a normalised date or NULL, and the policy takes nothing else (an event built by hand)."""
    rng = random.Random(8)
    clears = [random_nir(rng) for _ in range(3)]
    texts = [f"06/11/2026 {clears[0]}", clears[1], nir_forms(clears[2])["spaced"]]
    for n, text in enumerate(texts):
        await post(store, "paste", f"p{n}", leak(range(30), tag=str(n)), text)
    assert rows(store, "SELECT DISTINCT posted_at FROM items UNION SELECT DISTINCT posted_at FROM item_findings "
                       "UNION SELECT DISTINCT first_posted FROM incidents") == [(None,)]
    report = leak(range(500, 530))
    await store.call(StateDB.record_item, "forum", "t1", "1", None, None, report)
    event = FindingEvent("forum", "t1", None, None, 4, True, False, report, "2026-11-28T16:40:00Z",
                         posted_at=f"2026-11-20 {clears[0]}")
    await store.call(POLICY, event)
    assert rows(store, "SELECT first_posted FROM incidents WHERE id = 2") == [(None,)]
    dumped = json.dumps(rows(store, "SELECT * FROM alerts")) + json.dumps(rows(store, "SELECT * FROM incidents"))
    for clear in clears:
        assert clear not in dumped


async def test_migration_7_normalises_post_dates_and_fills_first_posted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schema 6 kept the source's text; migration 7 reads it (relative forms against when the
    row was written), and fills each incident's first_posted from its documents."""
    path = tmp_path / "v6.db"
    with monkeypatch.context() as v6:  # the code before migration 7
        v6.setattr(watcher.store.schema, "MIGRATIONS", MIGRATIONS[:6])
        v6.setattr(watcher.store.schema, "SCHEMA_VERSION", 6)
        async with await Store.open(path, clock=Clock()) as store:
            for source in ("paste", "forum"):
                await store.call(StateDB.upsert_source, source, "listing")
            await store.call(StateDB.record_item, "paste", "p1", "1", None, None, leak(range(40)))
            await store.call(StateDB.record_item, "forum", "t1", "1", None, None, leak(range(40), tag="repost"))
            await store.call(StateDB.record_item, "paste", "p2", "1", None, None, leak(range(500, 520)))
            raw = """CASE item_id WHEN 'p1' THEN 'Mon, 23 Nov 2026 10:00:00 +0100'
                WHEN 't1' THEN 'il y a 3 heures' ELSE 'garbage' END"""
            statements = [
                f"UPDATE items SET posted_at = {raw}", f"UPDATE item_findings SET posted_at = {raw}",
                """INSERT INTO incidents (id, severity, nirs, sources, first_seen, last_seen) VALUES
                (1, 'critical', 40, '["paste","forum"]', 't', 't'), (2, 'critical', 20, '["paste"]', 't', 't')""",
                """INSERT INTO incident_findings (finding_id, incident_id, joined_at)
                VALUES (1, 1, 't'), (2, 1, 't'), (3, 2, 't')""",
            ]
            for statement in statements:
                await store.call(lambda state, statement=statement: state.db.execute(statement))
            await store.call(lambda state: state.db.commit())

    async with await Store.open(path, clock=Clock()) as store:
        assert await store.call(StateDB.schema_version) == watcher.store.SCHEMA_VERSION >= 7
        expected = [("p1", "2026-11-23T09:00:00Z"), ("p2", None), ("t1", "2026-11-28T13:40:00Z")]
        assert rows(store, "SELECT item_id, posted_at FROM items ORDER BY item_id") == expected
        assert rows(store, "SELECT item_id, posted_at FROM item_findings ORDER BY item_id") == expected
        assert rows(store, "SELECT id, first_posted FROM incident_overview ORDER BY id") == [
            (1, "2026-11-23T09:00:00Z"), (2, None)]
        await post(store, "forum", "t2", leak(range(40), tag="older"), "22/11/2026 08:00")
        assert rows(store, "SELECT first_posted FROM incidents WHERE id = 1") == [("2026-11-22T08:00:00Z",)]
