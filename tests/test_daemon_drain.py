"""A reload (SIGHUP) or a stop lets the polls under way finish and record what they learnt.

The flake of `test_retry_after_survives_reload_and_restart[sighup]` had a real cause: a reload
cancelled a poll whose request had reached the site, before the 429 and its Retry-After were
recorded, so the source was polled again at once. Here the site takes a second to answer
429: the SIGHUP lands while the answer is on its way, every time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from aiohttp import web

from tests.support.fakesites import FakeSite, serve
from tests.support.sources import sources_toml
from watcher.config import load_config
from watcher.daemon import Daemon
from watcher.store import StateDB
from watcher.timestamps import parse_time


class SlowLimitedSite(FakeSite):
    """`/limited` answers 429 Retry-After: 3600 after `delay` seconds; `/archive` an empty listing."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/limited", self.limited)
        router.add_get("/archive", self.archive)

    async def limited(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return web.Response(status=429, headers={"Retry-After": "3600"}, text="slow down")

    async def archive(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body><table class='archive'></table></body></html>",
                            content_type="text/html")


async def wait_for(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def block(name: str, url: str) -> str:
    return (f'[[sources]]\nname = "{name}"\nkind = "listing"\nurl = "{url}"\nitem_links = "table.archive a"\n'
            f'interval = 1\nallow_private = true\n')


async def test_a_reload_while_a_429_is_on_its_way_keeps_its_retry_after(tmp_path: Path) -> None:
    async with serve(SlowLimitedSite(delay=1.0)) as site:
        config = sources_toml(tmp_path, block("limited", site.url("/limited")) + block("control", site.url("/archive")))
        daemon = Daemon(load_config(config), workers=1)
        running = asyncio.create_task(daemon.run())
        try:
            await wait_for(lambda: "/limited" in site.paths(), 20, "the first request")
            os.kill(os.getpid(), signal.SIGHUP)          # the 429 is still on its way
            controls = site.paths().count("/archive")
            await wait_for(lambda: site.paths().count("/archive") >= controls + 3, 15, "polls after the reload")
            assert site.paths().count("/limited") == 1
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(running, 30) == 0
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        row = state.db.execute("SELECT last_poll, next_poll, last_error FROM sources WHERE name = 'limited'").fetchone()
    assert (parse_time(row[1]) - parse_time(row[0])).total_seconds() >= 3500 and "rate limited" in row[2]


async def test_a_stop_lets_the_poll_under_way_record_its_outcome(tmp_path: Path) -> None:
    async with serve(SlowLimitedSite(delay=1.0)) as site:
        config = sources_toml(tmp_path, block("limited", site.url("/limited")))
        daemon = Daemon(load_config(config), workers=1)
        running = asyncio.create_task(daemon.run())
        await wait_for(lambda: "/limited" in site.paths(), 20, "the first request")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(running, 30) == 0
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        row = state.db.execute("SELECT next_poll, last_error FROM sources WHERE name = 'limited'").fetchone()
    assert row[0] is not None and "rate limited" in row[1]
