"""SIRET (14 digits) and SIREN (9 digits): company identifiers, Luhn-checked.

python-stdnum knows the La Poste exception (SIREN 356000000, whose SIRETs pass on a digit
sum multiple of 5). A bare 9-digit number is too common to be a SIREN on its own: SIREN
counts when grouped `123 456 789` or after a `SIREN` label.
"""

from __future__ import annotations

import re
from typing import Iterator

from stdnum.fr import siren, siret

from ..privacy import mask_digits
from .base import Pattern, Span
from .text import is_digit_at

_GROUP_SEP = rb"[ \xa0.]?"
_SIRET = rb"[0-9]{3}" + _GROUP_SEP + rb"[0-9]{3}" + _GROUP_SEP + rb"[0-9]{3}" + _GROUP_SEP + rb"[0-9]{5}"
_SIREN_GROUPED = rb"[0-9]{3} [0-9]{3} [0-9]{3}"
_SIREN_LABELLED = rb"\bsiren\b[^0-9\n]{0,10}[0-9]{9}"
_FOLLOWED_BY_DIGIT = re.compile(rb"^[ .\xa0]?[0-9]")


def _digits(raw: bytes) -> str:
    return re.sub(rb"[^0-9]", b"", raw).decode()


class SiretDetector:
    """Counts SIRETs; SIRENs are reported as `siren:` values and counted apart."""

    name = "siret"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        return [Pattern(_SIRET), Pattern(_SIREN_GROUPED), Pattern(_SIREN_LABELLED)]

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        for start, end, tag in spans:
            if is_digit_at(buf, end) or (tag < 2 and is_digit_at(buf, start - 1)):
                continue
            if tag == 0:
                number = _digits(buf[start:end])
                if siret.is_valid(number):
                    yield number
            else:
                if tag == 1 and _FOLLOWED_BY_DIGIT.match(buf[end:end + 3]):
                    continue  # the first groups of a grouped SIRET
                number = _digits(buf[start:end])[-9:]
                if siren.is_valid(number):
                    yield "siren:" + number

    def mask(self, value: str) -> str:
        kind, _, number = value.rpartition(":")
        return (f"{kind} " if kind else "") + mask_digits(number, 3, 2)
