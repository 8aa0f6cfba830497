"""French phone numbers: 10 digits starting with 0, or +33 / 0033 and 9 digits."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..privacy import mask_digits
from .base import NOT_BEFORE_DIGIT, Hits, Pattern, Window, number_end
from .compiled import speedups

_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)
_PAIRS = rb"(?:[ .\-]?[0-9]{2}){4}"
_NUMBER = re.compile(rb"(?:\+33|0033|0)[ .\-]?(?:\(0\))?[1-9]((?:[ .\-]?[0-9]{2}){4})$")


def _one_style(pairs: bytes) -> bool:
    """The four last pairs of digits in one style: "05 32 01 30 00" or "0532013000", never
    "0532 0130 00" (the groups of four of an IBAN). The pattern stays one simple automaton;
    this runs on its matches only."""
    return len(pairs) == 8 or (len(pairs) == 12 and len({pairs[i] for i in range(0, 12, 3)}) == 1)


class PhoneDetector:
    name = "phone"
    sensitive = True

    def __init__(self, compiled: bool = True) -> None:
        self.compiled = bool(compiled and speedups)     # found by `_speedups.scan_numbers` instead

    def patterns(self) -> list[Pattern]:
        if self.compiled:
            return []
        return [
            Pattern(rb"(?:^|[^0-9+])0[1-9]" + _PAIRS + NOT_BEFORE_DIGIT),
            Pattern(rb"(?:\+33|(?:^|[^0-9])0033)[ .\-]?(?:\(0\))?[1-9]" + _PAIRS + NOT_BEFORE_DIGIT),
        ]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for _, ends in hits:
            for end in ends:
                end = number_end(buf, end)
                match = _NUMBER.search(buf, max(0, end - 22), end)
                if match and _one_style(match.group(1)):
                    yield "+33" + match.group(0).translate(None, _NOT_DIGITS)[-9:].decode()

    def mask(self, value: str) -> str:
        return mask_digits(value, 4, 2)
