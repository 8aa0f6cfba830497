"""kill -9 loses nothing: a REAL daemon (`python -m watcher run`) killed at random moments.

A paste site on loopback lists 300 pastes (30 of them critical CSVs, each with its own 10
synthetic NIRs; every raw paste answers after 10 ms, so a pass takes seconds). Alerts go to a
real JSON receiver (apprise `json://`) that is slow and refuses one post in three, so alerts
stay pending across kills. The daemon (its own session, with a marker in its environment
that its workers and multiprocessing's resource tracker inherit) is SIGKILLed 10 times, at
random moments or just as an alert is in flight, and restarted each time; then a last run is
left to finish and is stopped with SIGTERM.

Checked: the last run ends with SIGTERM and status 0, no traceback in any run's log; every
paste is stored exactly once in `items`; every critical paste is one finding
with one alert, which the receiver got (by the Alert ID the payload carries; duplicates,
allowed for an alert in flight at a kill, are counted and printed); `PRAGMA integrity_check`
is ok; and no process of a killed daemon (workers, resource tracker) is left a second after
each kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.fakesites import PasteSite, serve
from tests.support.hostile import Leftover, processes_with
from tests.support.receivers import JsonReceiver
from tests.support.e2e import Leaks, listing_block, wait_until, write_config
from tests.support.daemon import child_env, db_rows

PASTES = 300
CRITICAL_EVERY = 10             # one paste in ten is a critical CSV
KILLS = 10
PASTE_DELAY = 0.01              # seconds each raw paste takes to answer
POST_DELAY = 0.1                # seconds the receiver takes per post
ORPHAN_GRACE = 1.0              # seconds a killed daemon's children get to go away
FINISH_TIMEOUT = 90.0
ALERT_ID = re.compile(r"Alert ID: (\S+)")


class FlakyReceiver(JsonReceiver):
    """A slow JSON receiver refusing one post in three (503); `arrived` is set as soon as a
    post was read whole, POST_DELAY before it is answered: a kill then leaves it accepted by
    the receiver but not known as delivered by the daemon."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()            # kept by aiohttp for the parent's request.json()
        self.arrived.set()
        await asyncio.sleep(POST_DELAY)
        self.failing = self.attempts % 3 == 2
        return await super()._handle(request)

    def alert_ids(self) -> Counter[str]:
        """How many times each Alert ID was accepted."""
        return Counter(match.group(1) for post in self.posts if (match := ALERT_ID.search(post.message)))


def publish(site: PasteSite, leaks: Leaks) -> set[str]:
    """PASTES pastes, slow to fetch; the ids of the critical ones."""
    critical = set()
    for n in range(PASTES):
        paste_id = f"p{n:03d}"
        if n % CRITICAL_EVERY == 0:
            site.add_paste(paste_id, leaks.critical_csv(10), f"dump {n}")
            critical.add(paste_id)
        else:
            site.add_paste(paste_id, Leaks.clean_text(), f"notes {n}")
        site.slow[paste_id] = PASTE_DELAY
    return critical


def alerts_block(receiver: JsonReceiver) -> str:
    """Alerts to the receiver, retried every 1-2 s, never given up on."""
    return (f'[alerts]\nurls = ["{receiver.url("hook")}"]\njsonl = false\nmax_tries = 1000\n'
            'retry_after = "1s"\nretry_max = "2s"\n\n')


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database, timeout=10) as conn:
        return conn.execute(sql).fetchall()


@contextlib.asynccontextmanager
async def daemon(config: Path, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`watcher run` (not --once) in its own session, its log appended to daemon.log; the
    session is killed if the daemon still runs at the end of the block (a failed test)."""
    with (config.parent / "daemon.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watcher", "run", "--config", str(config), cwd=config.parent, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def leftovers_after(marker: str, *needles: str) -> list[Leftover]:
    """The processes of a stopped daemon still there after ORPHAN_GRACE; killed (by pid) so the
    next round starts clean."""
    await asyncio.sleep(ORPHAN_GRACE)
    left = processes_with(marker, *needles)
    for process in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    return left


async def kill_at_a_random_moment(proc: asyncio.subprocess.Process, receiver: FlakyReceiver,
                                  rng: random.Random) -> str:
    """SIGKILL the daemon (only it: its children are left to fend for themselves) after a
    random delay, or right as an alert post is in flight; what moment it was."""
    if rng.random() < 0.3:
        receiver.arrived.clear()
        try:
            await asyncio.wait_for(receiver.arrived.wait(), 4)
            moment = "alert in flight"
        except TimeoutError:
            moment = "no alert within 4 s"
    else:
        delay = rng.uniform(0.5, 4.0)
        await asyncio.sleep(delay)
        moment = f"{delay:.1f} s after start"
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()
    return moment


@pytest.mark.slow
async def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(20261206)
    leaks = Leaks(seed=11)
    receiver = FlakyReceiver()
    await receiver.start()
    try:
        async with serve(PasteSite()) as site:
            critical = publish(site, leaks)
            config = write_config(tmp_path, alerts_block(receiver) + listing_block(
                "paste", site.url("/archive"), site.url("/raw/{id}"), interval=1))
            state = tmp_path / "state"
            marker = f"LEAK_WATCHER_KILL_LOOP={tmp_path}"
            env = child_env(dict([marker.split("=", 1)]))
            needles = (str(config), str(state))
            orphans: dict[str, list[Leftover]] = {}
            moments = []

            for round_no in range(KILLS):
                async with daemon(config, env) as proc:
                    moments.append(moment := await kill_at_a_random_moment(proc, receiver, rng))
                if left := await leftovers_after(marker, *needles):
                    orphans[f"kill {round_no + 1} ({moment})"] = left
            killed_at = time.monotonic()

            log = tmp_path / "daemon.log"
            readies = log.read_text(errors="replace").count('msg="daemon ready"')
            async with daemon(config, env) as proc:
                def finished() -> bool:
                    assert proc.returncode is None, f"the daemon exited with {proc.returncode}"
                    done = db_rows(state, "SELECT (SELECT count(*) FROM items), "
                                          "(SELECT count(*) FROM alerts WHERE state != 'sent')")
                    # ready first: the previous rounds may have done it all, and a SIGTERM in the
                    # interpreter's own start (before any handler) is a kill by signal
                    ready = log.read_text(errors="replace").count('msg="daemon ready"') > readies
                    return ready and done == [(PASTES, 0)] and len(receiver.alert_ids()) >= len(critical)

                await wait_until(finished, FINISH_TIMEOUT, "every paste stored and every alert sent")
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 15) == 0
            if left := await leftovers_after(marker, *needles):
                orphans["after SIGTERM"] = left
    finally:
        await receiver.stop()
    database = state / "watcher.db"
    assert "Traceback" not in (tmp_path / "daemon.log").read_text(encoding="utf-8", errors="replace")

    # every paste stored exactly once; every critical one is one finding with one alert
    items = query(database, "SELECT item_id, count(*) FROM items WHERE source = 'paste' GROUP BY item_id")
    assert sorted(items) == [(f"p{n:03d}", 1) for n in range(PASTES)]
    links = query(database, "SELECT item_id, count(*) FROM item_findings GROUP BY item_id")
    assert sorted(links) == sorted((paste_id, 1) for paste_id in critical)
    alerts = query(database, "SELECT a.alert_id, a.state FROM findings AS f "
                             "LEFT JOIN alerts AS a ON a.finding_id = f.id AND a.kind = 'new'")
    assert len(alerts) == len(critical) and all(state == "sent" for _, state in alerts), alerts

    # the receiver got each of them (a duplicate is an alert in flight at a kill)
    received = receiver.alert_ids()
    missing = {alert_id for alert_id, _ in alerts} - set(received)
    assert not missing, f"{len(missing)} alerts never reached the receiver"
    duplicates = sum(received.values()) - len(received)
    print(f"\nkill loop: {KILLS} kills ({'; '.join(moments)}) in {killed_at - started:.1f} s, last run "
          f"{time.monotonic() - killed_at:.1f} s; {len(alerts)} alerts, {duplicates} duplicate posts, "
          f"{receiver.attempts} delivery attempts")

    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    assert not orphans, "processes left after a kill:\n" + "\n".join(
        f"  {when}: {process.pid} {process.cmdline[:120]}" for when, left in orphans.items() for process in left)
