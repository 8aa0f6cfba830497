"""forum: a board page linking to threads; every post of a thread is one document.

Poll: GET the board (conditional), select `thread_links`, walk each thread's pages through
`next_page` (at most `max_pages`), and yield every post (`post`) not seen at its current
version. item_id = thread id + "#" + the post's id attribute (or its index in the thread when it
has none); version = SHA-256 of its text, so an edited post is new again.

Posts cannot be known before their page is fetched, so every thread of a changed board is
walked; an unchanged board (304) costs one request. A thread page that cannot be fetched or
parsed (the page parser's time budget) is skipped, and the board is read in full again at the
next poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from watcher.fetch import Response
from watcher.options import option
from watcher.sources.base import (TEXT_TYPE, Item, PollContext, Source, SourceError, link_id, oldest_first, parse_page,
                                  sha256_hex)
from watcher.sources.links import parse_index
from watcher.sources.threads import ThreadPage, parse_thread_page


DEFAULT_MAX_PAGES = 5


@dataclass(frozen=True)
class ForumOptions:
    """`kind = "forum"`: a board linking to threads of posts."""

    url_key: ClassVar[str | None] = "url"
    thread_links: str = option("selector", required=True, doc="CSS selector of the thread links on the board")
    post: str = option("selector", required=True, doc="CSS selector of one post in a thread page")
    next_page: str | None = option("selector", None, doc="CSS selector of the link to a thread's next page")
    max_pages: int = option("integer", DEFAULT_MAX_PAGES, doc="thread pages walked at most")
    post_date: str | None = option("selector", None, doc="CSS selector, inside a post, of its date "
                                                         "(a datetime or title attribute, else its text)")
    author: str | None = option("selector", None, doc="CSS selector, inside a post, of its author's name")


class ForumSource(Source):
    """A forum board; one document per post."""

    kind = "forum"
    Options = ForumOptions

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the new (or edited) posts of the board's threads."""
        board_url = self.config.url
        assert board_url and self.config.options.thread_links
        board = await self.fetch_page(ctx, board_url)
        if board is None:
            return
        index = await parse_page(ctx, board.body, partial(
            parse_index, self.config.options.thread_links, self.config.expect, board.url))
        self.check_index(ctx, "thread_links", board, index)
        complete = True
        for thread_url, title in oldest_first(index.links):
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
        while url and url not in visited and len(visited) < self.config.options.max_pages:
            visited.add(url)
            response = await self.fetch_item(ctx, url)
            page = None if response is None else await self.thread_page(ctx, url, response)
            if response is None or page is None:
                yield None
                return
            for post in page.posts:
                item_id = f"{thread_id}#{post.post_id or index}"
                index += 1
                version = sha256_hex(post.text)
                if await ctx.is_seen(item_id, version):
                    continue
                anchor = f"#{post.post_id}" if post.post_id else ""
                yield self.item(item_id, response.url + anchor, title=title,
                                content=post.text.encode("utf-8"), content_type=TEXT_TYPE,
                                version=version, truncated=response.truncated, posted_at=post.posted_at,
                                author=post.author)
            url = page.next_url

    async def thread_page(self, ctx: PollContext, url: str, response: Response) -> ThreadPage | None:
        """The parsed thread page; None (in ctx.skipped) when the page parser gave up on it."""
        try:
            return await parse_page(ctx, response.body, partial(
                parse_thread_page, self.config.options.post or "", self.config.options.next_page, response.url,
                date_selector=self.config.options.post_date, author_selector=self.config.options.author))
        except SourceError as exc:
            self.skip(ctx, url, str(exc))
            return None
