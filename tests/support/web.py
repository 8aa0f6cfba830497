"""The web console for its tests: a state database filled through the store (real analyses of
synthetic extracts with random NIRs, the incident policy that groups them and writes alerts),
a hostile item whose title, author and URL are script payloads, a failed alert, one analyst,
and the console itself served on 127.0.0.1 (`running_console`).
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from tests.support.daemon import drop_csv
from tests.support.nirs import nir_forms, random_nir

from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.alerts.records import list_alerts, record_attempt
from watcher.analyze import Analyzer
from watcher.config import DB_NAME, Config, load_config
from watcher.evidence import CustodyRecord
from watcher.store import ItemRecord, StateDB, Store
from watcher.store.evidence import record_custodies
from watcher.web import auth

USER = "analyst"
PASSWORD = "correct horse battery staple"
HOSTILE_TITLE = '<script>alert("title")</script> leak'
HOSTILE_AUTHOR = '<img src=x onerror=alert("author")>'
HOSTILE_URL = 'javascript:alert("url")//'
SOURCES = (("paste-site", "listing"), ("board", "forum"), ("feed", "feed"))
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(folder: Path, web: str = "") -> Path:
    """sources.toml with its state in `folder`/state and a [web] table on a free loopback port
    (plus the `web` keys)."""
    path = folder / "sources.toml"
    path.write_text(f'[watcher]\nstate_dir = "./state"\n\n[web]\nlisten = "127.0.0.1:{free_port()}"\n{web}\n',
                    encoding="utf-8")
    return path


@dataclass
class Filled:
    """What `fill_state` put in the database."""

    nirs: list[str]                       # every NIR of every document, in clear (never in a page)
    incidents: list[int]
    hostile_incident: int
    failed_alert: int
    severities: dict[int, str] = field(default_factory=dict)


def fill_state(state_dir: Path, analyzer: Analyzer, rng: random.Random) -> Filled:
    """Incidents on three sources: each a real analysis of a CSV extract of random NIRs (the
    hostile one's title, author and URL are script payloads holding NIRs too), recorded with
    the daemon's incident policy; the first alert is failed, as the sender leaves one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    policy = IncidentPolicy(AlertSettings())
    nirs: list[str] = []
    with StateDB(state_dir / DB_NAME) as state:
        for name, kind in SOURCES:
            state.upsert_source(name, kind)
        for number, size in enumerate((14, 3, 1, 12, 2)):
            batch = [random_nir(rng, strict=True) for _ in range(size)]
            nirs += batch
            report = analyzer.analyze_path(drop_csv(state_dir, f"extract-{number}.csv", batch))
            source = SOURCES[number % len(SOURCES)][0]
            state.record_items([ItemRecord(source, f"item-{number}", "1", f"https://paste.example/{number}",
                                           f"dump {number}", report, posted_at="2026-12-01T10:00:00Z",
                                           author=f"seller{number}")], alert=policy)
        named = random_nir(rng, strict=True)
        batch = [random_nir(rng, strict=True) for _ in range(11)]
        nirs += [named, *batch]
        report = analyzer.analyze_path(drop_csv(state_dir, "hostile.csv", batch))
        state.record_items([ItemRecord("feed", "hostile", "1", f"{HOSTILE_URL}{named}",
                                       f"{HOSTILE_TITLE} {nir_forms(named)['spaced']}", report,
                                       author=f"{HOSTILE_AUTHOR} {named}")], alert=policy)
        incidents = [row[0] for row in state.db.execute("SELECT id FROM incidents ORDER BY id")]
        severities = dict(state.db.execute("SELECT id, severity FROM incidents").fetchall())
        hostile = state.db.execute("""SELECT m.incident_id FROM incident_findings AS m JOIN item_findings AS l
            ON l.finding_id = m.finding_id WHERE l.item_id = 'hostile'""").fetchone()[0]
        finding, sha256, size = state.db.execute("""SELECT f.id, f.sha256, f.size FROM findings AS f
            JOIN incident_findings AS m ON m.finding_id = f.id WHERE m.incident_id = ? LIMIT 1""",
                                                 (incidents[0],)).fetchone()
        named = random_nir(rng, strict=True)
        nirs.append(named)
        record_custodies(state, [(CustodyRecord(
            piece_id="piece-1", status="sealed", sha256=sha256, size=size, kept_sha256=sha256, kept_bytes=size,
            truncated=False, fetched_at=state.now(), sealed_at=state.now(), source=SOURCES[0][0],
            url=f"https://paste.example/0?{named}", tor=False, finding_id=finding, incident_id=None,
            recipients=("age1" + "q" * 58,), file_name="piece-1.age", sealed_size=size + 200,
            file_sha256="0" * 64), f"dump 0 {named}")])
        first = list_alerts(state, 1)[0]
        record_attempt(state, first.id, delivered_to=frozenset(), new_state="failed", next_try=state.now(),
                       error="soc: connection refused", now=state.now())
        auth.add_user(state, USER, auth.hash_password(PASSWORD))
    return Filled(nirs, incidents, hostile, first.id, severities)


@dataclass
class RunningConsole:
    """A console listening on `url`, on the state of `config`."""

    url: str
    config: Config
    filled: Filled
    store: Store

    def state(self) -> StateDB:
        return StateDB.read_only(self.config.watcher.state_dir / DB_NAME)


@asynccontextmanager
async def running_console(folder: Path, analyzer: Analyzer, rng: random.Random,
                          web: str = "") -> AsyncIterator[RunningConsole]:
    """The console of a filled state, served by `watcher.web.app.start` as the daemon serves it
    (on an open writer `Store`), until the block ends."""
    from watcher.web.app import start, stop

    path = write_config(folder, web)
    config = load_config(path)
    filled = fill_state(config.watcher.state_dir, analyzer, rng)
    async with await Store.open(config.watcher.state_dir / DB_NAME) as store:
        runner, console = await start(config, store)
        try:
            assert config.web is not None
            yield RunningConsole(config.web.url.rstrip("/"), config, filled, store)
        finally:
            await stop(runner, console)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def sign_in(session: aiohttp.ClientSession, url: str, user: str = USER,
                  password: str = PASSWORD) -> aiohttp.ClientResponse:
    """GET the sign-in form, POST it (no redirect followed): the answer."""
    async with session.get(f"{url}/login") as page:
        token = csrf_of(await page.text())
    async with session.post(f"{url}/login", data={"csrf": token, "user": user, "password": password},
                            allow_redirects=False) as answer:
        await answer.read()
        return answer


def query(**values: str) -> str:
    return urlencode(values)
