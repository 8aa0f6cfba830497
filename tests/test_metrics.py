"""watcher.metrics: counters, database gauges, the text format, and the loopback HTTP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from watcher.config import Address, MetricsSettings
from watcher.metrics import (
    CONTENT_TYPE,
    FAMILIES,
    Metrics,
    MetricsServer,
    Sample,
    alert_counts,
    database_samples,
    render,
    serve,
)
from watcher.report import Report
from watcher.retention import store_runner
from watcher.store import StateDB, Store, table_names

T0 = datetime(2026, 11, 28, 16, 40, tzinfo=UTC)
# One exposition line: name, optional {labels}, a value (Prometheus text format 0.0.4).
LINE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? '
                  r"(-?[0-9.e+]+|NaN|[+-]Inf)")


def parse(text: str) -> dict[str, float]:
    """`name{labels}` -> value, checking every line's syntax and HELP/TYPE placement."""
    assert text.endswith("\n")
    values: dict[str, float] = {}
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        assert LINE.fullmatch(line), line
        key, value = line.rsplit(" ", 1)
        assert key.split("{")[0] in declared, f"{line}: no HELP/TYPE before it"
        values[key] = float(value)
    return values


def report(n: int, severity: str) -> Report:
    return Report(path=f"p{n}", sha256=f"{n:064x}", size=10, severity=severity,
                  fingerprints={"nir": [f"{n:064x}"]})


def populate(state: StateDB) -> None:
    """Three sources (one failing, one disabled), four items, three findings."""
    state.upsert_source("inbox", "directory")
    state.upsert_source("paste", "listing")
    state.upsert_source("gone", "feed")
    state.disable_source("gone")
    state.record_poll("inbox", True, None, T0)
    state.record_poll("paste", False, "HTTP 503", T0)
    state.record_poll("paste", False, "HTTP 503", T0)
    state.record_item("inbox", "a.csv", "1", None, None, report(1, "critical"))
    state.record_item("inbox", "b.csv", "1", None, None, report(2, "critical"))
    state.record_item("paste", "x", "1", None, None, report(3, "low"))
    state.record_item("paste", "y", "1", None, None, None)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB(tmp_path / "watcher.db", clock=lambda: T0) as state:
        populate(state)
        yield state


# -- counters and rendering -----------------------------------------------------------------------

def test_live_counters() -> None:
    metrics = Metrics(start_time=1700000000.5)
    metrics.poll("inbox", True, items=3, findings=1)
    metrics.poll("inbox", True)
    metrics.poll("paste", False)
    metrics.alert(True)
    metrics.alert(False)
    metrics.alert(False)
    values = parse(render(metrics.samples()))
    assert values == {
        "watcher_start_time_seconds": 1700000000.5,
        'watcher_polls_total{source="inbox",outcome="ok"}': 2,
        'watcher_polls_total{source="paste",outcome="failed"}': 1,
        'watcher_items_processed_total{source="inbox"}': 3,
        'watcher_items_processed_total{source="paste"}': 0,
        'watcher_findings_detected_total{source="inbox"}': 1,
        'watcher_findings_detected_total{source="paste"}': 0,
        'watcher_alerts_total{outcome="sent"}': 1,
        'watcher_alerts_total{outcome="failed"}': 2,
    }


def test_render_declares_each_family_once_and_escapes_labels() -> None:
    samples = [Sample("watcher_items", (("source", 'we"ird\\na\nme'),), 2),
               Sample("watcher_items", (("source", "b"),), 3),
               Sample("watcher_state_db_bytes", (), 4096.0)]
    text = render(samples)
    assert text.count("# TYPE watcher_items gauge") == 1
    assert 'watcher_items{source="we\\"ird\\\\na\\nme"} 2' in text
    assert "watcher_state_db_bytes 4096\n" in text
    assert text.index("watcher_state_db_bytes") < text.index("watcher_items{")   # FAMILIES order
    parse(text)


def test_every_family_has_a_type_and_help() -> None:
    for name, (kind, help_text) in FAMILIES.items():
        assert kind in ("counter", "gauge") and help_text.endswith(".")
        assert name.endswith("_total") == (kind == "counter"), name


# -- database gauges ------------------------------------------------------------------------------

def test_database_samples(db: StateDB) -> None:
    values = parse(render(database_samples(db)))
    assert values['watcher_findings{severity="critical"}'] == 2
    assert values['watcher_findings{severity="low"}'] == 1
    assert values['watcher_findings{severity="medium"}'] == values['watcher_findings{severity="high"}'] == 0
    assert values['watcher_items{source="inbox"}'] == 2 and values['watcher_items{source="paste"}'] == 2
    assert values['watcher_source_up{source="inbox"}'] == 1
    assert values['watcher_source_up{source="paste"}'] == 0
    assert values['watcher_source_consecutive_failures{source="paste"}'] == 2
    assert values['watcher_source_last_success_timestamp_seconds{source="inbox"}'] == T0.timestamp()
    assert 'watcher_source_last_success_timestamp_seconds{source="paste"}' not in values
    assert not any('source="gone"' in key for key in values)            # disabled: not watched
    assert values["watcher_state_db_bytes"] > 0


def test_alert_counts(db: StateDB) -> None:
    if "alerts" not in table_names(db.db):
        assert alert_counts(db.db) is None
        return
    for n, (state, acked) in enumerate([("pending", None), ("failed", None), ("failed", "2026-11-28T17:00:00Z"),
                                        ("sent", None)]):
        db.db.execute("""INSERT INTO alerts (alert_id, kind, severity, title, state, next_try, created_at, acked_at)
                      VALUES (?, 'new', 'high', 't', ?, 'x', 'x', ?)""", (f"a{n}", state, acked))
    assert alert_counts(db.db) == {"pending": 1, "failed": 2, "sent": 1}
    assert alert_counts(db.db, unacknowledged=True) == {"pending": 1, "failed": 1, "sent": 1}
    values = parse(render(database_samples(db)))
    assert values['watcher_alerts{state="failed"}'] == 2


def test_no_alerts_table_no_alert_gauges(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as other:
        assert alert_counts(other) is None


# -- the HTTP endpoint ----------------------------------------------------------------------------

@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    with StateDB(tmp_path / "watcher.db", clock=lambda: T0) as state:
        populate(state)
    opened = await Store.open(tmp_path / "watcher.db")
    yield opened
    await opened.close()


@pytest.fixture
async def server(store: Store) -> AsyncIterator[MetricsServer]:
    metrics = Metrics()
    metrics.poll("inbox", True, items=2, findings=2)
    running = MetricsServer(MetricsSettings(Address("127.0.0.1", 0)), metrics, store_runner(store))
    await running.start()
    yield running
    await running.stop()


async def fetch(server: MetricsServer, path: str = "/metrics", method: str = "GET") -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{server.port}{path}"
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_get_metrics_serves_live_and_database_figures(server: MetricsServer) -> None:
    status, content_type, text = await fetch(server)
    assert status == 200 and content_type == CONTENT_TYPE
    values = parse(text)
    assert values["watcher_state_db_up"] == 1
    assert values['watcher_polls_total{source="inbox",outcome="ok"}'] == 1
    assert values['watcher_findings{severity="critical"}'] == 2
    server.metrics.poll("inbox", True)
    assert parse((await fetch(server))[2])['watcher_polls_total{source="inbox",outcome="ok"}'] == 2


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/", 404), ("GET", "/metrics/", 404), ("GET", "/debug", 404),
    ("POST", "/metrics", 405), ("PUT", "/metrics", 405), ("HEAD", "/metrics", 405),
])
async def test_only_get_metrics_is_served(server: MetricsServer, method: str, path: str, expected: int) -> None:
    assert (await fetch(server, path, method))[0] == expected


async def test_a_busy_store_answers_live_counters_only_with_one_read_in_flight(
        caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()
    reads = 0

    async def stuck(fn: Callable[[StateDB], Any]) -> Any:
        nonlocal reads
        reads += 1
        await release.wait()
        raise RuntimeError("never reached")

    metrics = Metrics()
    metrics.poll("inbox", True)
    running = MetricsServer(MetricsSettings(Address("127.0.0.1", 0)), metrics, stuck, db_timeout=0.2)
    await running.start()
    try:
        with caplog.at_level(logging.WARNING, logger="watcher.metrics"):
            answers = await asyncio.gather(*(fetch(running) for _ in range(3)))
            answers.append(await fetch(running))
        for status, _, text in answers:
            values = parse(text)
            assert status == 200 and values["watcher_state_db_up"] == 0
            assert values['watcher_polls_total{source="inbox",outcome="ok"}'] == 1
        assert reads == 1                                   # scrapes never pile up reads
        warnings = [r for r in caplog.records if "did not answer" in r.getMessage()]
        assert len(warnings) == 1                           # logged once, not per scrape
    finally:
        release.set()
        await running.stop()


async def test_a_closed_store_is_reported_not_raised(store: Store) -> None:
    running = MetricsServer(MetricsSettings(Address("127.0.0.1", 0)), Metrics(), store_runner(store))
    await running.start()
    try:
        await store.close()
        status, _, text = await fetch(running)
        assert status == 200 and parse(text)["watcher_state_db_up"] == 0
    finally:
        await running.stop()


async def test_without_a_store_only_live_counters() -> None:
    running = MetricsServer(MetricsSettings(Address("127.0.0.1", 0)), Metrics())
    await running.start()
    try:
        values = parse((await fetch(running))[2])
        assert "watcher_state_db_up" not in values and "watcher_start_time_seconds" in values
    finally:
        await running.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::"])
def test_the_server_refuses_non_loopback_addresses(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        MetricsServer(MetricsSettings(Address(host, 9464)), Metrics())


async def test_serve_logs_an_address_in_use_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken, caplog.at_level(logging.ERROR, logger="watcher.metrics"):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        await asyncio.wait_for(serve(MetricsSettings(Address("127.0.0.1", port)), Metrics()), 5)
    assert any("metrics endpoint not started" in r.getMessage() for r in caplog.records)


async def test_serve_runs_until_cancelled_and_frees_the_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(serve(MetricsSettings(Address("127.0.0.1", port)), Metrics()))
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("the endpoint never answered")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with socket.socket() as again:                         # the port is free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
