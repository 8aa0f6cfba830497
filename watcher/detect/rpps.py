"""RPPS: the 11-digit identifier of a health professional (starts with 10, Luhn key)."""

from __future__ import annotations

from typing import Iterator

from stdnum import luhn

from ..privacy import mask_digits
from .base import Pattern, Span
from .text import is_digit_at


class RppsDetector:
    name = "rpps"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [Pattern(rb"10[0-9]{9}")]

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        for start, end, _ in spans:
            if is_digit_at(buf, start - 1) or is_digit_at(buf, end):
                continue
            number = buf[start:end].decode()
            if luhn.is_valid(number):
                yield number

    def mask(self, value: str) -> str:
        return mask_digits(value, 2, 2)
