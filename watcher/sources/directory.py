"""directory: new or changed files in a local folder (a drop box), of any size.

Files are never read here: the Item carries the path and the consumer streams it.
item_id = path relative to the folder (POSIX form); version = "size:mtime_ns", so a changed
file is new again. Hidden files (".name", the usual in-progress upload names) and symbolic links
(which could point out of the drop box) are skipped, and so is a file modified in the last
`settle` seconds (still being written: it is picked up at a later poll).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from watcher.config import SourceConfig
from watcher.options import option
from watcher.sources.base import Item, PollContext, Source, SourceError

log = logging.getLogger(__name__)

DEFAULT_SETTLE = 2.0


@dataclass(frozen=True)
class DirectoryOptions:
    """`kind = "directory"`: a drop folder, polled locally."""

    url_key: ClassVar[str | None] = None
    path: Path = option("path", required=True, doc="the folder (relative to the configuration file's)")


@dataclass(frozen=True)
class FileEntry:
    """A regular file found in the folder."""

    relative: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def version(self) -> str:
        """Changes whenever the file's size or modification time does."""
        return f"{self.size}:{self.mtime_ns}"


def scan(root: Path) -> list[FileEntry]:
    """Regular, non-hidden files under `root` (recursively, symlinks not followed), oldest first."""
    found: list[FileEntry] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            if folder == root:
                raise
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished meanwhile
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(entry.path))
            elif stat.S_ISREG(info.st_mode):
                path = Path(entry.path)
                found.append(FileEntry(path.relative_to(root).as_posix(), path, info.st_size,
                                       info.st_mtime_ns))
    found.sort(key=lambda f: (f.mtime_ns, f.relative))
    return found


class DirectorySource(Source):
    """A drop-box folder; one document per new or changed file."""

    kind = "directory"
    uses_network = False
    Options = DirectoryOptions
    options: DirectoryOptions

    def __init__(self, config: SourceConfig, settle: float = DEFAULT_SETTLE) -> None:
        super().__init__(config)
        self.settle = settle

    async def poll(self, ctx: PollContext) -> AsyncIterator[Item]:
        """Yield files that are new or changed since they were last seen."""
        root = self.config.options.path
        assert root is not None
        if not root.is_dir():
            raise SourceError(f"source {self.name}: {root} is not a directory")
        try:
            files = await asyncio.to_thread(scan, root)
        except OSError as exc:
            raise SourceError(f"source {self.name}: cannot list {root}: {exc.strerror or exc}") from None
        settled_before = time.time_ns() - int(self.settle * 1e9)
        for entry in files:
            if entry.mtime_ns > settled_before:
                log.debug("source %s: %s is still changing, later", self.name, entry.relative)
                continue
            if await ctx.is_seen(entry.relative, entry.version):
                continue
            yield self.item(entry.relative, entry.path.absolute().as_uri(), title=entry.path.name,
                            path=entry.path, version=entry.version,
                            content_type=mimetypes.guess_type(entry.path.name)[0])
