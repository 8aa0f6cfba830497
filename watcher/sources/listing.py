"""listing: a paste site's archive page linking to items (pastes).

Poll: GET the listing (conditional), select `item_links`, and for each link not yet seen fetch
the item (`item_url` template or the link itself). With `content`, the document is the text of
the selected elements joined by newlines (UTF-8); otherwise it is the raw item page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from watcher.options import option

from watcher.sources.base import (TEXT_TYPE, Item, PollContext, Source, SourceError, last_segment, link_id,
                                  oldest_first, parse_page)
from watcher.sources.links import page_links, parse_index
from watcher.sources.markup import parse_content


def parse_links(selector: str, base_url: str, body: bytes) -> list[tuple[str, str]]:
    """The item links of a listing page (what bench/bench_daemon.py --profile times)."""
    return page_links(selector, base_url, body)


@dataclass(frozen=True)
class ListingOptions:
    """`kind = "listing"`: an archive page linking to items."""

    url_key: ClassVar[str | None] = "url"
    item_links: str = option("selector", required=True, doc="CSS selector of the item links on the page")
    item_url: str | None = option("template", None, doc="where an item's document is: {id} and/or {href}")
    content: str | None = option("selector", None, doc="CSS selector of the document inside the item page")


class ListingSource(Source):
    """A listing page of items; one document per item."""

    kind = "listing"
    Options = ListingOptions

    def item_url(self, link: str) -> str:
        """The URL to fetch for a listing link: the `item_url` template, or the link."""
        template = self.config.options.item_url
        return template.format(id=last_segment(link), href=link) if template else link

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the listing's new items."""
        url = self.config.url
        assert url and self.config.options.item_links
        page = await self.fetch_page(ctx, url)
        if page is None:
            return
        index = await parse_page(ctx, page.body, partial(
            parse_index, self.config.options.item_links, self.config.expect, page.url))
        self.check_index(ctx, "item_links", page, index)
        failures = 0
        for link, title in oldest_first(index.links):
            item_id = link_id(link)
            if await ctx.is_seen(item_id):
                continue
            item = await self.fetch_one(ctx, item_id, link, title)
            if item is None:
                failures += 1
                continue
            yield item
        if not failures:
            self.remember(ctx, url, page)

    async def fetch_one(self, ctx: PollContext, item_id: str, link: str, title: str) -> Item | None:
        """Fetch one item page and build its Item; None (in ctx.skipped) on failure."""
        url = self.item_url(link)
        response = await self.fetch_item(ctx, url)
        if response is None:
            return None
        if not self.config.options.content:
            return self.item(item_id, response.url, title=title, content=response.body,
                             content_type=response.content_type, truncated=response.truncated)
        try:
            text = await parse_page(ctx, response.body, partial(parse_content, self.config.options.content))
        except SourceError as exc:          # the page parser's time budget: this item only
            self.skip(ctx, url, str(exc))
            return None
        if text is None:
            self.skip(ctx, url, f"content {self.config.options.content!r} matched nothing")
            return None
        return self.item(item_id, response.url, title=title, content=text.encode("utf-8"),
                         content_type=TEXT_TYPE, truncated=response.truncated)
