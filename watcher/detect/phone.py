"""French phone numbers: 10 digits starting with 0, or +33 / 0033 and 9 digits."""

from __future__ import annotations

from typing import Iterator

from ..privacy import mask_digits
from .base import NOT_BEFORE_DIGIT, Hits, Pattern, Window, number_end

_PAIRS = rb"(?:[ .\-]?[0-9]{2}){4}"
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)


class PhoneDetector:
    name = "phone"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [
            Pattern(rb"(?:^|[^0-9+])0[1-9]" + _PAIRS + NOT_BEFORE_DIGIT),
            Pattern(rb"(?:\+33|(?:^|[^0-9])0033)[ .\-]?(?:\(0\))?[1-9]" + _PAIRS + NOT_BEFORE_DIGIT),
        ]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for _, ends in hits:
            for end in ends:
                end = number_end(buf, end)
                yield "+33" + buf[max(0, end - 16):end].translate(None, _NOT_DIGITS)[-9:].decode()

    def mask(self, value: str) -> str:
        return mask_digits(value, 4, 2)
