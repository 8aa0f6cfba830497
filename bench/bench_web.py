#!/usr/bin/env python3
"""The analyst's console at scale: each read-model query and each page, timed (issue 17).

    python bench/bench_web.py [--findings 100000] [--sources 1000] [--incidents 8000] [--runs 7]
                              [--db PATH] [--keep] [--no-http]

Fills a real state database (created and migrated by `StateDB`, then filled with bulk SQL
in the schema's own tables, in one transaction) with `--findings` findings over 90 days,
seen in `--sources` sources (1.2 item links per finding, and as many items again without a
finding), grouped into `--incidents` incidents of very unequal sizes (incident n gets about
1/n^0.9 of the findings: the largest holds several thousand, most hold a few), their
triage logs, alerts (mostly sent, some pending, some failed), custody records of the high
and critical documents, failed items, and sources failing, degraded, stale or disabled.
Every text is synthetic and masked as the store keeps it (`1 84 12 •• ••• ••• ••`).

Then it times, median of `--runs` after one untimed run, every function of
`watcher.web.views` on a read-only connection (WAL mode, as beside the running daemon):
the dashboard, incident list pages (first, deep, each filter), the filter form's choices,
the largest and a typical incident, the sources and alerts pages. When `watcher.web.app`
exists (and without `--no-http`), it also serves the console on 127.0.0.1 with
`watcher web`'s standalone server, logs a bench user in with aiohttp's client, and times
each page over HTTP (the whole request: query, template, headers). The target is 200 ms per
page. The load average is printed first: figures on a busy machine are worth little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from watcher.store import StateDB, connect_read_only
from watcher.timestamps import format_time
from watcher.web import views

#: The fill's "now": the real time, as the console's own clock reads it (sources polled minutes
#: ago, due soon). A state kept with --db ages: rerun later, its sources show as stale.
NOW = datetime.now(UTC).replace(microsecond=0)
SPAN_DAYS = 90
TARGET_MS = 200.0
KINDS = ("listing", "forum", "feed", "json", "telegram", "privatebin", "directory")
INSURERS = ("Viamedis", "Almerys", "Harmonie Mutuelle", "MGEN", "Malakoff Humanis", "AG2R La Mondiale",
            "Mutuelle Générale", "Swiss Life", "AXA Santé", "Allianz", "Groupama", "MAAF", "Macif", "Matmut",
            "Apivia", "April", "Klesia", "Pro BTP", "Humanis", "Intériale", "Mutuelle Bleue", "SantéClair",
            "Itelis", "Kalivia", "Carte Blanche", "Sévéane", "Isanté", "Tiers Payant Santé", "Cegedim", "SP Santé")
SEVERITY_WEIGHTS = (("low", 50), ("medium", 25), ("high", 15), ("critical", 10))
MASKED_NIR = "1 84 12 •• ••• ••• ••"
PASSWORD = "bench-console-password-1"


def stamp(moment: datetime) -> str:
    return format_time(moment)


@dataclass
class Incident:
    id: int
    findings: list[int] = field(default_factory=list)
    severity: str = "low"
    nirs: int = 0
    sources: list[str] = field(default_factory=list)
    first_seen: str = "9"
    last_seen: str = ""
    first_posted: str | None = None


def _severity_rank(severity: str) -> int:
    return ("low", "medium", "high", "critical").index(severity)


def fill(path: Path, *, findings: int, sources: int, incidents: int, seed: int = 17) -> dict[str, int]:
    """Create the state database at `path` and fill it (see the module docstring); the row counts."""
    rng = random.Random(seed)
    start = NOW - timedelta(days=SPAN_DAYS)
    with StateDB(path, clock=lambda: NOW) as state:
        db = state.db
        with state.transaction():
            names = _fill_sources(db, rng, sources)
            groups = _fill_findings(db, rng, findings, names, incidents, start)
            _fill_incidents(db, rng, groups)
            _fill_alerts_and_triage(db, rng, groups)
            _fill_evidence(db, rng, groups)
            _fill_failed(db, rng, names)
        db.execute("ANALYZE")
        counts = {table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                  for table in ("sources", "items", "findings", "item_findings", "incidents", "incident_findings",
                                "triage", "alerts", "evidence", "failed_items")}
    return counts


def _fill_sources(db: Any, rng: random.Random, count: int) -> list[str]:
    names = [f"src-{n:04d}-{rng.choice(('paste', 'forum', 'onion', 'feed', 'tg'))}" for n in range(count)]
    rows = []
    for n, name in enumerate(names):
        roll = rng.random()
        last_poll = NOW - timedelta(seconds=rng.randrange(30, 600))
        next_poll = NOW + timedelta(seconds=rng.randrange(30, 600))
        state, failures, failing_since, warning, error = "ok", 0, None, None, None
        if roll < 0.02:
            state, failures = "failing", rng.randrange(1, 40)
            failing_since = stamp(NOW - timedelta(hours=rng.randrange(1, 72)))
            error = "connect timeout after 30 s (socks 127.0.0.1:9050)"
        elif roll < 0.04:
            warning = "the main page looks like a login or challenge page"
        elif roll < 0.05:
            state = "disabled"
        elif roll < 0.06:
            next_poll = NOW - timedelta(hours=rng.randrange(1, 48))     # stale: the daemon is not polling it
        rows.append((name, KINDS[n % len(KINDS)], state, stamp(NOW - timedelta(days=SPAN_DAYS + 10)),
                     stamp(last_poll), stamp(last_poll), error, stamp(last_poll) if error else None, failures,
                     failing_since, stamp(next_poll), warning, rng.randrange(5, 60)))
    db.executemany(
        """INSERT INTO sources (name, kind, state, created_at, last_poll, last_success, last_error, last_error_at,
            consecutive_failures, failing_since, next_poll, warning, links) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)""",
        rows)
    return names


def _counts(rng: random.Random, severity: str) -> tuple[dict[str, int], int]:
    nirs = {"critical": rng.randrange(10, 5000), "high": rng.randrange(1, 10)}.get(severity, 0)
    counts = {"nir": nirs}
    for kind in ("email", "iban", "phone"):
        if rng.random() < 0.4:
            counts[kind] = rng.randrange(1, 3 * nirs + 20)
    return counts, nirs


def _fill_findings(db: Any, rng: random.Random, count: int, names: list[str], incidents: int,
                   start: datetime) -> dict[int, Incident]:
    """Findings, their items and item links; which incident each goes to (returned, filled in)."""
    weights = [1 / (n ** 0.9) for n in range(1, incidents + 1)]
    assignment = list(range(1, incidents + 1)) + rng.choices(range(1, incidents + 1), weights, k=max(count - incidents, 0))
    groups = {n: Incident(n) for n in range(1, incidents + 1)}
    severities, severity_weights = zip(*SEVERITY_WEIGHTS, strict=True)
    span = SPAN_DAYS * 86400
    findings, items, links = [], [], []
    item_serial = 0
    for finding_id in range(1, count + 1):
        group = groups[assignment[finding_id - 1]]
        severity = rng.choices(severities, severity_weights)[0]
        counts, nirs = _counts(rng, severity)
        seen = start + timedelta(seconds=rng.randrange(span - 60))
        insurers = rng.sample(INSURERS, rng.choice((0, 1, 1, 1, 2)))
        reasons = [f"{nirs} valid NIRs in a CSV extract"] if nirs else [f"insurer {insurers[0]} named" if insurers
                                                                         else "rule contract-numbers matched"]
        samples = [f"nir {MASKED_NIR}"] * min(nirs, 3)
        findings.append((finding_id, f"{finding_id:064x}", rng.randrange(200, 5_000_000), severity,
                         json.dumps(reasons, ensure_ascii=False), json.dumps(counts), json.dumps(insurers,
                                                                                                 ensure_ascii=False),
                         nirs or None, json.dumps(samples, ensure_ascii=False), stamp(seen), stamp(seen)))
        for copy in range(1 + (rng.random() < 0.15) + (rng.random() < 0.05)):
            item_serial += 1
            source = rng.choice(names)
            linked = min(seen + timedelta(hours=copy * rng.randrange(1, 200)), NOW)
            posted = stamp(linked - timedelta(hours=rng.randrange(1, 48))) if rng.random() < 0.5 else None
            item_id = f"i{item_serial:07x}"
            url = f"http://{source}.example.onion/p/{item_id}?id=[NIR]" if copy else f"https://{source}.example/{item_id}"
            title = f"dump {rng.choice(INSURERS)} {item_serial} fichier [NIR]"
            items.append((source, item_id, "1", url, title, f"{finding_id:064x}", 1000, stamp(linked), stamp(linked),
                          finding_id, posted, f"author{rng.randrange(500)}"))
            links.append((finding_id, source, item_id, "1", url, title, stamp(linked), posted,
                          f"author{rng.randrange(500)}"))
            _grow(group, finding_id, severity, nirs, source, stamp(linked), posted)
    for _ in range(count):              # items without a finding (severity none): most of what a daemon sees
        item_serial += 1
        seen = stamp(start + timedelta(seconds=rng.randrange(span)))
        items.append((rng.choice(names), f"i{item_serial:07x}", "1", None, "nothing here", None, 100, seen, seen,
                      None, None, None))
    db.executemany("""INSERT INTO findings (id, sha256, size, severity, reasons, counts, insurers, records, samples,
        first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?)""", findings)
    db.executemany("""INSERT INTO items (source, item_id, version, url, title, sha256, size, first_seen, last_seen,
        finding_id, posted_at, author) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""", items)
    db.executemany("""INSERT INTO item_findings (finding_id, source, item_id, version, url, title, linked_at,
        posted_at, author) VALUES (?,?,?,?,?,?,?,?,?)""", links)
    return groups


def _grow(group: Incident, finding_id: int, severity: str, nirs: int, source: str, linked: str,
          posted: str | None) -> None:
    if not group.findings or group.findings[-1] != finding_id:
        group.findings.append(finding_id)
    if _severity_rank(severity) > _severity_rank(group.severity):
        group.severity = severity
    group.nirs = max(group.nirs, nirs)
    if source not in group.sources:
        group.sources.append(source)
    group.first_seen = min(group.first_seen, linked)
    group.last_seen = max(group.last_seen, linked)
    if posted and (group.first_posted is None or posted < group.first_posted):
        group.first_posted = posted


def _fill_incidents(db: Any, rng: random.Random, groups: dict[int, Incident]) -> None:
    db.executemany("""INSERT INTO incidents (id, severity, nirs, sources, first_seen, last_seen, alerted_severity,
        alerted_nirs, alerted_at, first_posted) VALUES (?,?,?,?,?,?,?,?,?,?)""",
                   [(g.id, g.severity, g.nirs, json.dumps(g.sources), g.first_seen, g.last_seen, g.severity, g.nirs,
                     g.last_seen, g.first_posted) for g in groups.values()])
    db.executemany("INSERT INTO incident_findings (finding_id, incident_id, overlap, joined_at) VALUES (?,?,?,?)",
                   [(f, g.id, None if n == 0 else round(rng.uniform(0.5, 1), 3), g.first_seen)
                    for g in groups.values() for n, f in enumerate(g.findings)])


ACTIONS = (("ack", "acked"), ("close", "closed"), ("false-positive", "false-positive"), ("reopen", "open"))


def _fill_alerts_and_triage(db: Any, rng: random.Random, groups: dict[int, Incident]) -> None:
    alerts, triage, states = [], [], []
    alert_serial = 0
    for group in groups.values():
        for n, finding_id in enumerate(group.findings[:3]):
            alert_serial += 1
            roll = rng.random()
            state = "pending" if roll < 0.02 else "failed" if roll < 0.05 else "logged" if roll < 0.2 else "sent"
            error = "webhook https://soc.example/hook: HTTP 503 after 30 s" if state == "failed" else None
            payload = {"incident": {"id": group.id, "nirs": group.nirs}, "item_id": None, "severity": group.severity}
            alerts.append((f"{rng.getrandbits(128):032x}", "new" if n == 0 else "update", group.severity, group.id,
                           finding_id, group.sources[0], f"[{group.severity.upper()}] leak: {group.nirs} NIRs",
                           json.dumps(["leak", group.severity]), json.dumps(payload), state,
                           6 if state == "failed" else 1, group.first_seen, error,
                           json.dumps(["webhook"] if state == "sent" else []), group.first_seen, group.first_seen,
                           group.first_seen if state == "sent" else None))
        if rng.random() < 0.3:
            at = datetime.strptime(group.last_seen, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            state = "open"
            for _ in range(rng.randrange(1, 5)):
                at += timedelta(minutes=rng.randrange(5, 600))
                action, state = rng.choice(ACTIONS)
                triage.append((group.id, action, rng.choice(("alice", "bob", "chloé")),
                               f"checked with the insurer, NIR {MASKED_NIR} seen", group.severity, stamp(at)))
            states.append((state, group.severity if state in ("closed", "false-positive") else None, group.id))
    db.executemany("""INSERT INTO alerts (alert_id, kind, severity, incident_id, finding_id, source, title, tags,
        payload, state, tries, next_try, last_error, delivered_to, created_at, emitted_at, sent_at)
        VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""", alerts)
    db.executemany("INSERT INTO triage (incident_id, action, who, note, severity, at) VALUES (?,?,?,?,?,?)", triage)
    db.executemany("UPDATE incidents SET state = ?, closed_severity = ? WHERE id = ?", states)


def _fill_evidence(db: Any, rng: random.Random, groups: dict[int, Incident]) -> None:
    rows = db.execute("""SELECT l.finding_id, m.incident_id, l.source, l.url, l.title, l.linked_at, f.size, f.sha256
        FROM item_findings AS l JOIN findings AS f ON f.id = l.finding_id
        JOIN incident_findings AS m ON m.finding_id = l.finding_id WHERE f.severity IN ('high', 'critical')""").fetchall()
    records = []
    for n, (finding_id, incident_id, source, url, title, at, size, sha256) in enumerate(rows):
        kept = min(size, 1_000_000)
        records.append((f"{rng.getrandbits(128):032x}", "sealed", f"{n:08d}.age", sha256, size, sha256, kept,
                        int(kept < size), kept // 3, f"{n:064x}", source, url, title, int(".onion" in (url or "")), at,
                        at, finding_id, incident_id, json.dumps(["age1analyst"]), "",
                        at if rng.random() < 0.1 else None))
    db.executemany("""INSERT INTO evidence (piece_id, status, file_name, sha256, size, kept_sha256, kept_bytes,
        truncated, sealed_size, file_sha256, source, url, title, tor, fetched_at, sealed_at, finding_id, incident_id,
        recipients, note, expired_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""", records)


def _fill_failed(db: Any, rng: random.Random, names: list[str]) -> None:
    rows = []
    for n in range(2000):
        at = stamp(NOW - timedelta(hours=rng.randrange(1, 200)))
        tries = rng.randrange(1, 4)
        rows.append((rng.choice(names), f"failed{n}", "1", None, "a document", "document over its time budget (60 s)",
                     tries, int(tries >= 3), at, at))
    db.executemany("""INSERT OR IGNORE INTO failed_items (source, item_id, version, url, title, error, tries, parked,
        first_failed, last_failed) VALUES (?,?,?,?,?,?,?,?,?,?)""", rows)


# --------------------------------------------------------------------------- timing


def median_ms(function: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, max) milliseconds of `runs` calls after one untimed call."""
    function()
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        function()
        times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times), max(times)


def typical_incident(db: Any) -> tuple[int, int, int]:
    """(largest incident, an incident of median size, its size)."""
    sizes = db.execute("SELECT incident_id, count(*) AS n FROM incident_findings GROUP BY incident_id "
                       "ORDER BY n DESC").fetchall()
    return int(sizes[0][0]), int(sizes[len(sizes) // 2][0]), int(sizes[0][1])


def view_cases(db: Any) -> list[tuple[str, Callable[[], object]]]:
    largest, median, _ = typical_incident(db)
    insurer = "Viamedis"
    source = db.execute("SELECT source FROM item_findings GROUP BY source ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    total = db.execute("SELECT count(*) FROM incidents").fetchone()[0]
    last_page = max((total + 49) // 50, 1)
    day = (NOW - timedelta(days=20)).date()
    filters = views.IncidentFilter
    return [
        ("dashboard", lambda: views.dashboard(db, NOW)),
        ("incident_page (page 1)", lambda: views.incident_page(db, filters(), 1)),
        (f"incident_page (page {last_page}, last)", lambda: views.incident_page(db, filters(), last_page)),
        ("incident_page severity=critical", lambda: views.incident_page(db, filters(severity="critical"), 1)),
        ("incident_page state=active", lambda: views.incident_page(db, filters(state=views.ACTIVE), 1)),
        (f"incident_page insurer={insurer}", lambda: views.incident_page(db, filters(insurer=insurer), 1)),
        ("incident_page source=(busiest)", lambda: views.incident_page(db, filters(source=source), 1)),
        ("incident_page one week", lambda: views.incident_page(db, filters(date_from=day, date_to=day + timedelta(6)),
                                                                  1)),
        ("incident_page all filters", lambda: views.incident_page(db, filters(
            severity="critical", state="open", insurer=insurer, source=source, date_from=day), 1)),
        ("filter_choices", lambda: views.filter_choices(db)),
        ("incident_detail (largest)", lambda: views.incident_detail(db, largest)),
        ("incident_detail (median size)", lambda: views.incident_detail(db, median)),
        ("sources", lambda: views.sources(db, NOW)),
        ("alerts (all)", lambda: views.alerts(db)),
        ("alerts failed", lambda: views.alerts(db, "failed")),
    ]


def time_views(path: Path, runs: int) -> list[tuple[str, float, float]]:
    db = connect_read_only(path, idle_snapshot=False)
    try:
        return [(name, *median_ms(function, runs)) for name, function in view_cases(db)]
    finally:
        db.close()


# --------------------------------------------------------------------------- over HTTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_available() -> bool:
    try:
        import watcher.web.app  # noqa: F401
        import watcher.web.routes  # noqa: F401
    except ImportError:
        return False
    return True


_CSRF = re.compile(r'name="csrf"\s+value="([^"]+)"|value="([^"]+)"\s+name="csrf"')


async def time_pages(state_dir: Path, runs: int) -> list[tuple[str, float, float]]:
    """Serve the console standalone on the filled state, log in, time each page."""
    import aiohttp

    from watcher.config import load_config
    from watcher.web import auth
    from watcher.web.app import run_standalone

    port = free_port()
    config_path = state_dir.parent / "sources.toml"
    config_path.write_text(f'[watcher]\nstate_dir = "{state_dir}"\n\n[web]\nlisten = "127.0.0.1:{port}"\n',
                           encoding="utf-8")
    with StateDB(state_dir / "watcher.db") as state:
        auth.add_user(state, "bench", auth.hash_password(PASSWORD), replace=True)
        largest, median, _ = typical_incident(state.db)
        busiest = state.db.execute("SELECT source FROM item_findings GROUP BY source ORDER BY count(*) DESC "
                                   "LIMIT 1").fetchone()[0]
    config = load_config(config_path)
    ready = asyncio.Event()
    server = asyncio.create_task(run_standalone(config, lambda _url: ready.set()))
    await asyncio.wait_for(ready.wait(), 30)
    base = f"http://127.0.0.1:{port}"
    results = []
    try:
        async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:  # an IP host
            await _login(client)
            day = (NOW - timedelta(days=20)).date().isoformat()
            pages = [("/ (dashboard)", "/"), ("/incidents", "/incidents"),
                     ("/incidents?page=100", "/incidents?page=100"),
                     ("/incidents?severity=critical&state=active", "/incidents?severity=critical&state=active"),
                     ("/incidents?insurer=Viamedis", "/incidents?insurer=Viamedis"),
                     ("/incidents?source=(busiest)", f"/incidents?source={busiest}"),
                     (f"/incidents?from={day}", f"/incidents?from={day}"),
                     (f"/incidents/{largest} (largest)", f"/incidents/{largest}"),
                     (f"/incidents/{median} (median)", f"/incidents/{median}"),
                     ("/sources", "/sources"), ("/alerts", "/alerts")]
            for name, url in pages:
                async def get(url: str = url) -> int:
                    async with client.get(url, allow_redirects=False) as response:
                        body = await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"GET {url}: HTTP {response.status}")
                        return len(body)

                times = []
                size = await get()
                for _ in range(runs):
                    begin = time.perf_counter()
                    await get()
                    times.append((time.perf_counter() - begin) * 1000)
                results.append((f"GET {name} ({size // 1024:,} KB)", statistics.median(times), max(times)))
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    return results


async def _login(client: Any) -> None:
    async with client.get("/login") as response:
        page = await response.text()
    match = _CSRF.search(page)
    form = {"user": "bench", "password": PASSWORD}
    if match:
        form["csrf"] = match.group(1) or match.group(2)
    async with client.post("/login", data=form, allow_redirects=False) as response:
        if response.status not in (302, 303):
            raise RuntimeError(f"login refused: HTTP {response.status}")


# --------------------------------------------------------------------------- report


def table(rows: list[tuple[str, float, float]]) -> list[str]:
    lines = [f"{'WHAT':<58} {'MEDIAN ms':>10} {'MAX ms':>9}  TARGET"]
    for name, median, worst in rows:
        verdict = "ok" if median < TARGET_MS else "OVER"
        lines.append(f"{name:<58} {median:>10.1f} {worst:>9.1f}  {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--incidents", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=Path, help="use (or create) this state folder instead of a scratch one")
    parser.add_argument("--keep", action="store_true", help="keep the scratch state folder (its path is printed)")
    parser.add_argument("--no-http", action="store_true", help="time the read model only")
    args = parser.parse_args(argv)

    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="bench-web-")) if args.db is None else args.db
    state_dir = work / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "watcher.db"
    if not path.exists():
        begin = time.perf_counter()
        counts = fill(path, findings=args.findings, sources=args.sources, incidents=args.incidents)
        print(f"filled {path} in {time.perf_counter() - begin:.1f} s, {path.stat().st_size / 1e6:.0f} MB: "
              + ", ".join(f"{table_name} {count:,}" for table_name, count in counts.items()))
    with StateDB(path) as state:       # the writer stays open, as the daemon's does: readers use the WAL
        largest, median, size = typical_incident(state.db)
        print(f"largest incident #{largest}: {size:,} findings; median-size incident #{median}")
        rows = time_views(path, args.runs)
        print("\nread model (watcher.web.views), read-only connection:")
        print("\n".join(table(rows)))
        if not args.no_http and http_available():
            pages = asyncio.run(time_pages(state_dir, args.runs))
            print("\npages over HTTP (127.0.0.1, logged in):")
            print("\n".join(table(pages)))
        elif not args.no_http:
            print("\n(watcher.web.app or watcher.web.routes not there yet: pages not timed over HTTP)")
    if args.db is None and not args.keep:
        for child in sorted(work.rglob("*"), reverse=True):
            child.unlink() if child.is_file() else child.rmdir()
        work.rmdir()
    elif args.db is None:
        print(f"state kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
