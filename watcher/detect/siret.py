"""SIRET (14 digits) and SIREN (9 digits): company identifiers, Luhn-checked.

La Poste is the exception: SIREN 356000000, whose SIRETs pass on a digit sum multiple of 5
(the rule of python-stdnum's `fr.siret`, used as the test oracle). A bare 9-digit number is too
common to be a SIREN on its own: SIREN counts when grouped `123 456 789` or after a `SIREN` label.
"""

from __future__ import annotations

import re
from enum import IntEnum
from collections.abc import Iterator

from ..privacy import mask_digits
from .base import FAILED, NOT_AFTER_DIGIT, NOT_BEFORE_DIGIT, Hits, Pattern, Window, number_end, tagged
from .compiled import speedups
from .luhn import luhn_ok

_SEP = rb"[ .]?"
_SIRET = (NOT_AFTER_DIGIT + rb"[0-9]{3}" + _SEP + rb"[0-9]{3}" + _SEP + rb"[0-9]{3}" + _SEP + rb"[0-9]{5}"
          + NOT_BEFORE_DIGIT)
_SIREN_GROUPED = NOT_AFTER_DIGIT + rb"[0-9]{3} [0-9]{3} [0-9]{3}" + NOT_BEFORE_DIGIT
_SIREN_LABELLED = rb"\bsiren\b[^0-9\n]{0,10}[0-9]{9}" + NOT_BEFORE_DIGIT
_GROUP_CONTINUES = re.compile(rb"[ .][0-9]")


LA_POSTE = "356000000"


def siret_ok(number: str) -> bool:
    """A valid SIREN, then Luhn on all 14 digits, or for La Poste's establishments a digit
    sum that is a multiple of 5."""
    if number.startswith(LA_POSTE):
        return sum(ord(c) - 48 for c in number) % 5 == 0
    return luhn_ok(number[:9]) and luhn_ok(number)


def _last_digits(buf: bytes, end: int, count: int) -> str:
    return re.sub(rb"[^0-9]", b"", buf[max(0, end - count - 8):end])[-count:].decode()


class SiretTag(IntEnum):
    """The SIRET detector's patterns, by the tag the engine reports with their matches."""

    SIREN_LABELLED = 0  # `SIREN` and 9 digits
    SIRET = 1           # 14 digits, grouped 3-3-3-5 or not (left to `_speedups` when built)
    SIREN_GROUPED = 2   # `NNN NNN NNN` (left to `_speedups` when built)


class SiretDetector:
    """Counts SIRETs; SIRENs are reported as `siren:` values and counted with them.

    SIRETs and grouped SIRENs through the compiled number pass (`_speedups.scan_numbers`)
    when built, else through Hyperscan; labelled SIRENs through Hyperscan.
    """

    name = "siret"
    sensitive = True

    def __init__(self, compiled: bool = True) -> None:
        self.compiled = bool(compiled and speedups)

    def patterns(self) -> list[Pattern]:
        patterns = {SiretTag.SIREN_LABELLED: Pattern(_SIREN_LABELLED)}
        if not self.compiled:
            patterns |= {SiretTag.SIRET: Pattern(_SIRET), SiretTag.SIREN_GROUPED: Pattern(_SIREN_GROUPED)}
        return tagged(patterns)

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for tag, ends in hits:
            if tag == SiretTag.SIRET:
                for end in ends:
                    number = _last_digits(buf, number_end(buf, end), 14)
                    yield number if siret_ok(number) else FAILED
                continue
            grouped = tag == SiretTag.SIREN_GROUPED
            for end in ends:
                end = number_end(buf, end)
                if grouped and _GROUP_CONTINUES.match(buf, end):
                    continue  # the first groups of a grouped SIRET
                number = _last_digits(buf, end, 9)
                yield "siren:" + number if luhn_ok(number) else FAILED

    def mask(self, value: str) -> str:
        kind, _, number = value.rpartition(":")
        return (f"{kind} " if kind else "") + mask_digits(number, 3, 2)
