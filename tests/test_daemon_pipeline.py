"""The items of one poll are pipelined: the source fetches the next item while the previous
ones are analysed and recorded (`watcher.polling`: `Poll._take`, `_Window`), and that changes none of what a
poll promises: `max_items` takes exactly that many, a stop or a reload lets the items in flight
be recorded, an item that fails in the window costs the others nothing, and an item met twice
in one poll is taken once."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.daemon import daemon_parts
from tests.support.nirs import random_nir
from watcher.daemon import Daemon
from watcher.polling import PIPELINE_DEPTH
from watcher.sources.base import Item, PollContext, Source
from watcher.sources.directory import DirectoryOptions
from watcher.store import StateDB


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with daemon_parts(tmp_path) as opened:
        yield opened


class Pastes(Source):
    """Yields a text item per id, oldest first, each after asking `ctx.is_seen` as real
    sources do; notes, when it is about to fetch an item, whether the previous one was
    recorded yet, and calls `before(n)` before yielding the n-th (0-based) item."""

    kind = "directory"
    uses_network = False
    Options = DirectoryOptions

    def __init__(self, daemon: Daemon, ids: list[str], *, sources: dict[str, str] | None = None,
                 before: Callable[[int], None] = lambda n: None, max_items: int = 100) -> None:
        super().__init__(replace(daemon.config.sources[0], max_items=max_items))
        self.daemon, self.ids, self.sources, self.before = daemon, ids, sources or {}, before
        self.yielded: list[str] = []
        self.previous_recorded: list[bool] = []

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:  # type: ignore[override]
        store = self.daemon.store
        assert store is not None
        for item_id in self.ids:
            if await ctx.is_seen(item_id):
                continue
            if self.yielded:
                self.previous_recorded.append(await store.is_seen(self.name, self.yielded[-1], ""))
            self.before(len(self.yielded))
            self.yielded.append(item_id)
            yield Item(source=self.sources.get(item_id, self.name), item_id=item_id, url=f"http://paste.example/{item_id}",
                       content=f"paste {item_id}: nothing to see\n".encode())


async def recorded(daemon: Daemon) -> set[str]:
    rows = await daemon.store.call(lambda state: state.db.execute("SELECT item_id FROM items").fetchall())  # type: ignore[union-attr]
    return {row[0] for row in rows}


async def test_the_next_item_is_fetched_while_the_previous_is_analysed(daemon: Daemon) -> None:
    source = Pastes(daemon, [f"p{n}" for n in range(6)])
    ok, _ = await daemon._poll(source, None, 0)
    assert ok
    assert source.previous_recorded == [False] * 5    # each fetch came before its predecessor was recorded
    assert await recorded(daemon) == {f"p{n}" for n in range(6)}    # and every item was, before the poll ended
    assert daemon.counters.items == 6 and daemon.counters.polls == 1


async def test_max_items_takes_exactly_that_many_oldest_first(daemon: Daemon) -> None:
    assert PIPELINE_DEPTH > 3       # the window alone would take more
    source = Pastes(daemon, [f"p{n}" for n in range(10)], max_items=3)
    ok, delay = await daemon._poll(source, None, 0)
    assert ok and source.yielded == ["p0", "p1", "p2"]     # the fourth was never fetched
    assert await recorded(daemon) == {"p0", "p1", "p2"}
    (health,) = await daemon.store.call(StateDB.sources_health)      # type: ignore[union-attr]
    assert "3 new items taken (max_items)" in health["last_notice"]

    source = Pastes(daemon, [f"p{n}" for n in range(10)], max_items=3)     # the next poll goes on from there
    await daemon._poll(source, None, 0)
    assert source.yielded == ["p3", "p4", "p5"]


async def test_a_stop_during_a_poll_records_the_items_in_flight(daemon: Daemon) -> None:

    def stop_after_two(n: int) -> None:
        if n == 2:
            daemon._draining = True                  # what _stop_sources sets for a reload or a stop

    source = Pastes(daemon, [f"p{n}" for n in range(10)], before=stop_after_two)
    ok, _ = await daemon._poll(source, None, 0)
    assert ok and source.yielded == ["p0", "p1", "p2"]     # the item being fetched is taken, no further
    assert await recorded(daemon) == {"p0", "p1", "p2"}    # all in flight, recorded before the poll ended
    (health,) = await daemon.store.call(StateDB.sources_health)      # type: ignore[union-attr]
    assert health["state"] == "ok" and health["next_poll"]           # the poll recorded its outcome
    assert daemon.counters.items == 3


async def test_a_failing_item_in_the_window_costs_the_others_nothing(daemon: Daemon) -> None:
    # p1 belongs to a source the store does not know: its record is refused (KeyError), so it
    # could be neither recorded as done nor as failed and its poll fails, as before the window.
    source = Pastes(daemon, ["p0", "p1", "p2", "p3"], sources={"p1": "ghost"})
    ok, _ = await daemon._poll(source, None, 0)
    assert not ok
    assert {"p0", "p2", "p3"} <= await recorded(daemon)      # the items in the window with it were
    assert "p1" not in await recorded(daemon)
    (health,) = await daemon.store.call(StateDB.sources_health)      # type: ignore[union-attr]
    assert "unknown source 'ghost'" in health["last_error"]
    assert daemon.counters.items == len(await recorded(daemon))      # counted: each one recorded


async def test_an_item_met_twice_in_a_poll_is_taken_once(daemon: Daemon) -> None:
    source = Pastes(daemon, ["p0", "p1", "p0", "p1", "p2"])
    ok, _ = await daemon._poll(source, None, 0)
    assert ok and source.yielded == ["p0", "p1", "p2"]      # the second p0 was in flight, not yet recorded
    assert daemon.counters.items == 3


async def test_the_texts_a_worker_masked_are_stored_masked(daemon: Daemon) -> None:
    """The URL, title and author are masked by the analysis worker (off the daemon's process)
    and stored as such; the store masks them itself when no worker answered for them."""
    nir = random_nir(random.Random(15))
    item = Item(source="inbox", item_id="p9", url=f"http://paste.example/raw/p9?nir={nir}", title=f"dump {nir}",
                author=f"seller {nir}", content=b"nothing to see\n")
    (answer,) = await daemon.pipeline.analyze([item])
    assert answer[1] is not None and not any(nir in text for text in answer[1] if text)
    await daemon.pipeline.record([(item, answer[0])], [answer[1]])                     # type: ignore[list-item]
    await daemon.pipeline.record([(replace(item, item_id="p10"), answer[0])])       # type: ignore[list-item]
    rows = await daemon.store.call(lambda state: state.db.execute(              # type: ignore[union-attr]
        "SELECT item_id, url, title, author FROM items ORDER BY item_id").fetchall())
    assert [row[0] for row in rows] == ["p10", "p9"]
    for row in rows:
        assert not any(nir in (text or "") for text in row) and "[NIR]" in row[2]
