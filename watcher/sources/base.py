"""What every source shares: the `Item` it yields, the `PollContext` it polls with, the
`Source` base class, and page helpers (conditional GET, page parsing, health reports).

A source yields only NEW items: it asks `ctx.is_seen(item_id, version)` before fetching an item
page, so a poll over an unchanged site costs one request (or a 304). Validators of listing/board
pages are stored in `ctx.validators` only once every item of the page was fetched: a page whose
item failed is fetched in full again at the next poll, so the failed item is retried.

Pages are parsed by `parse_page`: in the context's page parser when there is one (the daemon:
child processes with a time budget, watcher.sources.pages), else in a thread for big pages and
on the loop for small ones (`off_loop`: unit tests, tools). The parse functions are pure and
live in modules the child imports alone (markup, links, threads, feedparse).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar
from urllib.parse import urlsplit

from watcher.config import SourceConfig
from watcher.dates import normalise as normalise_date
from watcher.extract.html import looks_like_html
from watcher.fetch import Fetcher, FetchError, Response, RetryLater
from watcher.sources.errors import SourceError
from watcher.sources.links import IndexPage

if TYPE_CHECKING:
    from watcher.sources.pages import PageParser

log = logging.getLogger(__name__)

PARSE_OFF_LOOP_BYTES = 256 * 1024    # parse bigger pages in a thread (bs4+lxml: ~1.5 MB/s)
PARSE_MAX_BYTES = 5 * 1024 * 1024    # never feed the parser more than this
TEXT_TYPE = "text/plain; charset=utf-8"

T = TypeVar("T")
SeenCheck = Callable[[str, str], Awaitable[bool]]
Validators = dict[str, tuple[str | None, str | None]]


@dataclass(frozen=True)
class Item:
    """One document found by a source.

    `content` holds the bytes for fetched documents; a directory file has `path` instead (the
    consumer streams it: it may be huge). An item with the same (source, item_id, version) is
    already seen. `truncated` is True when the body was cut at the source's max_bytes.
    """

    source: str
    item_id: str
    url: str
    title: str = ""
    content: bytes | None = None
    path: Path | None = None
    content_type: str | None = None
    version: str = ""
    truncated: bool = False
    posted_at: str | None = None      # the post's own date (a message, an entry, a record)
    author: str | None = None         # the post's author, where the source says


@dataclass
class PollContext:
    """What a poll needs from the daemon.

    `seen(item_id, version)` is backed by the database (a set in tests); `validators` maps a
    page URL to its (etag, last_modified) for conditional GETs and is updated by the source.
    `fetcher` is None for sources that fetch nothing (directory).

    Health, filled by the source for the daemon to record: `warnings` (one line each: a page
    that looks like a login wall, an `expect` selector that matched nothing, links gone) make
    a successful poll `degraded`; `skipped` holds (url, reason) of items that could not be
    fetched (retried next poll); `links` is how many item links the main page had this poll,
    `previous_links` what the last poll that saw the page recorded (None: unknown).

    `parser` parses pages in child processes with a time budget (the daemon's); None parses
    them in this process (`off_loop`).
    """

    fetcher: Fetcher | None
    seen: SeenCheck
    validators: Validators = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    links: int | None = None
    previous_links: int | None = None
    parser: PageParser | None = None

    async def is_seen(self, item_id: str, version: str = "") -> bool:
        """True if this item (at this version) was already processed."""
        return await self.seen(item_id, version)


class Source(ABC):
    """Base of every source kind; built from its validated config."""

    kind: ClassVar[str] = ""
    uses_network: ClassVar[bool] = True
    Options: ClassVar[type]                 # the kind's options (a dataclass of `watcher.options`)

    def __init__(self, config: SourceConfig) -> None:
        if config.kind != self.kind:
            raise ValueError(f"{type(self).__name__} cannot be built from a {config.kind!r} source")
        if not isinstance(config.options, self.Options):
            raise ValueError(f"{type(self).__name__} needs {self.Options.__name__}, not {config.options!r}")
        self.config = config

    @property
    def name(self) -> str:
        """The source's unique name."""
        return self.config.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @abstractmethod
    def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the items that are new since the last polls (an async generator)."""

    # -- helpers for subclasses --------------------------------------------------------------------

    def fetcher(self, ctx: PollContext) -> Fetcher:
        """The context's fetcher (a network source cannot poll without one)."""
        if ctx.fetcher is None:
            raise SourceError(f"source {self.name}: no fetcher in the poll context")
        return ctx.fetcher

    async def fetch_page(self, ctx: PollContext, url: str) -> Response | None:
        """Conditional GET of a main page; None when it is not modified. Errors propagate."""
        etag, last_modified = ctx.validators.get(url, (None, None))
        response = await self.fetcher(ctx).get(url, etag=etag, last_modified=last_modified)
        if response.not_modified:
            log.debug("source %s: %s not modified", self.name, url)
            return None
        return response

    @staticmethod
    def remember(ctx: PollContext, url: str, response: Response) -> None:
        """Store the page's validators (call once all its items were fetched)."""
        if response.etag or response.last_modified:
            ctx.validators[url] = (response.etag, response.last_modified)
        else:
            ctx.validators.pop(url, None)

    async def fetch_item(self, ctx: PollContext, url: str) -> Response | None:
        """GET an item page; None on failure (in `ctx.skipped`, logged) so the poll goes on.

        RetryLater propagates: the site asked us to slow down, so the whole poll stops.
        """
        try:
            return await self.fetcher(ctx).get(url)
        except RetryLater:
            raise
        except FetchError as exc:
            self.skip(ctx, url, str(exc))
            return None

    def skip(self, ctx: PollContext, url: str, reason: str) -> None:
        """An item that could not be read this poll (it is retried at the next one)."""
        log.warning("source %s: item %s skipped (retried next poll): %s", self.name, url, reason)
        ctx.skipped.append((url, reason))

    def warn(self, ctx: PollContext, message: str) -> None:
        """A poll that went through but may have missed documents: the source is degraded."""
        log.warning("source %s: %s", self.name, message)
        ctx.warnings.append(message)

    def check_index(self, ctx: PollContext, key: str, page: Response, index: IndexPage) -> None:
        """Record a listing or board page's health: its link count, and a warning when it has
        no link, looks like a login or challenge page, or does not match `expect`.

        A page without links that is not a page at all (cut at max_bytes, binary, not HTML)
        fails the poll. An HTML page without links always warns: a watched listing or board is
        never empty, so it is a login wall, a challenge, or a layout the selector misses.
        """
        ctx.links = len(index.links)
        selector = getattr(self.config.options, key)
        if not index.links:
            head = page.body[:2048]
            if page.truncated or b"\x00" in head or not looks_like_html(head, page.content_type):
                raise SourceError(f"{key} {selector!r} matched no link: {page.url} is not an HTML page"
                                  f"{' (cut at max_bytes)' if page.truncated else ''}")
            why = (f": {index.wall}" if index.wall else
                   "" if ctx.previous_links else " (an empty page, or a layout the selector misses?)")
            last = f"; the last poll found {ctx.previous_links}" if ctx.previous_links else ""
            self.warn(ctx, f"{key} {selector!r} matched no link on {page.url}{why}{last}")
        elif index.wall:
            count = len(index.links)
            self.warn(ctx, f"{page.url}: {index.wall}, though {key} {selector!r} matched "
                           f"{count} link{'s' if count > 1 else ''}")
        if index.expect_missing:
            self.warn(ctx, f"expect {self.config.expect!r} matched nothing on {page.url}")

    def item(self, item_id: str, url: str, **fields: object) -> Item:
        """An Item of this source."""
        return Item(source=self.name, item_id=item_id, url=url, **fields)  # type: ignore[arg-type]


async def parse_page(ctx: PollContext, body: bytes, parse: Callable[[bytes], T]) -> T:
    """`parse(body)` (a picklable top-level function, or a partial of one) in the context's
    page parser (a child process, a time budget: SourceError past it), else as `off_loop`."""
    if ctx.parser is None:
        return await off_loop(body, parse)
    return await ctx.parser.run(parse, capped(body))


async def off_loop(body: bytes, parse: Callable[[bytes], T]) -> T:
    """Run `parse(body)` in a thread if the body is big, on the loop otherwise (no time limit:
    a thread cannot be stopped; the daemon uses a page parser instead)."""
    body = capped(body)
    if len(body) > PARSE_OFF_LOOP_BYTES:
        return await asyncio.to_thread(parse, body)
    return parse(body)


def capped(body: bytes) -> bytes:
    """The first PARSE_MAX_BYTES of a page: parsers are superlinear on hostile pages."""
    if len(body) > PARSE_MAX_BYTES:
        log.info("parsing only the first %d of %d bytes", PARSE_MAX_BYTES, len(body))
        return body[:PARSE_MAX_BYTES]
    return body


def oldest_first(entries: Sequence[T], date: Callable[[T], str | None] | None = None) -> list[T]:
    """`entries` in the order a backlog is taken: by post date when every entry has a readable
    one (`watcher.dates`), else the page's order reversed (listings, boards and feeds put the
    newest first). With `max_items`, a first poll starts at the oldest and later polls go on
    from there: an incident's documents arrive in the order they were posted."""
    if date is not None and entries:
        dated = [(normalise_date(date(entry)), index) for index, entry in enumerate(entries)]
        if all(when for when, _ in dated):
            return [entries[index] for _, index in sorted(dated)]
    return list(reversed(entries))


def link_id(url: str) -> str:
    """Item id of a link: its last non-empty path segment, plus "?query" when it has one."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    base = segments[-1] if segments else parts.netloc
    return f"{base}?{parts.query}" if parts.query else base


def last_segment(url: str) -> str:
    """The last non-empty path segment of `url` (the `{id}` of an item_url template)."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    return segments[-1] if segments else ""


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of `text` (UTF-8): the version of an editable document."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
