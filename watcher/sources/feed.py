"""feed: an RSS (0.9x/1.0/2.0) or Atom feed; each entry's text is a document.

With `follow = true` the page an entry links to is fetched too and is a second document
(item_id = entry id + "#link"), so a failing page is retried without re-sending the entry.
Parsing (watcher.sources.feedparse) runs in the page parser: no entity is expanded, a
document type declaration (where an entity bomb would be) is cut out first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar
from urllib.parse import urlsplit

from watcher.options import option

from watcher.sources.base import TEXT_TYPE, Item, PollContext, Source, oldest_first, parse_page
from watcher.sources.feedparse import FeedPage, parse_feed


@dataclass(frozen=True)
class FeedOptions:
    """`kind = "feed"`: an RSS or Atom feed; each entry is a document."""

    url_key: ClassVar[str | None] = "url"
    follow: bool = option("boolean", False, doc="also fetch the page each entry links to (a second document)")


class FeedSource(Source):
    """An RSS/Atom feed; one document per entry (plus its linked page with `follow`)."""

    kind = "feed"
    Options = FeedOptions

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield new entries (and, with follow, their pages)."""
        url = self.config.url
        assert url
        response = await self.fetch_page(ctx, url)
        if response is None:
            return
        feed = await parse_page(ctx, response.body, partial(parse_feed, response.url, expect=self.config.expect))
        self.check_feed(ctx, response.url, feed)
        failures = 0
        for entry in oldest_first(feed.entries, lambda e: e.published):
            if not await ctx.is_seen(entry.entry_id):
                yield self.item(entry.entry_id, entry.link or response.url, title=entry.title,
                                posted_at=entry.published, author=entry.author,
                                content=entry.text.encode("utf-8"), content_type=TEXT_TYPE)
            if not self.config.options.follow or not entry.link:
                continue
            page_id = entry.entry_id + "#link"
            if urlsplit(entry.link).scheme not in ("http", "https") or await ctx.is_seen(page_id):
                continue
            page = await self.fetch_item(ctx, entry.link)
            if page is None:
                failures += 1
                continue
            yield self.item(page_id, page.url, title=entry.title, content=page.body, posted_at=entry.published,
                            content_type=page.content_type, truncated=page.truncated)   # the entry's date: backfill
        if not failures:
            self.remember(ctx, url, response)

    def check_feed(self, ctx: PollContext, url: str, feed: FeedPage) -> None:
        """Record the feed's health: its entry count; a warning when libxml2 stopped reading
        it, when it lost all its entries since the last poll, or when `expect` matched nothing.
        (An empty feed is not a warning by itself: a search feed may have no result.)"""
        ctx.links = len(feed.entries)
        if feed.cut:
            self.warn(ctx, f"{url}: {feed.cut}")
        if not feed.entries and ctx.previous_links:
            self.warn(ctx, f"{url} has no entry; the last poll found {ctx.previous_links}")
        if feed.expect_missing:
            self.warn(ctx, f"expect {self.config.expect!r} matched nothing on {url}")
