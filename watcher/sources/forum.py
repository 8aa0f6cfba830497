"""forum: a board page linking to threads; every post of a thread is one document.

Poll: GET the board (conditional), select `thread_links`, walk each thread's pages through
`next_page` (at most `max_pages`), and yield every post (`post`) not seen at its current
version. item_id = thread id + "#" + the post's id attribute (or its index in the thread when it
has none); version = SHA-256 of its text, so an edited post is new again.

Posts cannot be known before their page is fetched, so every thread of a changed board is
walked; an unchanged board (304) costs one request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from urllib.parse import urldefrag, urljoin, urlsplit

from bs4 import Tag

from watcher.sources.base import (TEXT_TYPE, Item, PollContext, Source, link_id, off_loop, sha256_hex,
                                  soup, text_of)
from watcher.sources.links import page_links

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadPage:
    """The posts of one thread page, as (id attribute or None, text), and its next page URL."""

    posts: list[tuple[str | None, str]]
    next_url: str | None


def parse_board(selector: str, base_url: str, body: bytes) -> list[tuple[str, str]]:
    """The thread links of a board page."""
    return page_links(selector, base_url, body)


def parse_thread_page(post_selector: str, next_selector: str | None, base_url: str,
                      body: bytes) -> ThreadPage:
    """Posts and the next page link of a thread page."""
    page = soup(body)
    posts: list[tuple[str | None, str]] = []
    for element in page.select(post_selector):
        post_id = element.get("id")
        posts.append((post_id if isinstance(post_id, str) and post_id.strip() else None,
                      text_of(element)))
    next_url = None
    if next_selector:
        link = page.select_one(next_selector)
        anchor = link if link is not None and link.get("href") else (
            link.find("a", href=True) if link is not None else None)
        href = anchor.get("href") if isinstance(anchor, Tag) else None
        if isinstance(href, str) and href.strip():
            candidate = urldefrag(urljoin(base_url, href.strip())).url
            if urlsplit(candidate).scheme in ("http", "https"):
                next_url = candidate
    return ThreadPage(posts, next_url)


class ForumSource(Source):
    """A forum board; one document per post."""

    kind = "forum"

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the new (or edited) posts of the board's threads."""
        board_url = self.config.url
        assert board_url and self.config.thread_links
        board = await self.fetch_page(ctx, board_url)
        if board is None:
            return
        threads = await off_loop(board.body, partial(parse_board, self.config.thread_links, board.url))
        if not threads:
            self.no_links("thread_links", board)
        complete = True
        for thread_url, title in threads:
            walk = self.thread_posts(ctx, thread_url, title)
            async for item in walk:
                if item is None:
                    complete = False
                    continue
                yield item
        if complete:
            self.remember(ctx, board_url, board)

    async def thread_posts(self, ctx: PollContext, thread_url: str,
                           title: str) -> AsyncIterator[Item | None]:
        """New posts of one thread, page after page; a None marks a page that failed."""
        thread_id = link_id(thread_url)
        url: str | None = thread_url
        visited: set[str] = set()
        index = 0
        while url and url not in visited and len(visited) < self.config.max_pages:
            visited.add(url)
            response = await self.fetch_item(ctx, url)
            if response is None:
                yield None
                return
            page = await off_loop(response.body, partial(
                parse_thread_page, self.config.post or "", self.config.next_page, response.url))
            for post_id, text in page.posts:
                item_id = f"{thread_id}#{post_id or index}"
                index += 1
                version = sha256_hex(text)
                if await ctx.is_seen(item_id, version):
                    continue
                anchor = f"#{post_id}" if post_id else ""
                yield self.item(item_id, response.url + anchor, title=title,
                                content=text.encode("utf-8"), content_type=TEXT_TYPE,
                                version=version, truncated=response.truncated)
            url = page.next_url
