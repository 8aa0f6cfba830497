"""Luhn check digit (SIRET, SIREN, RPPS) on a string of digits, table-driven.

python-stdnum's `luhn.is_valid` is the reference (tests compare against it) but costs about
40 us a call through its generic alphabet handling; this is a few microseconds in Python, and
a tenth of one in C (`_speedups.luhn_ok`, used when built).
"""

from __future__ import annotations

from .compiled import speedups

_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok_py(digits: str) -> bool:
    """True when the Luhn checksum of `digits` (check digit last) is 0."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        total += _DOUBLED[value] if position & 1 else value
    return total % 10 == 0


luhn_ok = speedups.luhn_ok if speedups else luhn_ok_py
