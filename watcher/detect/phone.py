"""French phone numbers: 10 digits starting with 0, or +33 / 0033 and 9 digits."""

from __future__ import annotations

from typing import Iterator

from ..privacy import mask_digits
from .base import NOT_BEFORE_DIGIT, Hits, Pattern, Window, number_end

# One separator style per number: "05 32 01 30 00" or "0532013000", not "0532 0130 00"
# (the groups of four of an IBAN).
_PAIRS = [rb"[0-9]{8}"] + [rb"(?:" + sep + rb"[0-9]{2}){4}" for sep in (b" ", rb"\.", b"-")]
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)


class PhoneDetector:
    name = "phone"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        national = [rb"(?:^|[^0-9+])0[1-9]" + pairs + NOT_BEFORE_DIGIT for pairs in _PAIRS]
        international = [
            rb"(?:\+33|(?:^|[^0-9])0033)[ .\-]?(?:\(0\))?[1-9]" + pairs + NOT_BEFORE_DIGIT for pairs in _PAIRS
        ]
        return [Pattern(expr) for expr in national + international]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for _, ends in hits:
            for end in ends:
                end = number_end(buf, end)
                yield "+33" + buf[max(0, end - 16):end].translate(None, _NOT_DIGITS)[-9:].decode()

    def mask(self, value: str) -> str:
        return mask_digits(value, 4, 2)
