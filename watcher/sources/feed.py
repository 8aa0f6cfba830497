"""feed: an RSS (0.9x/1.0/2.0) or Atom feed; each entry's text is a document.

With `follow = true` the page an entry links to is fetched too and is a second document
(item_id = entry id + "#link"), so a failing page is retried without re-sending the entry.
The XML parser resolves no entities and fetches nothing from the network (XXE), and recovers
from broken feeds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup
from lxml import etree

from watcher.sources.base import TEXT_TYPE, Item, PollContext, Source, SourceError, off_loop

log = logging.getLogger(__name__)

_BODY_TAGS = ("encoded", "content", "description", "summary")   # best first


@dataclass(frozen=True)
class Entry:
    """One feed entry."""

    entry_id: str
    title: str
    link: str | None
    text: str


def _local(element: etree._Element) -> str:
    """Tag name without namespace ("" for comments and processing instructions)."""
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _html_text(markup: str) -> str:
    """Visible text of an HTML fragment (plain text stays as is)."""
    if "<" not in markup:
        return markup.strip()
    return BeautifulSoup(markup, "lxml").get_text("\n", strip=True)


def _element_text(element: etree._Element) -> str:
    """Text of an entry's body element: escaped HTML, CDATA, or inline XHTML."""
    if len(element):  # Atom type="xhtml": markup as child elements
        return _html_text(etree.tostring(element, encoding="unicode", method="html"))
    return _html_text(element.text or "")


def _entry_link(entry: etree._Element, base_url: str) -> str | None:
    """RSS <link>text</link> or Atom <link rel="alternate" href=...>."""
    for child in entry:
        if _local(child) != "link":
            continue
        href = child.get("href")
        if href is not None:
            if child.get("rel", "alternate") == "alternate":
                return urljoin(base_url, str(href).strip())
        elif child.text and child.text.strip():
            return urljoin(base_url, str(child.text).strip())
    return None


def parse_entry(entry: etree._Element, base_url: str) -> Entry:
    """Title, link, id and text of an <item> or <entry>."""
    children: dict[str, etree._Element] = {}
    for child in entry:
        children.setdefault(_local(child), child)
    title = _html_text(children["title"].text or "") if "title" in children else ""
    body = next((_element_text(children[t]) for t in _BODY_TAGS if t in children), "")
    link = _entry_link(entry, base_url)
    text = "\n".join(part for part in (title, body) if part)
    guid = children.get("guid") if "guid" in children else children.get("id")
    entry_id = (guid.text or "").strip() if guid is not None else ""
    if not entry_id:
        entry_id = link or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Entry(entry_id=entry_id, title=title, link=link, text=text)


def parse_feed(base_url: str, body: bytes) -> list[Entry]:
    """Entries of an RSS or Atom document (SourceError if it is neither)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True,
                             huge_tree=False, remove_comments=True)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"not an RSS or Atom feed: {exc}") from None
    if root is None or _local(root) not in ("rss", "feed", "RDF", "channel"):
        raise SourceError("not an RSS or Atom feed")
    return [parse_entry(e, base_url) for e in root.iter() if _local(e) in ("item", "entry")]


class FeedSource(Source):
    """An RSS/Atom feed; one document per entry (plus its linked page with `follow`)."""

    kind = "feed"

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield new entries (and, with follow, their pages)."""
        url = self.config.url
        assert url
        response = await self.fetch_page(ctx, url)
        if response is None:
            return
        entries = await off_loop(response.body, partial(parse_feed, response.url))
        failures = 0
        for entry in entries:
            if not await ctx.is_seen(entry.entry_id):
                yield self.item(entry.entry_id, entry.link or response.url, title=entry.title,
                                content=entry.text.encode("utf-8"), content_type=TEXT_TYPE)
            if not self.config.follow or not entry.link:
                continue
            page_id = entry.entry_id + "#link"
            if urlsplit(entry.link).scheme not in ("http", "https") or await ctx.is_seen(page_id):
                continue
            page = await self.fetch_item(ctx, entry.link)
            if page is None:
                failures += 1
                continue
            yield self.item(page_id, page.url, title=entry.title, content=page.body,
                            content_type=page.content_type, truncated=page.truncated)
        if not failures:
            self.remember(ctx, url, response)
