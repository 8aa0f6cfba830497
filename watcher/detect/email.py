"""E-mail addresses (counted and fingerprinted; masked to first letter + domain)."""

from __future__ import annotations

from typing import Iterator

from ..privacy import mask_email
from .base import Pattern, Span
from .iban import longest_per_start

_LOCAL_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


class EmailDetector:
    name = "email"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [Pattern(rb"[a-z0-9][a-z0-9._%+\-]*@[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.[a-z]{2,24}")]

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        for start, end, _ in longest_per_start(spans):
            if start > 0 and buf[start - 1] in _LOCAL_CHARS:
                continue
            yield buf[start:end].decode("ascii").lower()

    def mask(self, value: str) -> str:
        return mask_email(value)
