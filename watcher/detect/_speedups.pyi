"""Types of the compiled helpers in `_speedups.c` (see its opening comment for what each does
and `watcher.detect.compiled` for when they are used). Every function takes its arguments by
position only (METH_O, or METH_VARARGS with PyArg_ParseTuple)."""

from typing import Final

from _typeshed import ReadableBuffer

# The lists of `scan_numbers`, in the order it returns them, and the kinds of its failed-check
# counts: checked against watcher.detect's NUMBER_KINDS and CHECKED at import.
NUMBER_KINDS: Final[tuple[str, ...]]
FAILED_KINDS: Final[tuple[str, ...]]

def scan_numbers(
    buf: ReadableBuffer, lo: int, hi: int, /
) -> tuple[list[str], list[str], list[str], list[str], list[str], list[str], tuple[int, int, int]]:
    """(nirs, rarer-form nirs, sirets, rpps, phones, ibans, (failed nirs, sirets, rpps)) whose
    matches end in (lo, hi]."""

def luhn_ok(digits: str, /) -> bool:
    """True when the Luhn checksum of a string of digits is 0 (ValueError on a non-digit)."""

def iban_length(candidate: str, /) -> int:
    """Longest length >= 15 at which an IBAN candidate passes mod 97, or 0."""

def count_lines(data: ReadableBuffer, /) -> int:
    """Newlines that end a line holding something (blank lines are not records)."""

def base64_run(data: ReadableBuffer, /) -> bool:
    """True when the bytes hold a base64 block worth decoding (see blobs.py)."""

def utf8_valid(data: ReadableBuffer, /) -> bool:
    """True when the bytes are valid UTF-8 (what bytes.decode accepts)."""

def cmac_input(data: ReadableBuffer, separator: int, pad: ReadableBuffer, /) -> bytes | None:
    """`data` XOR `pad` block by block, or None unless each 16-byte block ends with the only
    `separator` in it."""

def block_keys(blocks: ReadableBuffer, /) -> bytes:
    """The first 8 bytes of each 16-byte block read big-endian, sorted, distinct (native uint64)."""

def sorted_hits(members: ReadableBuffer, keys: ReadableBuffer, /) -> bytes:
    """The `keys` found among `members` (both native uint64, ascending), in order."""
