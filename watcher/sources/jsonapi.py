"""json: an API endpoint returning a JSON list of records, each pointing to a raw document,
or carrying the text itself.

Shapes it covers: Pastebin's scraping API (`[{"key": ..., "scrape_url": ...}]`), GitHub's
public gists (`[{"id": ..., "files": {"name": {"raw_url": ...}}}]`) and victim APIs whose
records are the text (`[{"victim": ..., "description": ..., "website": ...}]`). `items` is the
dotted path to the list ("" = the top level); `id`, `url`, `title` and `date` are dotted paths
inside a record, where a `*` segment takes the first value of a mapping (or the first element
of a list) and a number indexes a list.

With `fields = ["victim", "description", "website"]` each record's own fields are a document
(`item_id` = its id, version = the hash of the text, so an edited record is new again); with
`url` too, the page it points to is a second document (`item_id` = the id + "#url").

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
from watcher.sources.base import TEXT_TYPE, Item, PollContext, Source, SourceError, off_loop, parse_page, sha256_hex
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


def _text(record: Any, path: str) -> str:
    """The value at `path` as one line of text ("" when absent or empty)."""
    try:
        value = dig(record, path)
    except LookupError:
        return ""
    if value is None or isinstance(value, bool):
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return " ".join(text.split())


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
    url_field: str | None = option("dotted", None, key="url", doc="dotted path of a record's raw-content URL")
    fields: tuple[str, ...] = option("dotted_list", (), doc="dotted paths of the record's own fields to scan "
                                                           "as a document (victim, description...)")
    items: str = option("json_path", "", doc='dotted path of the list of records ("": the top level)')
    title_field: str | None = option("dotted", None, key="title", doc="dotted path of a record's title")
    date_field: str | None = option("dotted", None, key="date", doc="dotted path of a record's date")

    def __post_init__(self) -> None:
        if not self.url_field and not self.fields:
            raise ValueError("url or fields: a json source needs one (the document each record points to, "
                             "or the record's own fields)")


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
        options = self.config.options
        for record in records:
            fields = self.record_fields(record)
            if fields is None:
                continue
            item_id, url, title = fields
            if options.fields:
                text = self.record_text(record, item_id, title)
                version = sha256_hex(text)
                if not await ctx.is_seen(item_id, version):
                    yield self.item(item_id, url or endpoint, title=title, content=text.encode("utf-8"),
                                    content_type=TEXT_TYPE, version=version)
                if not url:
                    continue
                item_id += "#url"
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

    def record_text(self, record: Any, item_id: str, title: str) -> str:
        """The record's configured fields as a text document: a header (source, id, title,
        date), then `field: value` per field found (lists and objects as compact JSON)."""
        options = self.config.options
        lines = [f"source: {self.name}", f"id: {item_id}"] + ([f"title: {title}"] if title else [])
        if options.date_field:
            date = _text(record, options.date_field)
            if date:
                lines.append(f"date: {date}")
        lines.append("")
        for path in options.fields:
            value = _text(record, path)
            if value:
                lines.append(f"{path}: {value}")
        return "\n".join(lines) + "\n"

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

    def record_fields(self, record: Any) -> tuple[str, str | None, str] | None:
        """(id, raw URL or None, title) of a record; None (logged) if the record lacks them.
        With `fields`, a record without a usable URL is still a document (its fields)."""
        config = self.config.options
        wanted = f"{config.id_field!r}" + (f"/{config.url_field!r}" if config.url_field else "")
        try:
            raw_id = dig(record, config.id_field)
            url = dig(record, config.url_field) if config.url_field else None
        except LookupError as exc:
            if not config.fields:
                log.warning("source %s: record without %s (segment %s): skipped", self.name, wanted, exc)
                return None
            try:
                raw_id, url = dig(record, config.id_field), None
            except LookupError:
                log.warning("source %s: record without %s (segment %s): skipped", self.name, wanted, exc)
                return None
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id):
            log.warning("source %s: record id %r is not a string or number: skipped", self.name, raw_id)
            return None
        if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")):
            if not config.fields:
                log.warning("source %s: record %s: %r is not an http(s) URL: skipped", self.name, raw_id, url)
                return None
            url = None
        title = ""
        if config.title_field:
            try:
                value = dig(record, config.title_field)
                title = value if isinstance(value, str) else ""
            except LookupError:
                pass
        return str(raw_id), url, title
