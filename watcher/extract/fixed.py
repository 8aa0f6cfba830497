"""Fixed-width records: a NIR field glued to the fields around it.

Mainframe flat files (the tiers-payant exchanges with the Assurance Maladie among them) write
their fields side by side without separators: `0001234184127512345640198412010MGEN...`. The
NIR detector never reads a NIR inside a longer run of digits (a random 15-digit window passes
its checks about 1 time in 400), so such a file showed none. A field, though, sits at the same
offset on every record: an offset where most records of the document's head hold a valid NIR
(structure and key; by chance, 1 in 400 per record) is a NIR field, and the NIR at that offset
of every record is read as a part of its own (`FixedField`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator

from ..detect.nir import is_valid

MIN_RECORDS = 5                 # records of the head that must agree
AGREEING = 0.8                  # share of the head's long records valid at the offset
MAX_RECORD = 2048               # a longer line is no record
_GLUED = re.compile(rb"[0-9]{16,}")
_WINDOW = 15


def nir_fields(head: bytes) -> list[int]:
    """The offsets of the NIR fields of the fixed-width records of `head` (several: the insured
    person and a beneficiary, say), none when it holds no such records. Records are the lines
    of the commonest length; an offset is tried until too many records fail it, so a head of
    long numbers that are no NIRs costs a few tens of milliseconds once."""
    if sum(1 for _ in itertools.islice(_GLUED.finditer(head, 0, 256 * 1024), MIN_RECORDS)) < MIN_RECORDS:
        return []                                                   # the common case: no glued digits
    lines = [line.rstrip(b"\r") for line in head[:256 * 1024].split(b"\n")[:-1]]
    lengths = Counter(len(line) for line in lines if _WINDOW < len(line) <= MAX_RECORD and _GLUED.search(line))
    if not lengths:
        return []
    length = lengths.most_common(1)[0][0]
    records = [line for line in lines if len(line) == length][:200]
    if len(records) < MIN_RECORDS:
        return []
    need = max(MIN_RECORDS, math.ceil(AGREEING * len(records)))
    fields: list[int] = []
    for offset in range(length - _WINDOW + 1):
        if fields and offset < fields[-1] + _WINDOW:
            continue
        misses = 0
        for record in records:
            if not _valid(record[offset:offset + _WINDOW]):
                misses += 1
                if misses > len(records) - need:
                    break
        else:
            fields.append(offset)
    return fields


def _valid(window: bytes) -> bool:
    return len(window) == _WINDOW and window[:1] in b"1234" and is_valid(window.decode("ascii", "replace").upper())


class FixedField:
    """Collects the NIR-long windows at `offsets` of each record as text streams past, for one
    part of their own: one window a line, which the NIR detector reads as a compact NIR (or
    not: every check still applies). 16 bytes a record and field."""

    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets
        self._carry = b""
        self._windows = bytearray()

    def feed(self, chunk: bytes) -> None:
        lines = (self._carry + chunk).split(b"\n")
        self._carry = lines.pop()[:MAX_RECORD + 1]
        for line in lines:
            self._add(line)

    def _add(self, line: bytes) -> None:
        if len(line) <= MAX_RECORD:
            for offset in self.offsets:
                self._windows += line[offset:offset + _WINDOW] + b"\n"

    def chunks(self) -> Iterator[bytes]:
        """The windows, a line each (the last record's too)."""
        self._add(self._carry.rstrip(b"\r"))
        windows, self._windows = bytes(self._windows), bytearray()
        yield windows
