"""telegram: a public Telegram channel, read from its web preview `https://t.me/s/<channel>`
(no account, no API key; through Tor or clearnet like any page). One document per message.

The preview page shows the newest messages; older ones are on `?before=<id>` pages. A poll
reads the newest page (a conditional GET), then older pages while none of a page's messages
was seen before, `depth` pages at most: the first poll reads the newest page and `depth` older
ones, later polls only what is new (one request when less than a page was posted). The
messages are yielded oldest first once every page was read, so a poll cut short (a 429) marks
nothing seen and leaves no gap behind it. An older page that could not be fetched is reported
skipped and the poll yields what it read; the page's validators are then not kept, so the
next poll reads the newest page in full again.

A message is the item `<channel>/<id>`; its version is a hash of its text and files, so an
edited message is new content. Its document is a short header (channel, date, link, the
files it names) and its text, as UTF-8 text; a message with neither text nor file (a photo,
a sticker) has nothing to scan and is left out. Files are named, never downloaded:
attached documents (title and size) and links to files (a file-sharing host, or a name
with a data or archive extension: watcher.sources.telegram_page).

A channel without a public preview (private, or no such channel) redirects away from `/s/`:
the poll fails and says so. A page that is not a channel preview (a login or challenge page,
a layout change) makes the source degraded.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from watcher.extract.html import looks_like_html
from watcher.fetch import Response
from watcher.options import option
from watcher.sources.base import TEXT_TYPE, Item, PollContext, Source, parse_page, sha256_hex
from watcher.sources.errors import SourceError
from watcher.sources.telegram_page import ChannelPage, Message, parse_channel_page

TELEGRAM_PREVIEW = "https://t.me/s/{channel}"
TITLE_CHARS = 100                 # an item's title: the first line of the message, cut here
MAX_DEPTH = 50                    # older pages a poll may walk (20 messages each on t.me)
_CHANNEL = re.compile(r"[A-Za-z0-9_]{1,64}")


@dataclass(frozen=True)
class TelegramOptions:
    """`kind = "telegram"`: a public channel's web preview; one document per message."""

    url_key: ClassVar[str | None] = None     # the page is `url`, else derived from `channel`

    channel: str = option("string", required=True,
                          doc="the channel's public username, as in https://t.me/<channel> (letters, digits, _)")
    url: str | None = option("url", None, doc="the preview page to read instead of https://t.me/s/<channel> "
                                              "(a mirror, an onion front); its ?before= pages on the same host")
    depth: int = option("integer", 3, minimum=0, doc="older pages (?before=) a poll reads at most while their "
                                                    "messages are all new (0: the newest page only)")

    def __post_init__(self) -> None:
        if not _CHANNEL.fullmatch(self.channel):
            raise ValueError(f"channel must be a public channel username (letters, digits and _, "
                             f"without @ or https://t.me/), not {self.channel!r}")
        if not 0 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth must be 0 to {MAX_DEPTH} older pages, not {self.depth!r}")

    @property
    def page_url(self) -> str:
        """The preview page: `url`, else https://t.me/s/<channel>."""
        return self.url or TELEGRAM_PREVIEW.format(channel=quote(self.channel))


class TelegramSource(Source):
    """A public Telegram channel's messages, from its web preview pages."""

    kind = "telegram"
    Options = TelegramOptions

    @property
    def options(self) -> TelegramOptions:
        """The kind's options."""
        options = self.config.options
        if not isinstance(options, TelegramOptions):
            raise SourceError(f"source {self.name}: no telegram options (channel) in its configuration")
        return options

    @property
    def page_url(self) -> str:
        """The newest page: the source's `url`, else the options' (`url`, or t.me/s/<channel>)."""
        return self.config.url or self.options.page_url

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the channel's new messages, oldest first."""
        url = self.page_url
        response = await self.fetch_page(ctx, url)
        if response is None:
            return
        page = await self.read_page(ctx, url, response)
        ctx.links = len(page.messages)
        messages = {m.post_id: m for m in page.messages}
        complete = await self.walk_older(ctx, url, page, messages)
        for message in sorted(messages.values(), key=lambda m: m.post_id):
            item = self.message_item(message)
            if item is not None and not await ctx.is_seen(item.item_id, item.version):
                yield item
        if complete:
            self.remember(ctx, url, response)

    async def read_page(self, ctx: PollContext, url: str, response: Response) -> ChannelPage:
        """The newest page's messages; SourceError when the channel has no public preview (a
        redirect away from /s/) or the answer is no HTML page; a warning when the page does not
        look like a channel preview, or was cut."""
        if "/s/" in urlsplit(url).path and "/s/" not in urlsplit(response.url).path:
            raise SourceError(f"{url} redirected to {response.url}: channel {self.options.channel!r} "
                              "has no public preview (a private channel, or no such channel)")
        head = response.body[:2048]
        if b"\x00" in head or not looks_like_html(head, response.content_type):
            raise SourceError(f"{response.url} is not an HTML page (a Telegram channel preview was expected)")
        page = await parse_page(ctx, response.body, parse_channel_page)
        self.check_page(ctx, response, page)
        return page

    def check_page(self, ctx: PollContext, response: Response, page: ChannelPage) -> None:
        """Warnings for a page that may have hidden messages: not a channel preview (a wall, a
        layout the parser misses), messages gone since the last poll, messages left out."""
        if not page.messages:
            why = (f": {page.wall}" if page.wall else
                   "" if page.preview else " (no message history: a layout change, or not a channel preview?)")
            last = f"; the last poll found {ctx.previous_links}" if ctx.previous_links else ""
            if page.wall or not page.preview or ctx.previous_links:
                self.warn(ctx, f"no message on {response.url}{why}{last}")
        elif page.wall:
            self.warn(ctx, f"{response.url}: {page.wall}, though it has {len(page.messages)} messages")
        if page.cut:
            self.warn(ctx, f"{response.url}: {page.cut}")
        if response.truncated:
            self.warn(ctx, f"{response.url} was cut at max_bytes: its newest messages may be missing")

    async def walk_older(self, ctx: PollContext, url: str, page: ChannelPage,
                         messages: dict[int, Message]) -> bool:
        """Add the messages of older pages to `messages`, while a page has no message seen
        before, `depth` pages at most. False when an older page could not be read."""
        for _ in range(self.options.depth):
            before = page.before
            if before is None or not page.messages or before > min(m.post_id for m in page.messages):
                return True            # no older page (or a link that does not go back)
            if await self.any_seen(ctx, page):
                return True
            older_url = with_before(url, before)
            response = await self.fetch_item(ctx, older_url)
            if response is None:
                return False
            try:
                page = await parse_page(ctx, response.body, parse_channel_page)
            except SourceError as exc:          # the page parser's time budget: this page only
                self.skip(ctx, older_url, str(exc))
                return False
            if page.cut:
                self.warn(ctx, f"{older_url}: {page.cut}")
            fresh = [m for m in page.messages if m.post_id < before and m.post_id not in messages]
            if not fresh:
                return True
            messages.update((m.post_id, m) for m in fresh)
        return True

    async def any_seen(self, ctx: PollContext, page: ChannelPage) -> bool:
        """True when one of the page's messages was seen before (at its current version)."""
        for message in page.messages:
            item = self.message_item(message)
            if item is not None and await ctx.is_seen(item.item_id, item.version):
                return True
        return False

    def message_item(self, message: Message) -> Item | None:
        """The document of one message; None when it has neither text nor file."""
        if not message.text and not message.files:
            return None
        files = ", ".join(str(f) for f in message.files)
        body = message.text + (f"\nfiles: {files}" if files else "")
        header = [f"channel: {message.channel}", f"date: {message.posted_at or 'unknown'}",
                  f"link: {message.link}"]
        if files:
            header.append(f"files: {files}")
        content = "\n".join(header) + "\n\n" + message.text + "\n"
        return self.item(f"{self.options.channel}/{message.post_id}", message.link,
                         title=message_title(message), content=content.encode("utf-8"),
                         content_type=TEXT_TYPE, version=sha256_hex(body), posted_at=message.posted_at)


def message_title(message: Message) -> str:
    """The first non-blank line of the text (cut at TITLE_CHARS), else the first file's name,
    else the message's post."""
    line = next((line.strip() for line in message.text.splitlines() if line.strip()), "")
    if not line and message.files:
        line = message.files[0].name
    if len(line) > TITLE_CHARS:
        line = line[:TITLE_CHARS - 1].rstrip() + "…"
    return line or message.post


def with_before(url: str, before: int) -> str:
    """The preview page `url` with `?before=<id>` (its other query parameters kept)."""
    parts = urlsplit(url)
    query = [p for p in parts.query.split("&") if p and not p.startswith(("before=", "after="))]
    return urlunsplit(parts._replace(query="&".join([*query, f"before={before}"]), fragment=""))
