"""First poll and backlog (issue 12, part 7): a poll takes at most `max_items` new items, oldest
first; the rest is taken by the next polls, which come back soon; nothing is dropped, nothing
taken twice. `backfill` bounds how far back the first polls go."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import ConfigError, load_config
from watcher.daemon import Daemon
from watcher.polling import CAPPED_POLL_DELAY
from watcher.store import StateDB

from tests.support.sources import sources_toml
from tests.support.fakesites import PasteSite


def config_for(tmp_path: Path, site: PasteSite, extra: str) -> Path:
    return sources_toml(tmp_path, f'[[sources]]\nname = "paste"\nkind = "listing"\nurl = "{site.url("/archive")}"\n'
                                  f'item_links = "table.archive a"\nitem_url = "{site.url("/raw/{id}")}"\n'
                                  f'interval = "1h"\nallow_private = true\n{extra}')


def recorded(tmp_path: Path) -> set[str]:
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        return {row[0] for row in state.db.execute("SELECT item_id FROM items")}


async def test_a_big_listing_is_taken_max_items_at_a_time_and_nothing_is_lost(tmp_path: Path, paste_site: PasteSite) -> None:
    site = paste_site
    site.pastes.clear()
    for n in range(25):
        site.add_paste(f"p{n:02d}", f"paste {n}")
    config = config_for(tmp_path, site, "max_items = 10")
    taken: list[int] = []
    for _ in range(4):
        before = len([p for p in site.paths() if p.startswith("/raw/")])
        assert await Daemon(load_config(config), once=True, workers=1).run() == 0
        taken.append(len([p for p in site.paths() if p.startswith("/raw/")]) - before)
    assert taken == [10, 10, 5, 0]
    first_ten = [p for p in site.paths() if p.startswith("/raw/")][:10]
    assert first_ten == [f"/raw/p{n:02d}" for n in range(10)]      # the oldest (last on the page) first
    assert recorded(tmp_path) == {f"p{n:02d}" for n in range(25)}
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        notice = state.db.execute("SELECT last_notice FROM sources").fetchone()[0]
    assert "10 new items taken (max_items)" in notice


async def test_a_capped_poll_comes_back_soon(tmp_path: Path, paste_site: PasteSite) -> None:
    site = paste_site
    for n in range(5):
        site.add_paste(f"q{n}", f"paste {n}")
    daemon = Daemon(load_config(config_for(tmp_path, site, "max_items = 2")), once=True, workers=1)
    assert await daemon.run() == 0
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        row = state.db.execute("SELECT last_poll, next_poll FROM sources").fetchone()
    from watcher.timestamps import parse_time
    assert (parse_time(row[1]) - parse_time(row[0])).total_seconds() <= CAPPED_POLL_DELAY * 1.2 + 1   # jittered; not 1 h


def test_max_items_must_be_positive(tmp_path: Path) -> None:
    site = PasteSite()
    site.base_url = "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match=r'key "max_items" must be a positive integer'):
        load_config(config_for(tmp_path, site, "max_items = 0"))


async def test_backfill_skips_what_was_posted_before_it_oldest_first(tmp_path: Path) -> None:
    """A victim feed whose records are dated 1 to 9 days ago, `backfill = "4d"`, two items a
    poll: the 3 records of the last 4 days are analysed (oldest first, across polls); the older
    ones are recorded as seen, without analysis, and never taken again."""
    from datetime import UTC, datetime, timedelta

    from aiohttp import web

    from tests.support.fakesites import FakeSite, serve

    now = datetime.now(UTC)
    records = [{"id": f"v{days}", "victim": f"Mutuelle numero {days}", "description": "MGEN adherents",
                "discovered": (now - timedelta(days=days, hours=1)).strftime("%Y-%m-%d %H:%M:%S")}
               for days in range(1, 10)]

    class Feed(FakeSite):
        def routes(self, router: web.UrlDispatcher) -> None:
            router.add_get("/recent", self.recent)

        async def recent(self, request: web.Request) -> web.Response:
            return web.json_response(records)

    async with serve(Feed()) as site:
        config = sources_toml(tmp_path, f'[[sources]]\nname = "victims"\nkind = "json"\n'
                                        f'endpoint = "{site.url("/recent")}"\nid = "id"\ntitle = "victim"\n'
                                        f'date = "discovered"\nfields = ["victim", "description"]\n'
                                        f'allow_private = true\nbackfill = "4d"\nmax_items = 2\n')
        order: list[list[str]] = []
        for _ in range(3):
            assert await Daemon(load_config(config), once=True, workers=1).run() == 0
            with StateDB(tmp_path / "state" / "watcher.db") as state:
                analysed = [r[0] for r in state.db.execute(
                    "SELECT item_id FROM items WHERE sha256 IS NOT NULL ORDER BY rowid")]
            order.append(analysed)
    assert order[0] == ["v3", "v2"] and order[1] == order[2] == ["v3", "v2", "v1"]
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        unanalysed = {r[0] for r in state.db.execute("SELECT item_id FROM items WHERE sha256 IS NULL")}
        findings = state.findings()
    assert unanalysed == {f"v{days}" for days in range(4, 10)}
    assert len(findings) == 3


def test_backfill_is_a_duration(tmp_path: Path) -> None:
    site = PasteSite()
    site.base_url = "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match=r'key "backfill" must be a positive number of seconds or a duration'):
        load_config(config_for(tmp_path, site, 'backfill = "last week"'))
