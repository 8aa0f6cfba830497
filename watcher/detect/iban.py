"""IBAN in compact or grouped-by-four form: its country's length (the SWIFT registry, as
python-stdnum keeps it) and the ISO 7064 mod 97-10 check. Without the length, a random run of
letters and digits passed 1 time in 50 (`bf5016f40704d049`, a PrivateBin id, as a 15-character
IBAN of Burkina Faso, whose IBANs have 28)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

from ..privacy import mask_iban
from .base import Hits, Pattern, Window
from .compiled import speedups

# Hyperscan looks for the start of an IBAN only (country, check digits, first group): one
# report per IBAN, where the whole pattern reported every group end (16 for a grouped one).
_START = rb"(?:^|[^A-Za-z0-9])[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}"
_IBAN = re.compile(rb"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?")


def valid_length_py(candidate: str) -> int:
    """The longest length L >= 15 at which candidate[:L] passes the ISO 7064 mod 97 check, or 0.

    One pass over the characters: the remainder of every prefix of the account part, then
    the country and check digits appended. (python-stdnum's `iban.is_valid` also checks each
    country's format, at 75 us a call: it dominated the scan of text with many IBANs.)
    """
    head = int("".join(str(int(c, 36)) for c in candidate[:4]))
    head_digits = len("".join(str(int(c, 36)) for c in candidate[:4]))
    remainders = []
    remainder = 0
    for char in candidate[4:]:
        value = int(char, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
        remainders.append(remainder)
    scale = pow(10, head_digits, 97)
    for length in range(len(candidate), 14, -1):
        if (remainders[length - 5] * scale + head) % 97 == 1:
            return length
    return 0


_checked_length = speedups.iban_length if speedups else valid_length_py


@functools.cache
def country_lengths() -> dict[str, int]:
    """Each country's IBAN length, from python-stdnum's copy of the SWIFT registry (read once,
    when a first IBAN-shaped run is checked)."""
    from stdnum import numdb

    lengths = {}
    for _, low, high, properties, _ in numdb.get("iban").prefixes:
        bban = properties.get("bban", "")
        if low == high and len(low) == 2 and bban:
            lengths[low] = 4 + sum(int(n) for n in re.findall(r"([0-9]+)!?[nac]", bban))
    return lengths


def valid_length(candidate: str) -> int:
    """The length of the IBAN `candidate` starts with (upper-case, no spaces): its country's,
    when that prefix passes mod 97; else 0."""
    length = country_lengths().get(candidate[:2], 0)
    return length if length and len(candidate) >= length and _checked_length(candidate[:length]) == length else 0


def registered(values: Iterable[str]) -> list[str]:
    """The IBANs the compiled number pass found (each its longest prefix passing mod 97), cut
    to their country's length, those that pass there."""
    return [value[:length] for value in values if (length := valid_length(value))]


class IbanDetector:
    name = "iban"
    sensitive = True

    def __init__(self, compiled: bool = True) -> None:
        self.compiled = bool(compiled and speedups)     # found by `_speedups.scan_numbers` instead

    def patterns(self) -> list[Pattern]:
        return [] if self.compiled else [Pattern(_START, caseless=False)]

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for _, ends in hits:
            for end in ends:
                match = _IBAN.match(buf, end - (9 if buf[end - 5] == 0x20 else 8))
                if not match:
                    continue
                # The longest candidate may have swallowed a following word: shorten until valid.
                raw = match.group(0).decode("ascii").replace(" ", "")
                length = valid_length(raw)
                if length:
                    yield raw[:length]

    def mask(self, value: str) -> str:
        return mask_iban(value)
