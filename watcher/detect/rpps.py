"""RPPS: the 11-digit identifier of a health professional (starts with 10, Luhn key)."""

from __future__ import annotations

from collections.abc import Iterator

from ..privacy import mask_digits
from .base import FAILED, NOT_AFTER_DIGIT, NOT_BEFORE_DIGIT, Hits, Pattern, Window, number_end
from .compiled import speedups
from .luhn import luhn_ok


class RppsDetector:
    name = "rpps"
    sensitive = True

    def __init__(self, compiled: bool = True) -> None:
        self.compiled = bool(compiled and speedups)     # found by `_speedups.scan_numbers` instead

    def patterns(self) -> list[Pattern]:
        return [] if self.compiled else [Pattern(NOT_AFTER_DIGIT + rb"10[0-9]{9}" + NOT_BEFORE_DIGIT)]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for _, ends in hits:
            for end in ends:
                end = number_end(buf, end)
                number = buf[end - 11:end].decode()
                yield number if luhn_ok(number) else FAILED

    def mask(self, value: str) -> str:
        return mask_digits(value, 2, 2)
