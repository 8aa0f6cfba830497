"""One Hyperscan pass for every detector, over a document fed in chunks.

Chunks overlap so a match across a chunk boundary is seen whole, and a guard zone at the end
of each chunk is scanned again with the next one, so a detector can always look at the
bytes right after a match (no digit after a NIR) before accepting it. Each match is accepted
exactly once: in the scan where its end first falls inside the accepted window.
"""

from __future__ import annotations

from typing import Sequence

import hyperscan

from .base import Detector, Pattern, Span

OVERLAP = 4096      # bytes carried to the next chunk; longer matches across a boundary are lost
GUARD = 512         # look-ahead a detector may need after a match


def compile_database(patterns: Sequence[Pattern]) -> hyperscan.Database:
    """Compile byte patterns (ids = positions) into a block-mode database with match starts."""
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    flags = [
        (hyperscan.HS_FLAG_SOM_LEFTMOST if p.som else 0)
        | (hyperscan.HS_FLAG_CASELESS if p.caseless else 0)
        | (hyperscan.HS_FLAG_SINGLEMATCH if p.single else 0)
        for p in patterns
    ]
    database.compile(expressions=[p.expr for p in patterns], ids=list(range(len(patterns))), flags=flags)
    return database


class Engine:
    """The compiled patterns of a set of detectors (build once, reuse for every document)."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = list(detectors)
        patterns: list[Pattern] = []
        self._owner: list[tuple[int, int, bool]] = []   # pattern id -> (detector index, tag, single)
        for index, detector in enumerate(self.detectors):
            for tag, pattern in enumerate(detector.patterns()):
                patterns.append(pattern)
                self._owner.append((index, tag, pattern.single))
        self._database = compile_database(patterns)

    def spans(self, buf: bytes, accept_from: int, accept_to: int) -> list[list[Span]]:
        """Matches in `buf` whose end lies in (accept_from, accept_to], per detector.

        `single` patterns are passed whatever their end: the detector searches the window.
        """
        found: list[tuple[int, int, int]] = []
        append = found.append

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            append((pattern_id, start, end))   # start is 0 unless the pattern asked for `som`

        self._database.scan(buf, match_event_handler=on_match)
        per_detector: list[list[Span]] = [[] for _ in self.detectors]
        owner = self._owner
        for pattern_id, start, end in found:
            index, tag, single = owner[pattern_id]
            if single or accept_from < end <= accept_to:
                per_detector[index].append((start, end, tag))
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
