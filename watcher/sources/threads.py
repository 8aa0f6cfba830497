"""A forum thread page: its posts and its next page (pure; run in the page-parser process).

Through bs4, whose lxml tree builder has no depth limit: a post nested 1,000 levels deep is
found like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from bs4 import Tag

from watcher.sources.markup import http_link, soup, text_of


@dataclass(frozen=True)
class Post:
    """One post: its id attribute (or None), text, and its own date and author when the
    forum's `post_date` / `author` selectors find them inside it."""

    post_id: str | None
    text: str
    posted_at: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class ThreadPage:
    """The posts of one thread page and its next page URL."""

    posts: list[Post]
    next_url: str | None


def parse_thread_page(post_selector: str, next_selector: str | None, base_url: str,
                      body: bytes, date_selector: str | None = None, author_selector: str | None = None) -> ThreadPage:
    """Posts and the next page link of a thread page."""
    page = soup(body)
    posts: list[Post] = []
    for element in page.select(post_selector):
        post_id = element.get("id")
        posts.append(Post(post_id if isinstance(post_id, str) and post_id.strip() else None, text_of(element),
                          _inside(element, date_selector, ("datetime", "title", "data-time")),
                          _inside(element, author_selector, ())))
    next_url = None
    if next_selector:
        link = page.select_one(next_selector)
        anchor = link if link is not None and link.get("href") else (
            link.find("a", href=True) if link is not None else None)
        next_url = http_link(base_url, anchor.get("href") if isinstance(anchor, Tag) else None)
    return ThreadPage(posts, next_url)


def _inside(post: Tag, selector: str | None, attributes: tuple[str, ...]) -> str | None:
    """The first element `selector` finds inside `post`: one of its `attributes` (a <time>'s
    datetime), else its text, on one line of at most 200 characters; None when absent."""
    if not selector:
        return None
    found = post.select_one(selector)
    if found is None:
        return None
    for attribute in attributes:
        value = found.get(attribute)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:200]
    text = " ".join(found.get_text(" ").split())[:200]
    return text or None
