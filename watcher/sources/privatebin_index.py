"""privatebin: a page that lists PrivateBin links; one document per paste, decrypted.

A PrivateBin instance has no public list of its pastes (the server cannot read them, and
does not show what it holds). What exists are pages that list paste links: an index page
some instances or forks offer, a curated index, a forum thread. So `url` is such a page,
polled like a listing (a conditional GET), and every PrivateBin link on it
(`https://host/?<16 hex id>#<key>`, any instance) is one item:

    [[sources]]
    name = "leak-index"
    kind = "privatebin"
    url = "http://exampleindex.onion/pastes"
    tor = true
    item_links = "td.paste a"     # optional: the links read (default every a[href]); the
                                  # PrivateBin links in the page's text are read too

A new paste (`ctx.is_seen`) is fetched from its instance's JSON API (`X-Requested-With:
JSONHttpRequest`, through the source's fetcher: its Tor use, address rules and caps; its
configured headers only to its own hosts) and decrypted (watcher.privatebin); its document is
the paste's text, each attachment a document of its own (`watcher.sources.pastes.paste_items`,
which opens pastes linked from any item too). Item id: `<paste id>@<host[:port]>`; url: the
link without its fragment; title: "PrivateBin paste <id> on <host>". The key (the fragment)
is in no item field, log line or error.

Not opened, reported as skipped items: a burn-after-reading link (`#-`: opening destroys it
for the people it was meant for, and shows the monitor to the poster), and a paste this key
does not open (one protected by a password: the format does not say, decryption fails and
the error says it may need one; an unknown or expired id). Those are not retried until the
page changes; a failed fetch is (the page's validators are then not kept). `max_items` caps
a poll as for every kind (the daemon stops taking items there; the rest at the next polls).

The page is parsed in the page-parser process (`watcher.sources.privatebin_page`, a module of
its own because unpickling a function there imports its module, and this one brings the
HTTP client and the decryption). A page with no PrivateBin link warns (the source is
degraded) when it looks like a login or challenge page or the last poll found some.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar
from urllib.parse import urlsplit

from watcher.fetch import FetchError, Response, RetryLater
from watcher.options import option
from watcher.privatebin import PasteError, PasteLink, find_links
from watcher.sources.base import Item, PollContext, Source, parse_page
from watcher.sources.pastes import SCAN_BYTES, paste_items
from watcher.sources.privatebin_page import LinkPage, parse_link_page

log = logging.getLogger(__name__)

MAX_PASTES = 1000           # pastes read per page at most (each one is a seen check)


@dataclass(frozen=True)
class PrivateBinOptions:
    """`kind = "privatebin"`: a page listing PrivateBin links; one document per paste."""

    url_key: ClassVar[str | None] = "url"
    item_links: str = option("selector", "a[href]", doc="CSS selector of the links read on the page "
                                                        "(the PrivateBin links in its text are read too)")


def page_paste_links(page: LinkPage) -> list[PasteLink]:
    """The PrivateBin links of the selected hrefs, then of the page's text (its first
    SCAN_BYTES characters), distinct by paste (the first key wins), MAX_PASTES at most."""
    links: dict[str, PasteLink] = {}
    for link in find_links("\n".join(page.hrefs)) + find_links(page.text[:SCAN_BYTES]):
        links.setdefault(link.url, link)
    return list(links.values())[:MAX_PASTES]


def paste_host(link: PasteLink) -> str:
    """The host[:port] of a paste link, lower case (an item id is per host)."""
    return urlsplit(link.url).netloc.lower()


class PrivateBinSource(Source):
    """A page of PrivateBin links; one document per paste (and per attachment)."""

    kind = "privatebin"
    Options = PrivateBinOptions

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the new pastes the page links to, in page order (a page of PrivateBin links, a
        thread or a curated index, has no dates and no newest-first habit to reverse)."""
        url = self.config.url
        assert url
        response = await self.fetch_page(ctx, url)
        if response is None:
            return
        page = await parse_page(ctx, response.body, partial(
            parse_link_page, self.config.options.item_links, self.config.expect, response.url))
        links = page_paste_links(page)
        self.check_links(ctx, response, page, links)
        failures = 0
        for link in links:
            try:
                items = await paste_items(ctx, link, source=self.name, item_id=f"{link.paste_id}@{paste_host(link)}",
                                          title=f"PrivateBin paste {link.paste_id} on {paste_host(link)}",
                                          max_bytes=self.config.max_bytes)
            except RetryLater:
                raise
            except FetchError as exc:
                failures += 1
                self.skip(ctx, link.url, f"PrivateBin paste: {exc}")
                continue
            except PasteError as exc:           # not retried until the page changes
                log.warning("source %s: PrivateBin paste %s not opened: %s", self.name, link.url, exc)
                ctx.skipped.append((link.url, f"PrivateBin paste: {exc}"))
                continue
            for item in items:
                yield item
        if not failures:
            self.remember(ctx, url, response)

    def check_links(self, ctx: PollContext, response: Response, page: LinkPage, links: list[PasteLink]) -> None:
        """Record the page's link count; warn when it has none and looks like a wall or had
        some at the last poll, when it is cut, and when `expect` matched nothing."""
        ctx.links = len(links)
        last = f"; the last poll found {ctx.previous_links}" if ctx.previous_links else ""
        if not links and (page.wall or ctx.previous_links):
            self.warn(ctx, f"no PrivateBin link on {response.url}{': ' + page.wall if page.wall else ''}{last}")
        if len(links) >= MAX_PASTES:
            self.warn(ctx, f"{response.url}: only the first {MAX_PASTES} PrivateBin links are read")
        if response.truncated:
            self.warn(ctx, f"{response.url} was cut at max_bytes: links after the cut are missed")
        if page.expect_missing:
            self.warn(ctx, f"expect {self.config.expect!r} matched nothing on {response.url}")
