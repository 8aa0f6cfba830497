"""One Hyperscan pass for every detector, over a document fed in chunks.

Chunks overlap so a match across a chunk boundary is seen whole, and a guard zone at the end
of each chunk is scanned again with the next one, so a detector can always look at the
bytes right after a match (no digit after a NIR) before accepting it. Each match is accepted
exactly once: in the scan where its end first falls inside the accepted window.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import hyperscan

from .base import Hits, Pattern, PatternSource

OVERLAP = 4096      # bytes carried to the next chunk; longer matches across a boundary are lost
GUARD = 512         # look-ahead a detector may need after a match
CACHE_MAX_AGE = 30 * 86400     # compiled databases unused this long are removed

log = logging.getLogger(__name__)


def compile_database(patterns: Sequence[Pattern], cache: Path | None = None) -> hyperscan.Database:
    """Compile byte patterns (ids = positions) into a block-mode database with match starts.

    With a `cache` directory, the compiled database is kept there, named by a hash of the
    patterns and the Hyperscan version: compiling the built-in set takes about half a second,
    loading it a millisecond (every `watcher scan`, every daemon worker). Hyperscan checks a
    CRC when loading, so a damaged file is recompiled, never used.
    """
    flags = [
        (hyperscan.HS_FLAG_SOM_LEFTMOST if p.som else 0)
        | (hyperscan.HS_FLAG_CASELESS if p.caseless else 0)
        | (hyperscan.HS_FLAG_SINGLEMATCH if p.single else 0)
        for p in patterns
    ]
    path = cache / f"hs-{_fingerprint(patterns, flags)}.db" if cache else None
    if path:
        database = _load(path)
        if database is not None:
            return database
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=[p.expr for p in patterns], ids=list(range(len(patterns))), flags=flags)
    if path:
        _save(path, database)
    return database


def default_cache_dir() -> Path | None:
    """`$WATCHER_CACHE_DIR` ("" turns the cache off), systemd's `$CACHE_DIRECTORY`, else the
    user's cache directory (`$XDG_CACHE_HOME` or ~/.cache)."""
    if "WATCHER_CACHE_DIR" in os.environ:
        return Path(os.environ["WATCHER_CACHE_DIR"]) if os.environ["WATCHER_CACHE_DIR"] else None
    if os.environ.get("CACHE_DIRECTORY"):
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "leak-watcher"


def _fingerprint(patterns: Sequence[Pattern], flags: list[int]) -> str:
    version = getattr(hyperscan, "__version__", "")       # the stubs do not declare it
    digest = hashlib.sha256(f"hyperscan {version} block".encode())
    for pattern, flag in zip(patterns, flags, strict=False):
        digest.update(b"%d:%d:" % (flag, len(pattern.expr)) + pattern.expr)
    return digest.hexdigest()[:32]


def _load(path: Path) -> hyperscan.Database | None:
    """The cached database, or None. Hyperscan does not defend against crafted files, so a
    cache directory others can write to is not read at all."""
    try:
        if not _private(path.parent):
            log.warning("pattern cache %s ignored: the directory must be ours and not writable by others", path.parent)
            return None
        database = hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)     # loadb gives a database without one
    except FileNotFoundError:
        return None
    except (OSError, hyperscan.error) as exc:
        log.warning("pattern cache %s unusable (%s): compiling again", path, exc)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)                       # recently used: kept by _save's clean-up
    return database


def _private(directory: Path) -> bool:
    info = directory.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _save(path: Path, database: hyperscan.Database) -> None:
    """Write atomically (temporary file + rename: concurrent workers never see half a file);
    a read-only or missing cache directory only costs the next start a compilation."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".hs-")
    except OSError as exc:
        log.debug("pattern cache %s not written: %s", path, exc)
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(hyperscan.dumpb(database))
        os.replace(temporary, path)
    except OSError as exc:
        log.debug("pattern cache %s not written: %s", path, exc)
        Path(temporary).unlink(missing_ok=True)
        return
    try:
        for old in path.parent.glob("hs-*.db"):
            if old != path and time.time() - old.stat().st_mtime > CACHE_MAX_AGE:
                old.unlink(missing_ok=True)
    except OSError:
        pass                                 # a file removed by another process meanwhile


class Engine:
    """The compiled patterns of a set of detectors (build once, reuse for every document).

    Patterns go to one database per (`som`, `group`): asking for match starts slows
    Hyperscan down for every pattern compiled with them, and the insurer names scan 3x faster
    in a database of their own than with any other pattern added (measured on a member
    extract that names an insurer on every row; ordinary text pays ~1 ms per MB for the
    second pass).
    """

    def __init__(self, detectors: Sequence[PatternSource], cache: Path | None = None) -> None:
        self.detectors = list(detectors)
        groups: dict[tuple[bool, str], list[Pattern]] = {}
        self._owners: dict[tuple[bool, str], list[tuple[int, int, bool]]] = {}
        for index, detector in enumerate(self.detectors):
            for tag, pattern in enumerate(detector.patterns()):
                key = (pattern.som, pattern.group)
                groups.setdefault(key, []).append(pattern)
                self._owners.setdefault(key, []).append((index, tag, pattern.single))
        self._databases = {key: compile_database(p, cache) for key, p in sorted(groups.items())}
        # One bucket per pattern, allocated once: a scan fills a few and they are emptied
        # after it (allocating ~400 lists per scan cost more than scanning a small paste).
        self._buckets: dict[tuple[bool, str], list[list[Any]]] = {   # ends, or (start, end) with som
            key: [[] for _ in owners] for key, owners in self._owners.items()}
        self._handlers = {key: self._handler(key) for key in self._databases}

    def _handler(self, key: tuple[bool, str]):
        appends = [bucket.append for bucket in self._buckets[key]]
        if key[0]:
            def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
                appends[pattern_id]((start, end))
        else:
            def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
                appends[pattern_id](end)      # start is 0 without `som`: not kept
        return on_match

    def hits(self, buf: bytes, accept_from: int, accept_to: int) -> list[Hits]:
        """Per detector, (tag, positions) of its patterns' matches ending in (accept_from, accept_to].

        Positions are match ends, or (start, end) for `som` patterns. `single` patterns are
        passed whatever their end: the detector searches the window itself. Not reentrant:
        one Engine per thread.
        """
        per_detector: list[Hits] = [[] for _ in self.detectors]
        for key, database in self._databases.items():
            som, owners, buckets = key[0], self._owners[key], self._buckets[key]
            database.scan(buf, match_event_handler=self._handlers[key])
            for pattern_id, bucket in enumerate(buckets):
                if not bucket:
                    continue
                positions = bucket[:]
                bucket.clear()
                index, tag, single = owners[pattern_id]
                if not single:
                    positions = [p for p in positions if accept_from < (p[1] if som else p) <= accept_to]
                    if not positions:
                        continue
                per_detector[index].append((tag, positions))
        return per_detector


class ChunkWindow:
    """Turns a stream of chunks into overlapping scan buffers with accepted windows."""

    def __init__(self) -> None:
        self._tail = b""
        self._accept_from = 0

    def next(self, chunk: bytes, final: bool) -> tuple[bytes, int, int]:
        """(buffer, accept_from, accept_to) for this chunk; the caller scans the buffer."""
        buf = self._tail + chunk if self._tail else chunk
        accept_from = self._accept_from
        accept_to = len(buf) if final else max(len(buf) - GUARD, accept_from)
        keep = min(len(buf), OVERLAP)
        dropped = len(buf) - keep
        self._tail = buf[dropped:]
        self._accept_from = accept_to - dropped
        return buf, accept_from, accept_to
