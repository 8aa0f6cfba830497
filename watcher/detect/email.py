"""E-mail addresses (counted and fingerprinted; masked to first letter + domain).

Hyperscan anchors on the `@` and the domain (a pattern starting with a character class
would be slow); the local part is recovered from the bytes before the `@`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..privacy import mask_email
from .base import Hits, Pattern, Window

_LOCAL = re.compile(rb"(?<![a-z0-9._%+\-])[a-z0-9][a-z0-9._%+\-]{0,63}$", re.IGNORECASE)


class EmailDetector:
    name = "email"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [Pattern(rb"[a-z0-9]@[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.[a-z]{2,24}")]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        ends: dict[int, int] = {}          # position of the @ -> furthest end of the domain
        for _, positions in hits:
            for end in positions:
                at = buf.rfind(b"@", max(0, end - 255), end)
                if ends.get(at, -1) < end:
                    ends[at] = end
        for at, end in ends.items():
            local = _LOCAL.search(buf, max(0, at - 64), at)
            if local:
                yield (local.group(0) + buf[at:end]).decode("ascii").lower()

    def mask(self, value: str) -> str:
        return mask_email(value)
