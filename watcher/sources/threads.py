"""A forum thread page: its posts and its next page (pure; run in the page-parser process).

Through bs4, whose lxml tree builder has no depth limit: a post nested 1,000 levels deep is
found like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from bs4 import Tag

from watcher.sources.markup import http_link, soup, text_of


@dataclass(frozen=True)
class ThreadPage:
    """The posts of one thread page, as (id attribute or None, text), and its next page URL."""

    posts: list[tuple[str | None, str]]
    next_url: str | None


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
        next_url = http_link(base_url, anchor.get("href") if isinstance(anchor, Tag) else None)
    return ThreadPage(posts, next_url)
