"""Prometheus metrics: live counters of the daemon plus cheap gauges read from the state database.

    [metrics]
    listen = "127.0.0.1:9464"      # loopback only: the endpoint has no authentication

`GET /metrics` (nothing else: other paths 404, other methods 405) answers in the Prometheus
text exposition format 0.0.4. Two kinds of figures:

- live counters, since the process started, fed by the daemon through a `Metrics` instance:
  `watcher_polls_total{source,outcome}`, `watcher_items_processed_total{source}`,
  `watcher_findings_detected_total{source}`, `watcher_alerts_total{outcome}`;
- gauges read from the database at each scrape (grouped counts over indexed columns, a few
  milliseconds): `watcher_findings{severity}`, `watcher_items{source}`, `watcher_source_up`,
  `watcher_source_consecutive_failures`, `watcher_source_last_success_timestamp_seconds`,
  `watcher_alerts{state}` (when the alerts table exists), `watcher_state_db_bytes`.

The database is read through the store's writer thread (a `StoreRunner`, see
`watcher.retention.store_runner`). At most one such read is in flight: a scrape that arrives
while the store is busy (a VACUUM) waits `db_timeout` seconds, then answers with the live
counters and `watcher_state_db_up 0`. Labels carry source names and states only, never
anything read from a document.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from .config import MetricsSettings
from .logs import log_event
from .retention import StoreRunner
from .score import SEVERITIES
from .store import StateDB, StoreClosedError
from .timestamps import parse_time

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "MetricsServer",
    "Sample",
    "alert_counts",
    "database_samples",
    "render",
    "serve",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DB_TIMEOUT = 5.0

# name -> (type, help). Rendering follows this order.
FAMILIES: dict[str, tuple[str, str]] = {
    "watcher_start_time_seconds": ("gauge", "Start time of the daemon, seconds since the epoch."),
    "watcher_polls_total": ("counter", "Polls since the daemon started, by source and outcome (ok, failed)."),
    "watcher_items_processed_total": ("counter", "Items analysed since the daemon started, by source."),
    "watcher_findings_detected_total": ("counter", "New or escalated findings since the daemon started, by source."),
    "watcher_alerts_total": ("counter", "Alert deliveries since the daemon started, by outcome (sent, failed)."),
    "watcher_items_failed_total": ("counter", "Items whose analysis failed since the daemon started, by source "
                                              "and outcome (retried: tried again next poll; parked: given up)."),
    "watcher_items_refused_parts_total": ("counter", "Items analysed with parts refused (bombs, limits, cut at "
                                                     "max_bytes) since the daemon started, by source."),
    "watcher_items_skipped_total": ("counter", "Items that could not be fetched since the daemon started, "
                                               "by source (retried next poll)."),
    "watcher_state_db_up": ("gauge", "1 if the state database answered this scrape in time, else 0."),
    "watcher_state_db_bytes": ("gauge", "Size of the state database (pages times page size), in bytes."),
    "watcher_findings": ("gauge", "Findings kept in the state database, by severity."),
    "watcher_items": ("gauge", "Items remembered in the state database, by source."),
    "watcher_source_up": ("gauge", "1 if the source's last poll succeeded, 0 if it is failing (enabled sources)."),
    "watcher_source_degraded": ("gauge", "1 if the source's last poll succeeded with a warning (a login wall, "
                                         "links gone, its expect selector unmatched)."),
    "watcher_source_consecutive_failures": ("gauge", "Consecutive failed polls of the source."),
    "watcher_source_last_success_timestamp_seconds": ("gauge", "Time of the source's last successful poll."),
    "watcher_alerts": ("gauge", "Alerts in the state database, by state (pending, sent, logged, failed)."),
}

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One value of a metric family with its labels, e.g. polls_total{source="inbox",outcome="ok"}."""

    name: str
    labels: Labels
    value: float


def _sample(name: str, value: float, **labels: str) -> Sample:
    if name not in FAMILIES:
        raise KeyError(f"unknown metric {name!r}: declare it in FAMILIES")
    return Sample(name, tuple(labels.items()), float(value))


# --------------------------------------------------------------------------- live counters


class Metrics:
    """Counters of this daemon process. The daemon owns one and reports events to it."""

    def __init__(self, start_time: float | None = None) -> None:
        self.start_time = time.time() if start_time is None else start_time
        self._values: dict[tuple[str, Labels], float] = {}
        for outcome in ("sent", "failed"):
            self._add("watcher_alerts_total", 0, outcome=outcome)

    def _add(self, name: str, amount: float, **labels: str) -> None:
        key = (name, tuple(labels.items()))
        self._values[key] = self._values.get(key, 0.0) + amount

    def poll(self, source: str, ok: bool, items: int = 0, findings: int = 0) -> None:
        """One poll of `source` ended: its outcome, the items it analysed, the findings it made."""
        self._add("watcher_polls_total", 1, source=source, outcome="ok" if ok else "failed")
        self._add("watcher_items_processed_total", items, source=source)
        self._add("watcher_findings_detected_total", findings, source=source)

    def item_trouble(self, source: str, *, retried: int = 0, parked: int = 0, refused: int = 0,
                     skipped: int = 0) -> None:
        """Items of one poll that failed (retried or parked), had parts refused, or were skipped."""
        self._add("watcher_items_failed_total", retried, source=source, outcome="retried")
        self._add("watcher_items_failed_total", parked, source=source, outcome="parked")
        self._add("watcher_items_refused_parts_total", refused, source=source)
        self._add("watcher_items_skipped_total", skipped, source=source)

    def alert(self, ok: bool) -> None:
        """One alert delivery was attempted: sent, or failed."""
        self._add("watcher_alerts_total", 1, outcome="sent" if ok else "failed")

    def samples(self) -> list[Sample]:
        """Every counter, plus the start time."""
        found = [_sample("watcher_start_time_seconds", self.start_time)]
        found.extend(Sample(name, labels, value) for (name, labels), value in self._values.items())
        return found


# --------------------------------------------------------------------------- database gauges


def alert_counts(db: sqlite3.Connection, unacknowledged: bool = False) -> dict[str, int] | None:
    """Alerts per state (pending, sent, logged, failed), or None without an alerts table.

    The table comes with schema version 3 (watcher.alerts); an older database has none.
    `unacknowledged`: leave out alerts an operator acknowledged (`watcher alerts ack`).
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}    # empty: no such table
    if "state" not in columns:
        return None
    where = " WHERE acked_at IS NULL" if unacknowledged and "acked_at" in columns else ""
    rows = db.execute(f"SELECT state, count(*) FROM alerts{where} GROUP BY state").fetchall()
    return {str(state): int(count) for state, count in rows}


def database_samples(state: StateDB) -> list[Sample]:
    """Gauges read from the state database (run on the store's thread)."""
    conn = state.db
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    found = [_sample("watcher_state_db_bytes", int(pages) * int(page_size))]
    by_severity = dict(conn.execute("SELECT severity, count(*) FROM findings GROUP BY severity").fetchall())
    found.extend(_sample("watcher_findings", by_severity.get(s, 0), severity=s) for s in SEVERITIES[1:])
    for source, count in conn.execute("SELECT source, count(*) FROM items GROUP BY source"):
        found.append(_sample("watcher_items", count, source=source))
    found.extend(_source_samples(conn))
    for status, count in sorted((alert_counts(conn) or {}).items()):
        found.append(_sample("watcher_alerts", count, state=status))
    return found


def _source_samples(conn: sqlite3.Connection) -> Iterable[Sample]:
    """Health gauges of every source that is not disabled."""
    rows = conn.execute(
        "SELECT name, state, consecutive_failures, last_success, warning IS NOT NULL FROM sources "
        "WHERE state != 'disabled' ORDER BY name"
    )
    for name, state, failures, last_success, warned in rows:
        yield _sample("watcher_source_up", 1 if state == "ok" else 0, source=name)
        yield _sample("watcher_source_degraded", 1 if state == "ok" and warned else 0, source=name)
        yield _sample("watcher_source_consecutive_failures", failures, source=name)
        if last_success:
            yield _sample("watcher_source_last_success_timestamp_seconds",
                          parse_time(last_success).timestamp(), source=name)


# --------------------------------------------------------------------------- exposition format


def _escape(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render(samples: Iterable[Sample]) -> str:
    """The Prometheus text exposition of `samples`: families in FAMILIES order, HELP and TYPE once."""
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.name, []).append(sample)
    lines: list[str] = []
    for name, (kind, help_text) in FAMILIES.items():
        if name not in grouped:
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for sample in grouped[name]:
            labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sample.labels)
            lines.append(f"{name}{{{labels}}} {_number(sample.value)}" if labels
                         else f"{name} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTTP endpoint


class MetricsServer:
    """`GET /metrics` on a loopback address, with aiohttp.web. `start()`, then `stop()`."""

    def __init__(self, settings: MetricsSettings, metrics: Metrics, run: StoreRunner | None = None, *,
                 db_timeout: float = DB_TIMEOUT) -> None:
        if not ipaddress.ip_address(settings.host).is_loopback:
            raise ValueError(f"metrics must listen on a loopback address, not {settings.host}")
        self.settings = settings
        self.metrics = metrics
        self._run = run
        self._db_timeout = db_timeout
        self._pending: asyncio.Future[list[Sample]] | None = None
        self._db_ok = True
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0), or None before `start()`."""
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address is taken."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle, allow_head=False)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.host, self.settings.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Close the listening socket and open connections. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        samples = self.metrics.samples() + await self._database()
        return web.Response(body=render(samples).encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})

    async def _database(self) -> list[Sample]:
        """Database gauges plus `watcher_state_db_up`; one read in flight at most."""
        if self._run is None:
            return []
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._run(database_samples))
            self._pending.add_done_callback(_consume_exception)
        try:
            samples = await asyncio.wait_for(asyncio.shield(self._pending), self._db_timeout)
        except (TimeoutError, StoreClosedError, sqlite3.Error) as exc:
            self._note_db(False, exc)
            return [_sample("watcher_state_db_up", 0)]
        self._note_db(True, None)
        return [_sample("watcher_state_db_up", 1), *samples]

    def _note_db(self, ok: bool, exc: BaseException | None) -> None:
        """Log when the database stops (or starts again) answering scrapes; not at every scrape."""
        if ok != self._db_ok:
            if ok:
                log_event(log, "info", "metrics: state database answers again")
            else:
                log_event(log, "warning", "metrics: state database did not answer, serving live counters only",
                          error=type(exc).__name__ if exc else None)
        self._db_ok = ok


def _consume_exception(future: asyncio.Future[list[Sample]]) -> None:
    """Mark a background read's exception as retrieved (the waiting scrape may have timed out)."""
    if not future.cancelled():
        future.exception()


async def serve(settings: MetricsSettings, metrics: Metrics, run: StoreRunner | None = None) -> None:
    """Serve metrics until cancelled. An address already in use is logged, not fatal."""
    server = MetricsServer(settings, metrics, run)
    try:
        await server.start()
    except OSError as exc:
        log_event(log, "error", "metrics endpoint not started", listen=settings.listen, error=str(exc))
        return
    log_event(log, "info", "metrics endpoint listening", listen=settings.listen)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
