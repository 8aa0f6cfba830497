"""The one interface every detector implements.

A detector declares Hyperscan byte patterns; the engine runs all detectors' patterns in one
pass and hands each detector the spans its patterns matched. The detector then verifies them
(checksums, structure, word boundaries, context: its false-positive filter) and yields the
normalized values it accepts.

Match starts cost Hyperscan a lot (3x slower scans), so by default a match only has its end
and the detector recovers the value from the bytes before it. A `single` pattern
is reported at most once per buffer: it says "this name occurs here", and the detector finds
the occurrences itself inside the accepted window (names and keywords: only the first valid
occurrence in a document matters). NIRs, SIRETs, RPPS, phone numbers and IBANs, the dense
identifiers of extracts, are found by one compiled pass instead when `_speedups` is built
(see `Scanner`): their detectors then leave those patterns out. Values stay inside the
detection state: what leaves it is a count, masked samples and keyed fingerprints (see
`watcher.privacy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeVar
from collections.abc import Iterator, Mapping

# What the engine found for one detector: (tag, positions) per pattern that matched, tag the
# index of the pattern in the detector's own `patterns` list (named by an IntEnum where the
# detector reads its patterns differently, see `tagged`), positions the match ends (or
# (start, end) pairs for `som` patterns).
Hits = list[tuple[int, list]]
# The accepted window of a buffer: a detector accepts matches whose end lies in (lo, hi].
Window = tuple[int, int]


@dataclass(frozen=True)
class Pattern:
    expr: bytes                 # Hyperscan (PCRE subset) expression on UTF-8 bytes
    caseless: bool = True
    single: bool = False        # report once per buffer, the detector locates occurrences
    som: bool = False           # report the start of the match (slower)
    group: str = ""             # patterns of another group go to a database of their own


class PatternSource(Protocol):
    """What the engine compiles: anything with patterns (every Detector is one)."""

    def patterns(self) -> list[Pattern]: ...


class Detector(Protocol):
    name: str                   # key in `counts`, e.g. "nir"
    sensitive: bool             # values are personal identifiers: fingerprint + mask them

    def patterns(self) -> list[Pattern]:
        """The byte patterns to compile into the shared database."""

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        """Verify the matches in `buf`; yield the normalized values accepted.

        `found` holds the values already accepted in this document (to skip known names).
        """

    def mask(self, value: str) -> str:
        """How a value may be shown to a person."""


# What a checked-number detector (NIR, SIRET, RPPS) yields for a number that has the shape
# and structure of its identifier but fails the key or Luhn check: never a value, counted for
# the plausibility test (random digits pass a NIR key 1 time in 97, a Luhn check 1 in 10).
FAILED = "?"
CHECKED = ("nir", "siret", "rpps")

NOT_AFTER_DIGIT = rb"(?:^|[^0-9])"      # a number never starts inside a longer run of digits
NOT_BEFORE_DIGIT = rb"(?:[^0-9]|$)"     # ... nor ends inside one (the end then includes that byte)


Tag = TypeVar("Tag", bound=IntEnum)


def tagged(patterns: Mapping[Tag, Pattern]) -> list[Pattern]:
    """A detector's `patterns` list from its patterns by tag: each at the index its tag names,
    the tag the engine reports with its matches. A detector that leaves patterns out (to the
    compiled number pass) leaves the last tags out, so the others keep their place."""
    tags = sorted(patterns)
    if tags != list(range(len(tags))):
        raise ValueError(f"pattern tags {[str(t) for t in tags]} are not 0, 1, ... without a gap")
    return [patterns[tag] for tag in tags]


def number_end(buf: bytes, end: int) -> int:
    """Where a number matched with NOT_BEFORE_DIGIT really ends."""
    return end if end and 48 <= buf[end - 1] <= 57 else end - 1
