"""The one interface every detector implements.

A detector declares Hyperscan byte patterns; the engine runs all detectors' patterns in one
pass and hands each detector the spans its patterns matched. The detector then verifies them
(checksums, structure, word boundaries, context: its false-positive filter) and yields the
normalized values it accepts. Values stay inside the detection state: what leaves it is a
count, masked samples and keyed fingerprints (see `watcher.privacy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

# A span the engine found: (start, end, tag) with tag the index of the pattern in
# the detector's own `patterns` list.
Span = tuple[int, int, int]


@dataclass(frozen=True)
class Pattern:
    expr: bytes                 # Hyperscan (PCRE subset) expression on UTF-8 bytes
    caseless: bool = True


class Detector(Protocol):
    name: str                   # key in `counts`, e.g. "nir"
    sensitive: bool             # values are personal identifiers: fingerprint + mask them

    def patterns(self) -> list[Pattern]:
        """The byte patterns to compile into the shared database."""

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        """Verify the spans matched in `buf`; yield the normalized values accepted."""

    def mask(self, value: str) -> str:
        """How a value may be shown to a person."""


def each_span(detector_check, buf: bytes, spans: Iterable[Span]) -> Iterator[str]:
    """Default `find`: run `detector_check(buf, start, end, tag)` on every span."""
    for start, end, tag in spans:
        value = detector_check(buf, start, end, tag)
        if value is not None:
            yield value
