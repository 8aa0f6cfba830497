"""json: an API endpoint returning a JSON list of records, each pointing to a raw document,
or carrying the text itself.

Shapes it covers: Pastebin's scraping API (`[{"key": ..., "scrape_url": ...}]`), GitHub's
public gists (`[{"id": ..., "files": {"name": {"raw_url": ...}}}]`) and victim APIs whose
records are the text (`[{"victim": ..., "description": ..., "website": ...}]`). `items` is the
dotted path to the list ("" = the top level); `id`, `url`, `title` and `date` are dotted paths
inside a record, where a `*` segment takes the first value of a mapping (or the first element
of a list) and a number indexes a list. In `url` only, a `[]` segment (jq's `.[]`) takes every
value: `files.[].raw_url` is every file of a gist, one document each (`item_id` = the record's
id + "/" + the file's name, or the element's index in a list).

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
from watcher.sources.base import (TEXT_TYPE, Item, PollContext, Source, SourceError, off_loop, oldest_first,
                                  parse_page, sha256_hex)
from watcher.sources.walls import page_wall
import contextlib

log = logging.getLogger(__name__)

EVERY = "[]"   # the `url` segment that takes every value of a mapping or list


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


def dig_every(value: Any, path: str) -> list[tuple[str, Any]]:
    """Every value at dotted `path`, as `dig` but a `[]` segment takes each value of a mapping
    (each element of a list): (key, value) pairs, the key being the names (indices) the `[]`
    segments took, joined by "/" ("" without `[]`). A branch lacking a later segment is left
    out; raises LookupError if no value is found."""
    found: list[tuple[str, Any]] = [("", value)]
    for segment in path.split(".") if path else ():
        step: list[tuple[str, Any]] = []
        for key, node in found:
            if segment == EVERY:
                pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
                step.extend((f"{key}/{name}" if key else str(name), child) for name, child in pairs)
                continue
            with contextlib.suppress(LookupError):
                step.append((key, dig(node, segment)))
        if not step:
            raise LookupError(segment)
        found = step
    return found


def _has(value: Any, path: str) -> bool:
    """Whether dotted `path` is in `value`."""
    try:
        dig(value, path)
    except LookupError:
        return False
    return True


def _is_http(url: Any) -> bool:
    """Whether `url` is an http(s) URL string."""
    return isinstance(url, str) and urlsplit(url).scheme in ("http", "https")


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
        paths = [("id_field", self.id_field), ("items", self.items), ("title_field", self.title_field),
                 ("date_field", self.date_field)] + [("fields", path) for path in self.fields]
        for name, path in paths:
            if path and EVERY in path.split("."):
                raise ValueError(f'{name} cannot take "[]" (every value: only `url` can, e.g. '
                                 f'"files.[].raw_url"); "*" takes the first value')


class JsonSource(Source):
    """An API listing records; one document per record (its raw content URL, or each with `[]`)."""

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
        for record in oldest_first(records, self.record_date if options.date_field else None):
            fields = self.record_fields(record)
            if fields is None:
                continue
            item_id, urls, title = fields
            if options.fields:
                text = self.record_text(record, item_id, title)
                version = sha256_hex(text)
                if not await ctx.is_seen(item_id, version):
                    yield self.item(item_id, urls[0][1] if urls else endpoint, title=title,
                                    content=text.encode("utf-8"), content_type=TEXT_TYPE, version=version,
                                    posted_at=self.record_date(record))
                item_id += "#url"
            for key, url in urls:
                document_id = f"{item_id}/{key}" if key else item_id
                if await ctx.is_seen(document_id):
                    continue
                document = await self.fetch_item(ctx, url)
                if document is None:
                    failures += 1
                    continue
                yield self.item(document_id, document.url, title=title, content=document.body,
                                content_type=document.content_type, truncated=document.truncated)
        if not failures:
            self.remember(ctx, endpoint, response)

    def record_date(self, record: Any) -> str | None:
        """The record's `date` field, when configured and present."""
        date_field = self.config.options.date_field
        return (_text(record, date_field) or None) if date_field else None

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

    def record_fields(self, record: Any) -> tuple[str, list[tuple[str, str]], str] | None:
        """(id, [(key, raw URL)], title) of a record; None (logged) if the record lacks them.
        The key is "" unless `url` has a `[]` segment (then: which value, e.g. the file name).
        With `fields`, a record without a usable URL is still a document (its fields)."""
        config = self.config.options
        wanted = f"{config.id_field!r}" + (f"/{config.url_field!r}" if config.url_field else "")
        try:
            raw_id = dig(record, config.id_field)
            urls = dig_every(record, config.url_field) if config.url_field else []
        except LookupError as exc:
            if not config.fields or not _has(record, config.id_field):
                log.warning("source %s: record without %s (segment %s): skipped", self.name, wanted, exc)
                return None
            raw_id, urls = dig(record, config.id_field), []
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id):
            log.warning("source %s: record id %r is not a string or number: skipped", self.name, raw_id)
            return None
        usable = [(key, url) for key, url in urls if _is_http(url)]
        if len(usable) < len(urls) and not config.fields:
            bad = next(url for _, url in urls if not _is_http(url))
            log.warning("source %s: record %s: %r is not an http(s) URL: skipped", self.name, raw_id, bad)
            if not usable:
                return None
        title = ""
        if config.title_field:
            try:
                value = dig(record, config.title_field)
                title = value if isinstance(value, str) else ""
            except LookupError:
                pass
        return str(raw_id), usable, title
