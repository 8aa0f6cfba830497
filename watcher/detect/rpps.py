"""RPPS: the 11-digit identifier of a health professional (starts with 10, Luhn key)."""

from __future__ import annotations

from typing import Iterator

from stdnum import luhn

from ..privacy import mask_digits
from .base import NOT_AFTER_DIGIT, Pattern, Span, Window
from .text import is_digit_at


class RppsDetector:
    name = "rpps"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [Pattern(NOT_AFTER_DIGIT + rb"10[0-9]{9}")]

    def find(self, buf: bytes, spans: list[Span], window: Window, found: set[str]) -> Iterator[str]:
        for _, end, _ in spans:
            if is_digit_at(buf, end):
                continue
            number = buf[end - 11:end].decode()
            if luhn.is_valid(number):
                yield number

    def mask(self, value: str) -> str:
        return mask_digits(value, 2, 2)
