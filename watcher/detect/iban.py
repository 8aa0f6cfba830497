"""IBAN in compact or grouped-by-four form, mod 97-10 checked (python-stdnum)."""

from __future__ import annotations

import re
from typing import Iterator

from stdnum import iban

from ..privacy import mask_iban
from .base import Hits, Pattern, Window


_IBAN = re.compile(rb"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?$")


def _mod97(candidate: str) -> bool:
    """The ISO 7064 check alone: cheap, so the country format (python-stdnum) runs only on
    the one candidate in a hundred that passes it."""
    rearranged = candidate[4:] + candidate[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def longest_per_start(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Hyperscan reports every end a pattern can stop at: keep the longest from each start."""
    best: dict[int, int] = {}
    for start, end in spans:
        if best.get(start, -1) < end:
            best[start] = end
    return list(best.items())


class IbanDetector:
    name = "iban"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [Pattern(rb"(?:^|[^A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?", caseless=False)]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        located = []
        for _, ends in hits:
            for end in ends:
                match = _IBAN.search(buf, max(0, end - 42), end)
                if match:
                    located.append((match.start(), end))
        for start, end in longest_per_start(located):
            # The longest candidate may have swallowed a following word: shorten until valid.
            raw = buf[start:end].decode("ascii").replace(" ", "")
            for length in range(len(raw), 14, -1):
                if _mod97(raw[:length]) and iban.is_valid(raw[:length]):
                    yield raw[:length]
                    break

    def mask(self, value: str) -> str:
        return mask_iban(value)
