"""First poll and backlog (issue 12, part 7): a poll takes at most `max_items` new items; the
rest is taken by the next polls, which come back soon; nothing is dropped, nothing taken twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import ConfigError, load_config
from watcher.daemon import CAPPED_POLL_DELAY, Daemon
from watcher.store import StateDB

try:
    from conftest_sources import paste_site, sources_toml  # noqa: F401 (fixture)
    from fakesites import PasteSite
except ImportError:  # tests/ imported as a package
    from tests.conftest_sources import paste_site, sources_toml  # noqa: F401
    from tests.fakesites import PasteSite


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
