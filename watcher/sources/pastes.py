"""Pastes linked from fetched content: PrivateBin links opened and decrypted as child
documents, and links to the hosts a source's `follow_links` lists fetched as such.

Leaks are often posted as a PrivateBin link in a forum post, a Telegram message or a feed
entry: the server holds only ciphertext, the key is the link's `#fragment`. For every item a
network source yields, `linked_pastes` finds such links in its content and yields one child
Item per paste, decrypted (`watcher.privatebin`), so the daemon analyses it like any document
(item_id = the parent's + "#privatebin:" + the paste id; url without the fragment: the key is
never stored, logged or shown), and one per attachment (a CSV, a zip: analysed as files).
A burn-after-reading link (`#-`) is never opened: opening
destroys it for the people it was meant for, and shows the monitor to the poster; it is
reported as a skipped item instead. The fetch is the source's fetcher's (Tor, private
addresses, caps), with the JSON API's headers; the source's own headers go only to its own
hosts, as always. `paste_items` makes the items of one paste: the `privatebin` source kind
(watcher.sources.privatebin_index) makes its items with it too.

`follow_links = ["pastebin.com", "rentry.co"]` (a host allow-list; subdomains included) makes
every http(s) link to those hosts in an item a child document too (`item_id` = the parent's +
"#link:" + the URL), fetched by the source's fetcher: its politeness, caps and address rules
(its headers go to its own hosts only).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from watcher.fetch import FetchError, RetryLater
from watcher.privatebin import PasteError, PasteLink, fetch_paste, find_links
from watcher.sources.base import TEXT_TYPE, Item, PollContext

log = logging.getLogger(__name__)

SCAN_BYTES = 4 * 1024 * 1024    # links are looked for in the first 4 MiB of a document
MAX_LINKS = 20                  # pastes opened per document at most


_URL = re.compile(r"https?://[^\s\"'<>()\[\]{}]{1,2000}")


def followed_links(item: Item, hosts: tuple[str, ...]) -> list[str]:
    """The links of the item's content to `hosts` (or their subdomains), distinct, at most
    MAX_LINKS, without their #fragment; never the item's own URL."""
    if not hosts or not item.content:
        return []
    text = item.content[:SCAN_BYTES].decode("utf-8", "replace")
    found: dict[str, None] = {}
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?").split("#", 1)[0]
        try:
            host = (urlsplit(url).hostname or "").lower().rstrip(".")
        except ValueError:
            continue
        if url != item.url and any(host == h or host.endswith("." + h) for h in hosts):
            found.setdefault(url, None)
            if len(found) >= MAX_LINKS:
                break
    return list(found)


async def followed_documents(ctx: PollContext, item: Item, hosts: tuple[str, ...]) -> AsyncIterator[Item]:
    """Child items of the links to `hosts` in `item` (new ones only); a link that cannot be
    fetched is a skipped item (retried at the next poll)."""
    if ctx.fetcher is None:
        return
    for url in followed_links(item, hosts):
        item_id = f"{item.item_id}#link:{url}"
        if await ctx.is_seen(item_id):
            continue
        try:
            response = await ctx.fetcher.get(url)
        except RetryLater:
            raise
        except FetchError as exc:
            ctx.skipped.append((url, str(exc)))
            continue
        yield Item(source=item.source, item_id=item_id, url=response.url, title=f"linked from {item.title or item.url}",
                   content=response.body, content_type=response.content_type, truncated=response.truncated)


# What every PrivateBin link holds (`?` or `?pasteid=`, then the 16-hex paste id): searched in
# the bytes first, so the pages of a poll that hold none (almost all) are not decoded and
# scanned for links on the event loop.
_PASTE_ID = re.compile(rb"\?(?:pasteid=)?[a-f0-9]{16}")


def paste_links(item: Item) -> list[PasteLink]:
    """The PrivateBin links in the first SCAN_BYTES of the item's content, distinct by paste."""
    if not item.content or not _PASTE_ID.search(item.content, 0, SCAN_BYTES):
        return []
    text = item.content[:SCAN_BYTES].decode("utf-8", "replace")
    links: dict[str, PasteLink] = {}
    for link in find_links(text):
        links.setdefault(link.url, link)
    return list(links.values())[:MAX_LINKS]


async def linked_pastes(ctx: PollContext, item: Item, max_bytes: int) -> AsyncIterator[Item]:
    """Child items of the pastes `item` links to (new ones only); burn links are skipped."""
    if ctx.fetcher is None:
        return
    for link in paste_links(item):
        item_id = f"{item.item_id}#privatebin:{link.paste_id}"
        title = f"PrivateBin paste linked from {item.title or item.url}"
        try:
            children = await paste_items(ctx, link, source=item.source, item_id=item_id, title=title,
                                         max_bytes=max_bytes)
        except RetryLater:
            raise
        except (FetchError, PasteError) as exc:
            ctx.skipped.append((link.url, f"PrivateBin paste: {exc}"))
            continue
        for child in children:
            yield child


async def paste_items(ctx: PollContext, link: PasteLink, *, source: str, item_id: str, title: str,
                      max_bytes: int) -> list[Item]:
    """The documents of the paste `link` opens, as items of `source`: its text (`item_id`,
    `title`, url without the fragment), then each attachment (`<item_id>/attachment-N`: a CSV,
    a zip, analysed as files); [] when `item_id` was seen.

    A burn-after-reading link raises PasteError before anything is asked (not even whether it
    was seen); a paste that cannot be opened (a password, an unknown id, not PrivateBin)
    raises PasteError, a failed fetch FetchError/RetryLater. The key is in no item field.
    """
    if link.burn:
        raise PasteError("burn-after-reading link: never opened")
    if ctx.fetcher is None or await ctx.is_seen(item_id):
        return []
    paste = await fetch_paste(ctx.fetcher, link, max_bytes=max_bytes)
    items = [Item(source=source, item_id=item_id, url=link.url, title=title,
                  content=paste.text.encode("utf-8"), content_type=TEXT_TYPE)]
    items += [Item(source=source, item_id=f"{item_id}/attachment-{number}", url=link.url,
                   title=f"{name} (attachment of a PrivateBin paste)", content=data)
              for number, (name, data) in enumerate(paste.attachments, 1)]
    return items
