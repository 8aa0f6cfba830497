"""Fixtures and helpers for the config/fetch/sources tests.

The helpers are imported (`from tests.support.sources import fetcher`); the fixtures (`paste_site`,
`foreign_site`, `forum_site`, `feed_site`, `api_site`, `socks_proxy`) reach every test: tests/conftest.py
registers this module as a plugin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from watcher.config import Address, SourceConfig, TorSettings, load_config
from watcher.fetch import Fetcher, FetchSettings
from watcher.sources import Item, PollContext, Source

from tests.support.fakesites import ApiSite, FeedSite, ForumSite, PasteSite, serve
from tests.support.socksproxy import SocksProxy


class SeenStore:
    """The daemon's seen-items table, as a set: `PollContext(fetcher, store)`."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    async def __call__(self, item_id: str, version: str = "") -> bool:
        return (item_id, version) in self.seen

    def mark(self, items: Iterable[Item]) -> None:
        """Record items as processed (what the daemon does after scanning them)."""
        self.seen.update((item.item_id, item.version) for item in items)


def source_config(name: str = "test", kind: str = "listing", **fields: Any) -> SourceConfig:
    """A SourceConfig without going through TOML (allowed to reach the loopback fake sites):
    the fields of the kind's options (`item_links=...`) go to `options`, the others to the
    SourceConfig itself."""
    from dataclasses import fields as dataclass_fields

    from watcher.sources import SOURCE_CLASSES

    options_class = SOURCE_CLASSES[kind].Options
    names = {f.name for f in dataclass_fields(options_class)}
    # Required options a test does not care about (a fetcher test's listing) get a neutral value.
    neutral = {"selector": "a", "dotted": "id", "read_path": Path("."), "path": Path(".")}
    given = {k: v for k, v in fields.items() if k in names}
    for f in dataclass_fields(options_class):
        meta = f.metadata.get("option")
        if meta is not None and meta.required and f.name not in given:
            given[f.name] = neutral[meta.reader]
    options = options_class(**given)
    common = {k: v for k, v in fields.items() if k not in names}
    return replace(SourceConfig(name=name, kind=kind, allow_private=True), options=options, **common)


def sources_toml(tmp_path: Path, sources: str) -> Path:
    """`tmp_path/sources.toml`: the state in ./state, then `sources` (TOML text of the
    [[sources]] tables) - what the daemon tests load."""
    path = tmp_path / "sources.toml"
    path.write_text(f'[watcher]\nstate_dir = "./state"\n\n{sources}\n', encoding="utf-8")
    return path


def load_source(tmp_path: Path, sources: str) -> SourceConfig:
    """The first source of `sources_toml(tmp_path, sources)`, as load_config reads it."""
    return load_config(sources_toml(tmp_path, sources), environ={}).sources[0]


def tor_settings(proxy: SocksProxy) -> TorSettings:
    """TorSettings pointing at the test SOCKS proxy."""
    return TorSettings(Address("127.0.0.1", proxy.port))


def fetcher(name: str = "test", **fields: Any) -> Fetcher:
    """A Fetcher with FetchSettings(name=name, **fields), allowed to reach the loopback fake
    sites (use with `async with`)."""
    return Fetcher(FetchSettings(name=name, **{"allow_private": True, **fields}))


async def poll_all(source: Source, ctx: PollContext, store: SeenStore | None = None) -> list[Item]:
    """Run one poll to the end; mark the items seen in `store` like the daemon would."""
    items = [item async for item in source.poll(ctx)]
    if store is not None:
        store.mark(items)
    return items


@pytest.fixture
async def paste_site() -> AsyncIterator[PasteSite]:
    async with serve(PasteSite()) as site:
        yield site


@pytest.fixture
async def forum_site() -> AsyncIterator[ForumSite]:
    async with serve(ForumSite()) as site:
        yield site


@pytest.fixture
async def feed_site() -> AsyncIterator[FeedSite]:
    async with serve(FeedSite()) as site:
        yield site


@pytest.fixture
async def api_site() -> AsyncIterator[ApiSite]:
    async with serve(ApiSite()) as site:
        yield site


@pytest.fixture
async def foreign_site() -> AsyncIterator[PasteSite]:
    """A second paste site: the foreign host a page of `paste_site` names (reach it as
    `localhost`, another host name for the same loopback interface)."""
    async with serve(PasteSite()) as site:
        yield site


@pytest.fixture
async def socks_proxy(paste_site: PasteSite) -> AsyncIterator[SocksProxy]:
    """A SOCKS5 proxy that alone knows examplepaste.onion (and clearnet.example): both are the
    paste site; nothing else resolves."""
    port = int(paste_site.base_url.rsplit(":", 1)[1])
    hosts = {"examplepaste.onion": ("127.0.0.1", port), "clearnet.example": ("127.0.0.1", port)}
    async with SocksProxy(hosts=hosts) as proxy:
        yield proxy
