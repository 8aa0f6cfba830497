"""json: an API endpoint returning a JSON list of records, each pointing to a raw document.

Shapes it covers: Pastebin's scraping API (`[{"key": ..., "scrape_url": ...}]`) and GitHub's
public gists (`[{"id": ..., "files": {"name": {"raw_url": ...}}}]`). `items` is the dotted path
to the list ("" = the top level); `id`, `url` and `title` are dotted paths inside a record,
where a `*` segment takes the first value of a mapping (or the first element of a list) and a
number indexes a list.

An endpoint answering an HTML page instead (a login wall, a challenge) fails the poll with a
reason; records are counted for the source's health.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from watcher.extract.html import looks_like_html
from watcher.fetch import Response
from watcher.options import option
from watcher.sources.base import Item, PollContext, Source, SourceError, off_loop, parse_page
from watcher.sources.walls import page_wall

log = logging.getLogger(__name__)


def dig(value: Any, path: str) -> Any:
    """The value at dotted `path` in `value` ("" = value itself); raises LookupError if absent."""
    for segment in path.split(".") if path else ():
        if segment == "*":
            if isinstance(value, dict) and value:
                value = next(iter(value.values()))
            elif isinstance(value, list) and value:
                value = value[0]
            else:
                raise LookupError(segment)
        elif isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            raise LookupError(segment)
    return value


def parse_json(body: bytes) -> Any:
    """json.loads that reports a SourceError."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"not JSON: {exc}") from None


@dataclass(frozen=True)
class JsonOptions:
    """`kind = "json"`: an API endpoint listing records."""

    url_key: ClassVar[str | None] = "endpoint"
    id_field: str = option("dotted", key="id", required=True, doc="dotted path of a record's id")
    url_field: str = option("dotted", key="url", required=True, doc="dotted path of a record's raw-content URL")
    items: str = option("json_path", "", doc='dotted path of the list of records ("": the top level)')
    title_field: str | None = option("dotted", None, key="title", doc="dotted path of a record's title")


class JsonSource(Source):
    """An API listing records; one document per record (its raw content URL)."""

    kind = "json"
    Options = JsonOptions

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield the documents of the records not seen yet."""
        endpoint = self.config.url
        assert endpoint
        response = await self.fetch_page(ctx, endpoint)
        if response is None:
            return
        if response.truncated:
            raise SourceError(f"source {self.name}: {endpoint} is larger than max_bytes "
                              f"({self.config.max_bytes}): cannot parse a cut JSON document")
        records = await self.records(ctx, response)
        ctx.links = len(records)
        if not records and ctx.previous_links:
            self.warn(ctx, f"{endpoint} listed no record; the last poll found {ctx.previous_links}")
        failures = 0
        for record in records:
            fields = self.record_fields(record)
            if fields is None:
                continue
            item_id, url, title = fields
            if await ctx.is_seen(item_id):
                continue
            document = await self.fetch_item(ctx, url)
            if document is None:
                failures += 1
                continue
            yield self.item(item_id, document.url, title=title, content=document.body,
                            content_type=document.content_type, truncated=document.truncated)
        if not failures:
            self.remember(ctx, endpoint, response)

    async def records(self, ctx: PollContext, response: Response) -> list[Any]:
        """The list of records in the endpoint's answer (SourceError when there is none)."""
        endpoint = response.url
        try:
            data = await off_loop(response.body, parse_json)
        except SourceError:
            if not looks_like_html(response.body[:2048], response.content_type):
                raise
            wall = await parse_page(ctx, response.body, page_wall)
            raise SourceError(f"source {self.name}: {endpoint} answered an HTML page, not JSON"
                              + (f": {wall}" if wall else "")) from None
        try:
            records = dig(data, self.config.options.items)
        except LookupError:
            raise SourceError(f"source {self.name}: no {self.config.options.items!r} in the response "
                              f"of {endpoint}") from None
        if not isinstance(records, list):
            raise SourceError(f"source {self.name}: {self.config.options.items or 'the response'!s} is not a list")
        return records

    def record_fields(self, record: Any) -> tuple[str, str, str] | None:
        """(id, raw URL, title) of a record; None (logged) if the record lacks them."""
        config = self.config.options
        try:
            raw_id = dig(record, config.id_field)
            url = dig(record, config.url_field)
        except LookupError as exc:
            log.warning("source %s: record without %s (segment %s): skipped", self.name,
                        f"{config.id_field!r}/{config.url_field!r}", exc)
            return None
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id):
            log.warning("source %s: record id %r is not a string or number: skipped", self.name, raw_id)
            return None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            log.warning("source %s: record %s: %r is not an http(s) URL: skipped", self.name, raw_id, url)
            return None
        title = ""
        if config.title_field:
            try:
                value = dig(record, config.title_field)
                title = value if isinstance(value, str) else ""
            except LookupError:
                pass
        return str(raw_id), url, title
