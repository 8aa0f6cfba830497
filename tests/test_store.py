"""The state layer on real SQLite files: schema, migrations, idempotence, privacy, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.receivers import Clock
from watcher.privacy import Fingerprinter, mask_nir
from watcher.report import Report
from watcher.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ItemRecord,
    NotAStateDatabaseError,
    SchemaTooNewError,
    SchemaTooOldError,
    StateDB,
    Store,
    StoreClosedError,
    Validators,
)
from watcher.timestamps import format_time, parse_time

T0 = datetime(2026, 11, 28, 16, 40, tzinfo=UTC)
FINGERPRINT = Fingerprinter(b"k" * 32)



def nir(serial: int) -> str:
    """A valid 15-digit NIR (key = 97 - first 13 digits mod 97), distinct per serial."""
    body = f"1841275{serial % 1_000_000:06d}"
    return body + f"{97 - int(body) % 97:02d}"


def report(sha: str, severity: str = "critical", nirs: list[str] | None = None, **extra: object) -> Report:
    """A report as the scanner would produce it: fingerprints and masked samples only."""
    nirs = nirs or []
    return Report(
        path="https://paste.example/x",
        sha256=sha,
        size=1234,
        severity=severity,
        reasons=[f"{len(nirs)} valid NIRs"],
        counts={"nir": len(nirs)},
        insurers=["Harmonie Mutuelle"],
        records=len(nirs) or None,
        samples=[mask_nir(value) for value in nirs[:3]],
        fingerprints={"nir": sorted(FINGERPRINT("nir", value) for value in nirs)} if nirs else {},
        **extra,  # type: ignore[arg-type]
    )


def sha(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock):
    opened = await Store.open(tmp_path / "state" / "watcher.db", clock=clock)
    yield opened
    await opened.close()


def db_bytes(path: Path) -> bytes:
    """The database file and its -wal/-shm sidecars, concatenated."""
    return b"".join(
        candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if candidate.exists()
    )


# --------------------------------------------------------------------------- schema


async def test_new_database_has_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    async with await Store.open(path) as store:
        assert await store.call(StateDB.schema_version) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    views = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert {"schema_version", "sources", "validators", "items", "findings", "item_findings", "fingerprints"} <= tables
    assert {"source_health", "finding_links"} <= views
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    conn.close()


def test_connection_enforces_foreign_keys(tmp_path: Path) -> None:
    with StateDB(tmp_path / "watcher.db") as state:
        assert state.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(KeyError, match="upsert_source"):
            state.record_item("nowhere", "1", "1", None, None, None)


V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE sources (name TEXT PRIMARY KEY, kind TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'failing', 'disabled')),
    created_at TEXT NOT NULL, last_poll TEXT, last_success TEXT, last_error TEXT, last_error_at TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0, failing_since TEXT, next_poll TEXT);
CREATE TABLE validators (source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
    url TEXT NOT NULL, etag TEXT, last_modified TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (source, url));
CREATE TABLE findings (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    reasons TEXT NOT NULL DEFAULT '[]', counts TEXT NOT NULL DEFAULT '{}', insurers TEXT NOT NULL DEFAULT '[]',
    records INTEGER, samples TEXT NOT NULL DEFAULT '[]', rules TEXT NOT NULL DEFAULT '{}',
    errors TEXT NOT NULL DEFAULT '[]', first_seen TEXT NOT NULL, last_seen TEXT NOT NULL);
CREATE INDEX findings_first_seen ON findings (first_seen);
CREATE TABLE items (source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE, item_id TEXT NOT NULL,
    version TEXT NOT NULL, url TEXT, title TEXT, sha256 TEXT, size INTEGER, first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL, finding_id INTEGER REFERENCES findings(id) ON DELETE SET NULL,
    PRIMARY KEY (source, item_id));
CREATE INDEX items_finding_id ON items (finding_id);
CREATE TABLE item_findings (finding_id INTEGER NOT NULL REFERENCES findings(id) ON DELETE CASCADE,
    source TEXT NOT NULL, item_id TEXT NOT NULL, version TEXT NOT NULL, url TEXT, title TEXT,
    linked_at TEXT NOT NULL, PRIMARY KEY (finding_id, source, item_id, version),
    FOREIGN KEY (source, item_id) REFERENCES items(source, item_id) ON DELETE CASCADE);
CREATE INDEX item_findings_item ON item_findings (source, item_id);
CREATE TABLE fingerprints (hmac TEXT NOT NULL, kind TEXT NOT NULL,
    finding_id INTEGER NOT NULL REFERENCES findings(id) ON DELETE CASCADE,
    PRIMARY KEY (hmac, kind, finding_id)) WITHOUT ROWID;
CREATE INDEX fingerprints_finding ON fingerprints (finding_id, kind);
INSERT INTO schema_version VALUES (1, 'initial tables', '2026-01-01T00:00:00Z');
INSERT INTO sources (name, kind, created_at) VALUES ('pastebin', 'paste', '2026-01-01T00:00:00Z');
INSERT INTO findings (id, sha256, size, severity, reasons, first_seen, last_seen)
    VALUES (7, 'aa', 10, 'high', '["old reason"]', '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z');
INSERT INTO items (source, item_id, version, url, title, sha256, size, first_seen, last_seen, finding_id)
    VALUES ('pastebin', 'p1', '1', 'https://pastebin.example/p1', 'old', 'aa', 10,
            '2026-01-02T00:00:00Z', '2026-01-02T00:00:00Z', 7);
INSERT INTO item_findings VALUES (7, 'pastebin', 'p1', '1', 'https://pastebin.example/p1', 'old', '2026-01-02T00:00:00Z');
INSERT INTO fingerprints VALUES ('%s', 'nir', 7);
"""


async def test_opening_a_v1_database_migrates_it_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_digest = FINGERPRINT("nir", nir(1))
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA % old_digest)
    conn.close()

    async with await Store.open(path) as store:
        assert await store.call(StateDB.schema_version) == SCHEMA_VERSION
        health = await store.call(StateDB.sources_health)
        assert [(h["name"], h["items"], h["findings"]) for h in health] == [("pastebin", 1, 1)]
        assert await store.is_seen("pastebin", "p1", "1")
        assert await store.call(StateDB.overlap, "nir", [old_digest]) == {7: 1}
        [finding] = await store.call(StateDB.findings)
        assert finding["id"] == 7 and finding["reasons"] == ["old reason"] and finding["source"] == "pastebin"

    conn = sqlite3.connect(path)
    assert [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(range(1, SCHEMA_VERSION + 1))
    assert conn.execute("SELECT finding_id, source FROM finding_links").fetchall() == [(7, "pastebin")]
    conn.close()


async def test_refuses_a_database_from_newer_code_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT);"
        "INSERT INTO schema_version VALUES (99, 'from the future', '2030-01-01T00:00:00Z');"
    )
    conn.close()
    before = path.read_bytes()

    with pytest.raises(SchemaTooNewError, match=rf"schema version 99.*up to {SCHEMA_VERSION}"):
        await Store.open(path)
    assert path.read_bytes() == before
    assert not path.with_name("future.db-wal").exists()


def test_refuses_a_database_that_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    with pytest.raises(NotAStateDatabaseError, match="customers"):
        StateDB(path)


# --------------------------------------------------------------------------- read-only


def _build(path: Path, migrations: int) -> None:
    """A database at schema version `migrations` (up to 4: later ones need the opener's SQL functions)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    for migration in MIGRATIONS[:migrations]:
        migration.apply(conn)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, 't')", (migration.version, migration.name))
    conn.commit()
    conn.close()


def test_read_only_reads_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    with StateDB(path) as db:
        db.upsert_source("paste", "listing")
        db.record_item("paste", "1", "1", None, None, report(sha(1), nirs=[nir(1)]))
    before = path.read_bytes()
    with StateDB.read_only(path) as reader:
        assert [row["name"] for row in reader.sources_health()] == ["paste"]
        assert len(reader.findings()) == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.upsert_source("forum", "forum")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["watcher.db"]     # no -wal/-shm left behind


def test_read_only_refuses_other_versions_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StateDB.read_only(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()
    old = tmp_path / "old.db"
    _build(old, 4)
    before = old.read_bytes()
    with pytest.raises(SchemaTooOldError, match=r"version 4, older.*watcher run --once"):
        StateDB.read_only(old)
    with StateDB.read_only(old, any_version=True) as reader:    # a reader that checks its columns
        assert reader.schema_version() == 4
    assert old.read_bytes() == before
    future = tmp_path / "future.db"
    _build(future, 1)
    with contextlib.closing(sqlite3.connect(future)) as conn, conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 't')")
    with pytest.raises(SchemaTooNewError, match="schema version 99"):
        StateDB.read_only(future)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(NotAStateDatabaseError):
        StateDB.read_only(empty)


# --------------------------------------------------------------------------- file mode


async def test_files_are_private_to_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "watcher.db"
    old_umask = os.umask(0o002)  # a permissive umask must not matter
    try:
        store = await Store.open(path)
        await store.call(StateDB.upsert_source, "s", "paste")
        for name in ("watcher.db", "watcher.db-wal", "watcher.db-shm"):
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
        await store.close()
    finally:
        os.umask(old_umask)


def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    StateDB(path).close()
    path.chmod(0o644)
    StateDB(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- items and findings


async def test_items_are_idempotent_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    async with await Store.open(path) as store:
        await store.call(StateDB.upsert_source, "paste", "paste")
        first = await store.call(StateDB.record_item, "paste", "abc", "v1", "https://p/abc", "t", report(sha(1), nirs=[nir(1)]))
        assert first.new_item and first.new_finding and first.finding_id is not None
        assert await store.is_seen("paste", "abc", "v1")

    async with await Store.open(path) as store:
        assert await store.is_seen("paste", "abc", "v1")
        assert not await store.is_seen("paste", "abc", "v2")
        again = await store.call(StateDB.record_item, "paste", "abc", "v1", "https://p/abc", "t", report(sha(1), nirs=[nir(1)]))
        assert (again.new_item, again.new_finding, again.finding_id) == (False, False, first.finding_id)
        assert len(await store.call(StateDB.findings)) == 1
        [link] = (await store.call(StateDB.findings))[0]["items"]
        assert link["version"] == "v1"


async def test_same_content_on_two_sources_is_one_finding_with_two_links(store: Store, clock: Clock) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    await store.call(StateDB.upsert_source, "forum", "forum")
    a = await store.call(StateDB.record_item, "paste", "1", "1", "https://paste/1", "dump", report(sha(5), nirs=[nir(1), nir(2)]))
    clock.advance(minutes=5)
    b = await store.call(StateDB.record_item, "forum", "t9", "3", "https://forum/t9", "repost", report(sha(5), nirs=[nir(1), nir(2)]))
    assert a.new_finding and not b.new_finding and a.finding_id == b.finding_id

    [finding] = await store.call(StateDB.findings)
    assert (finding["source"], finding["item_id"], finding["url"]) == ("paste", "1", "https://paste/1")
    assert [(i["source"], i["item_id"], i["title"]) for i in finding["items"]] == [
        ("paste", "1", "dump"),
        ("forum", "t9", "repost"),
    ]
    assert finding["first_seen"] == "2026-11-28T16:40:00Z"
    assert finding["last_seen"] == "2026-11-28T16:45:00Z"
    assert a.finding_id is not None
    assert await store.call(StateDB.fingerprint_counts, "nir", [a.finding_id]) == {a.finding_id: 2}
    health = {h["name"]: h for h in await store.call(StateDB.sources_health)}
    assert health["paste"]["findings"] == health["forum"]["findings"] == 1


async def test_new_version_relinks_item_and_keeps_history(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    first = await store.call(StateDB.record_item, "paste", "1", "1", None, "t", report(sha(1), nirs=[nir(1)]))
    clean = await store.call(StateDB.record_item, "paste", "1", "2", None, "t", report(sha(2), severity="none"))
    assert clean.new_item and clean.finding_id is None
    not_scanned = await store.call(StateDB.record_item, "paste", "1", "2", None, "t", None)
    assert not not_scanned.new_item and not_scanned.finding_id is None
    [finding] = await store.call(StateDB.findings)
    assert finding["id"] == first.finding_id and [i["version"] for i in finding["items"]] == ["1"]
    assert (await store.call(StateDB.sources_health))[0]["items"] == 1


async def test_a_more_severe_report_escalates_the_finding(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    low = await store.call(StateDB.record_item, "paste", "1", "1", None, None, report(sha(1), severity="low", nirs=[nir(1)]))
    same = await store.call(StateDB.record_item, "paste", "2", "1", None, None, report(sha(1), severity="low", nirs=[nir(1)]))
    high = await store.call(StateDB.record_item, "paste", "3", "1", None, None, report(sha(1), severity="high", nirs=[nir(1), nir(2)]))
    assert (low.new_finding, same.escalated, high.escalated) == (True, False, True)
    [finding] = await store.call(StateDB.findings)
    assert finding["severity"] == "high" and len(finding["items"]) == 3
    assert low.finding_id is not None
    assert await store.call(StateDB.fingerprint_counts, "nir", [low.finding_id]) == {low.finding_id: 2}


async def test_findings_filters(store: Store, clock: Clock) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    for n, severity in enumerate(["low", "medium", "high", "critical"]):
        await store.call(StateDB.record_item, "paste", str(n), "1", None, None, report(sha(n), severity=severity))
        clock.advance(hours=1)

    assert [f["severity"] for f in await store.call(StateDB.findings)] == ["low", "medium", "high", "critical"]
    assert [f["severity"] for f in await store.call(StateDB.findings, min_severity="high")] == ["high", "critical"]
    assert len(await store.call(StateDB.findings, min_severity="none")) == 4
    since = T0 + timedelta(hours=1)  # inclusive: the medium one was first seen exactly then
    assert [f["severity"] for f in await store.call(StateDB.findings, since=since)] == ["medium", "high", "critical"]
    assert [f["severity"] for f in await store.call(StateDB.findings, since=since, min_severity="critical")] == ["critical"]
    assert [f["severity"] for f in await store.call(StateDB.findings, limit=1)] == ["low"]
    with pytest.raises(ValueError, match="unknown severity"):
        await store.call(StateDB.findings, min_severity="severe")
    with pytest.raises(ValueError, match="naive"):
        await store.call(StateDB.findings, since=datetime(2026, 1, 1))


async def test_severity_none_makes_no_finding(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    result = await store.call(StateDB.record_item, "paste", "1", "1", None, None, report(sha(1), severity="none"))
    assert result.finding_id is None and result.new_item
    assert await store.call(StateDB.findings) == []


# --------------------------------------------------------------------------- fingerprints


async def test_overlap_counts_shared_fingerprints_per_finding(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    a = await store.call(StateDB.record_item, "paste", "a", "1", None, None, report(sha(1), nirs=[nir(i) for i in range(0, 10)]))
    b = await store.call(StateDB.record_item, "paste", "b", "1", None, None, report(sha(2), nirs=[nir(i) for i in range(5, 20)]))
    c = await store.call(StateDB.record_item, "paste", "c", "1", None, None, report(sha(3), nirs=[nir(i) for i in range(100, 103)]))

    probe = [FINGERPRINT("nir", nir(i)) for i in range(8, 12)]  # 8, 9 in a; 8..11 in b
    assert await store.call(StateDB.overlap, "nir", probe) == {b.finding_id: 4, a.finding_id: 2}
    assert await store.call(StateDB.overlap, "iban", probe) == {}
    assert await store.call(StateDB.overlap, "nir", []) == {}
    assert await store.call(StateDB.overlap, "nir", probe + probe) == {b.finding_id: 4, a.finding_id: 2}
    ids = [r.finding_id for r in (a, b, c) if r.finding_id is not None]
    totals = await store.call(StateDB.fingerprint_counts, "nir", ids)
    assert totals == {a.finding_id: 10, b.finding_id: 15, c.finding_id: 3}


async def test_overlap_takes_more_digests_than_sqlite_has_variables(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    a = await store.call(StateDB.record_item, "paste", "a", "1", None, None, report(sha(1), nirs=[nir(i) for i in range(3)]))
    probe = [FINGERPRINT("nir", nir(i)) for i in range(40_000)]
    assert await store.call(StateDB.overlap, "nir", probe) == {a.finding_id: 3}


def test_overlap_query_uses_the_index(tmp_path: Path) -> None:
    with StateDB(tmp_path / "watcher.db") as state:
        plan = " ".join(
            row[3]
            for row in state.db.execute(
                "EXPLAIN QUERY PLAN SELECT finding_id, count(*) FROM fingerprints "
                "WHERE kind = ? AND hmac IN (SELECT value FROM json_each(?)) GROUP BY finding_id",
                ("nir", "[]"),
            )
        )
    assert "SEARCH fingerprints USING PRIMARY KEY (hmac=? AND kind=?)" in plan


# --------------------------------------------------------------------------- sources


async def test_sources_health_follows_failures_and_recovery(store: Store, clock: Clock) -> None:
    await store.call(StateDB.upsert_source, "forum", "forum")
    next_poll = T0 + timedelta(minutes=10)
    await store.call(StateDB.record_poll, "forum", False, "ProxyError('Invalid reply code: 0XF0')\n  at line 2", next_poll)
    first_failure = format_time(clock.now)
    clock.advance(minutes=10)
    await store.call(StateDB.record_poll, "forum", False, "timeout", next_poll + timedelta(minutes=10))
    [health] = await store.call(StateDB.sources_health)
    assert health["state"] == "failing" and health["consecutive_failures"] == 2
    assert health["failing_since"] == first_failure and health["last_error"] == "timeout"
    assert health["last_success"] is None and health["next_poll"] == "2026-11-28T17:00:00Z"

    clock.advance(minutes=10)
    await store.call(StateDB.record_poll, "forum", True, None, next_poll + timedelta(minutes=20))
    [health] = await store.call(StateDB.sources_health)
    assert (health["state"], health["consecutive_failures"], health["failing_since"]) == ("ok", 0, None)
    assert health["last_success"] == health["last_poll"] == "2026-11-28T17:00:00Z"
    assert health["last_error"] == "timeout"  # kept for forensics, dated by last_error_at
    assert parse_time(health["last_error_at"]) == T0 + timedelta(minutes=10)
    assert (health["kind"], health["items"], health["findings"]) == ("forum", 0, 0)


async def test_error_is_stored_as_one_line(store: Store) -> None:
    await store.call(StateDB.upsert_source, "s", "paste")
    await store.call(StateDB.record_poll, "s", False, "line one\nline two\t" + "x" * 2000, T0)
    [health] = await store.call(StateDB.sources_health)
    assert "\n" not in health["last_error"] and len(health["last_error"]) == 500
    assert health["last_error"].startswith("line one line two x")


async def test_disabled_source_stays_disabled_until_upserted(store: Store) -> None:
    await store.call(StateDB.upsert_source, "s", "paste")
    await store.call(StateDB.disable_source, "s")
    await store.call(StateDB.record_poll, "s", False, "boom", T0)
    assert (await store.call(StateDB.sources_health))[0]["state"] == "disabled"
    await store.call(StateDB.upsert_source, "s", "paste")
    assert (await store.call(StateDB.sources_health))[0]["state"] == "failing"
    with pytest.raises(KeyError, match="unknown source"):
        await store.call(StateDB.record_poll, "missing", True, None, T0)


async def test_validators_round_trip(store: Store) -> None:
    await store.call(StateDB.upsert_source, "s", "forum")
    assert await store.call(StateDB.get_validators, "s", "https://f/") is None
    await store.call(StateDB.set_validators, "s", "https://f/", '"abc"', "Sat, 28 Nov 2026 16:40:00 GMT")
    assert await store.call(StateDB.get_validators, "s", "https://f/") == Validators('"abc"', "Sat, 28 Nov 2026 16:40:00 GMT")
    await store.call(StateDB.set_validators, "s", "https://f/", None, "Sun, 29 Nov 2026 16:40:00 GMT")
    assert await store.call(StateDB.get_validators, "s", "https://f/") == Validators(None, "Sun, 29 Nov 2026 16:40:00 GMT")
    await store.call(StateDB.set_validators, "s", "https://f/", None, None)
    assert await store.call(StateDB.get_validators, "s", "https://f/") is None


async def test_bulk_validators_match_the_poll_context(store: Store) -> None:
    await store.call(StateDB.upsert_source, "s", "forum")
    await store.call(StateDB.save_validators, "s", {"https://f/1": ('"a"', None), "https://f/2": (None, "Sat"), "https://f/3": (None, None)})
    assert await store.call(StateDB.source_validators, "s") == {"https://f/1": ('"a"', None), "https://f/2": (None, "Sat")}
    await store.call(StateDB.save_validators, "s", {"https://f/2": ('"b"', "Sun")})  # f/1 forgotten
    assert await store.call(StateDB.source_validators, "s") == {"https://f/2": ('"b"', "Sun")}
    assert await store.call(StateDB.source_validators, "other") == {}
    with pytest.raises(KeyError):
        await store.call(StateDB.save_validators, "other", {})


# --------------------------------------------------------------------------- privacy


async def test_database_holds_fingerprints_not_the_identifier(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    secret_nir = nir(424242)
    digest = FINGERPRINT("nir", secret_nir)
    leak = Report(
        path="-", sha256=sha(9), size=99, severity="critical", reasons=["1 valid NIR"],
        counts={"nir": 1}, samples=[mask_nir(secret_nir)], fingerprints={"nir": [digest]},
    )
    async with await Store.open(path) as store:
        await store.call(StateDB.upsert_source, "paste", "paste")
        await store.call(StateDB.record_item, "paste", "1", "1", "https://paste/1", "dump", leak)
        while_open = db_bytes(path)
    after_close = db_bytes(path)
    for blob in (while_open, after_close):
        assert secret_nir.encode() not in blob
        assert secret_nir[:13].encode() not in blob
        assert digest.encode() in blob  # what is stored is the fingerprint
        assert mask_nir(secret_nir).encode() in blob


async def test_nir_in_an_untrusted_title_or_error_is_blanked(tmp_path: Path) -> None:
    path = tmp_path / "watcher.db"
    secret_nir = nir(777)
    spaced = f"{secret_nir[0]} {secret_nir[1:3]} {secret_nir[3:5]} {secret_nir[5:7]} {secret_nir[7:10]} {secret_nir[10:13]} {secret_nir[13:]}"
    async with await Store.open(path) as store:
        await store.call(StateDB.upsert_source, "paste", "paste")
        await store.call(StateDB.record_item, "paste", "1", "1", None, f"NIR {secret_nir} for sale", report(sha(1), nirs=[nir(1)]))
        await store.call(StateDB.record_poll, "paste", False, f"parse error near {spaced}", T0)
        [finding] = await store.call(StateDB.findings)
        assert finding["title"] == "NIR [NIR] for sale"
        assert (await store.call(StateDB.sources_health))[0]["last_error"] == "parse error near [NIR]"
    blob = db_bytes(path)
    assert secret_nir.encode() not in blob and spaced.encode() not in blob


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(serial=st.integers(0, 999_999), sep=st.sampled_from(["", " ", ".", "-"]),
       prefix=st.text(max_size=10).filter(lambda p: not p[-1:].isdigit()))
def test_redaction_catches_separated_nirs(tmp_path: Path, serial: int, sep: str, prefix: str) -> None:
    """(A NIR glued to a digit before it is a longer number, for the detectors and the redaction.)"""
    from watcher.store.texts import redact_text

    value = nir(serial)
    groups = [value[0], value[1:3], value[3:5], value[5:7], value[7:10], value[10:13], value[13:]]
    written = sep.join(groups)
    cleaned = redact_text(f"{prefix}{written} x")
    assert cleaned is not None and written not in cleaned and value[:13] not in cleaned.replace(sep, "")


async def test_cleartext_fingerprint_is_refused_and_nothing_is_written(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    bad = report(sha(1))
    bad.fingerprints = {"nir": [nir(1)]}
    with pytest.raises(ValueError, match="not a lowercase hex HMAC"):
        await store.call(StateDB.record_item, "paste", "1", "1", None, None, bad)
    assert not await store.is_seen("paste", "1", "1")
    assert await store.call(StateDB.findings) == []


# --------------------------------------------------------------------------- batches, concurrency


async def test_record_items_is_one_all_or_nothing_transaction(store: Store) -> None:
    await store.call(StateDB.upsert_source, "paste", "paste")
    good = ItemRecord("paste", "1", "1", None, None, report(sha(1), nirs=[nir(1)]))
    bad = ItemRecord("paste", "2", "1", None, None, Report(path="-", sha256=sha(2), size=1, severity="critical",
                                                          fingerprints={"nir": ["not hex"]}))
    with pytest.raises(ValueError):
        await store.call(StateDB.record_items, [good, bad])
    assert not await store.is_seen("paste", "1", "1")
    results = await store.call(StateDB.record_items, [good])
    assert results[0].new_finding


async def test_concurrent_calls_from_one_loop_serialize(store: Store) -> None:
    sources = [f"s{n}" for n in range(5)]
    await asyncio.gather(*(store.call(StateDB.upsert_source, name, "paste") for name in sources))

    async def one(n: int):
        source = sources[n % len(sources)]
        result = await store.call(StateDB.record_item, source, str(n), "1", None, None, report(sha(n % 7), nirs=[nir(n % 7)]))
        assert await store.is_seen(source, str(n), "1")
        await store.call(StateDB.record_poll, source, n % 2 == 0, None, T0)
        return result

    results = await asyncio.gather(*(one(n) for n in range(300)), store.call(StateDB.findings), store.call(StateDB.sources_health))
    item_results = results[:300]
    assert sum(r.new_finding for r in item_results) == 7
    assert len({r.finding_id for r in item_results}) == 7
    findings = await store.call(StateDB.findings)
    assert len(findings) == 7 and sum(len(f["items"]) for f in findings) == 300
    assert sum(h["items"] for h in await store.call(StateDB.sources_health)) == 300


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "watcher.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.is_seen("s", "1", "1")


def test_state_db_is_bound_to_its_thread(tmp_path: Path) -> None:
    import concurrent.futures

    state = StateDB(tmp_path / "watcher.db")
    with concurrent.futures.ThreadPoolExecutor(1) as other, pytest.raises(sqlite3.ProgrammingError):
        other.submit(state.is_seen, "s", "1", "1").result()
    state.close()


def test_time_format() -> None:
    paris = datetime(2026, 11, 28, 17, 40, tzinfo=UTC).astimezone()
    assert format_time(paris) == "2026-11-28T17:40:00Z"
    assert parse_time("2026-11-28T16:40:00Z") == T0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", format_time(datetime.now(UTC)))


async def test_a_poll_with_a_warning_makes_the_source_degraded_until_one_without(store: Store) -> None:
    from watcher.store import PollHealth

    await store.call(StateDB.upsert_source, "paste", "listing")
    later = datetime.now(UTC) + timedelta(minutes=5)
    await store.call(StateDB.record_poll, "paste", True, None, later, PollHealth(links=12))
    await store.call(StateDB.record_poll, "paste", True, None, later, PollHealth(
        warning="item_links matched no link: it looks like a login page", links=0, skipped=2,
        notice="item http://paste.example/9 skipped: HTTP 500"))
    (row,) = await store.call(StateDB.sources_health)
    assert (row["state"], row["skipped"]) == ("degraded", 2)
    assert row["warning"].startswith("item_links matched no link") and "skipped: HTTP 500" in row["last_notice"]
    assert await store.call(StateDB.source_links, "paste") == 0
    await store.call(StateDB.record_poll, "paste", True, None, later, PollHealth(links=12, refused=1))
    (row,) = await store.call(StateDB.sources_health)
    assert (row["state"], row["warning"], row["skipped"], row["refused"]) == ("ok", None, 2, 1)
    assert "skipped: HTTP 500" in row["last_notice"]          # the last notice stays until a new one
    await store.call(StateDB.record_poll, "paste", False, "HTTP 503", later, PollHealth(warning="ignored: failing wins"))
    (row,) = await store.call(StateDB.sources_health)
    assert row["state"] == "failing"
