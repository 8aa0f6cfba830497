"""listing: a paste site's archive page linking to items (pastes).

Poll: GET the listing (conditional), select `item_links`, and for each link not yet seen fetch
the item (`item_url` template or the link itself). With `content`, the document is the text of
the selected elements joined by newlines (UTF-8); otherwise it is the raw item page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial

from bs4 import Tag

from watcher.sources.base import TEXT_TYPE, Item, PollContext, Source, last_segment, link_id, off_loop, soup
from watcher.sources.links import page_links

log = logging.getLogger(__name__)


def parse_links(selector: str, base_url: str, body: bytes) -> list[tuple[str, str]]:
    """The item links of a listing page."""
    return page_links(selector, base_url, body)


def parse_content(selector: str, body: bytes) -> str | None:
    """Text of the elements matching `selector`, joined by newlines; None if none match."""
    elements = soup(body).select(selector)
    if not elements:
        return None
    return "\n".join(element_text(e) for e in elements)


def element_text(element: Tag) -> str:
    """Exact text of preformatted elements (syntax highlighters split them in spans); text
    nodes on separate lines for the others (so table cells do not run together)."""
    if element.name in ("pre", "code", "textarea", "plaintext", "xmp"):
        return element.get_text()
    return element.get_text("\n")


class ListingSource(Source):
    """A listing page of items; one document per item."""

    kind = "listing"

    def item_url(self, link: str) -> str:
        """The URL to fetch for a listing link: the `item_url` template, or the link."""
        template = self.config.item_url
        return template.format(id=last_segment(link), href=link) if template else link

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the listing's new items."""
        url = self.config.url
        assert url and self.config.item_links
        page = await self.fetch_page(ctx, url)
        if page is None:
            return
        links = await off_loop(page.body, partial(parse_links, self.config.item_links, page.url))
        if not links:
            self.no_links("item_links", page)
        failures = 0
        for link, title in links:
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
        """Fetch one item page and build its Item; None (logged) on failure."""
        url = self.item_url(link)
        response = await self.fetch_item(ctx, url)
        if response is None:
            return None
        if not self.config.content:
            return self.item(item_id, response.url, title=title, content=response.body,
                             content_type=response.content_type, truncated=response.truncated)
        text = await off_loop(response.body, partial(parse_content, self.config.content))
        if text is None:
            log.warning("source %s: item %s skipped (retried next poll): content %r matched nothing",
                        self.name, url, self.config.content)
            return None
        return self.item(item_id, response.url, title=title, content=text.encode("utf-8"),
                         content_type=TEXT_TYPE, truncated=response.truncated)
