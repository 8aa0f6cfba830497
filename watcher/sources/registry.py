"""The source kinds by name, and `build_source(config)`, which makes the right one."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from watcher.config import SourceConfig
from watcher.sources.base import Source
from watcher.sources.directory import DirectorySource
from watcher.sources.feed import FeedSource
from watcher.sources.forum import ForumSource
from watcher.sources.jsonapi import JsonSource
from watcher.sources.listing import ListingSource
from watcher.sources.privatebin_index import PrivateBinSource
from watcher.sources.telegram import TelegramSource

SOURCE_CLASSES: Mapping[str, type[Source]] = MappingProxyType({
    cls.kind: cls for cls in (DirectorySource, ListingSource, ForumSource, JsonSource, FeedSource, TelegramSource,
                               PrivateBinSource)
})


def build_source(config: SourceConfig) -> Source:
    """The Source object for a validated `[[sources]]` entry."""
    try:
        cls = SOURCE_CLASSES[config.kind]
    except KeyError:
        raise ValueError(f"unknown source kind {config.kind!r} "
                         f"(expected one of: {', '.join(SOURCE_CLASSES)})") from None
    return cls(config)
