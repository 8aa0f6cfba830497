"""French phone numbers: 10 digits starting with 0, or +33 / 0033 and 9 digits."""

from __future__ import annotations

import re
from typing import Iterator

from ..privacy import mask_digits
from .base import Pattern, Span
from .text import is_digit_at

_PAIR = rb"(?:[ .\-]?[0-9]{2}){4}"


class PhoneDetector:
    name = "phone"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [
            Pattern(rb"0[1-9]" + _PAIR),
            Pattern(rb"(?:\+33|0033)[ .\-]?(?:\(0\))?[1-9]" + _PAIR),
        ]

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        for start, end, _ in spans:
            if is_digit_at(buf, end) or (buf[start] != 43 and is_digit_at(buf, start - 1)):
                continue
            digits = re.sub(rb"[^0-9]", b"", buf[start:end]).decode()
            national = digits[-9:]
            yield "+33" + national

    def mask(self, value: str) -> str:
        return mask_digits(value, 4, 2)
