"""Bytes to UTF-8: sniff the encoding from the head, then decode chunk by chunk.

BOMs first; UTF-16 without a BOM by its NUL bytes (spreadsheet exports); UTF-8 when the head
is valid UTF-8; cp1252 (a superset of Latin-1 used by French Windows exports) otherwise.
Undecodable bytes become U+FFFD: decoding never fails.

`plain_spaces_and_digits` writes the Unicode spaces of French typography (U+202F narrow
no-break space: what Excel's fr-FR number formats produce; U+2009 thin space; the other
U+2000-U+200A spaces) as plain spaces, and full-width digits as ASCII digits, so `1\u202f84`
reads as `1 84` for every detector and shape reader (NBSP stays: the detectors know it).

Decomposed text is composed (NFC) in the Stream-Safe Text Format of UAX #15: a combining
grapheme joiner after every 30 combining marks in a row, so a hostile run of marks costs
linear time (Python sorts a run of marks by insertion: 300 KB of them took a minute).
"""

from __future__ import annotations

import codecs
import functools
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator

from ..detect.compiled import speedups

_COMBINING = re.compile("[\u0300-\u036f]")
STREAM_SAFE_RUN = 30                # UAX #15: at most 30 non-starters in a row
_CGJ = "\u034f"                     # combining grapheme joiner: a starter that changes no text
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def sniff_encoding(head: bytes) -> str:
    """The encoding of a document, judged on its first bytes."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    sample = head[:4096]
    if len(sample) >= 4:
        odd_nuls = sample[1::2].count(0) / (len(sample) // 2)
        even_nuls = sample[0::2].count(0) / (len(sample) // 2)
        if odd_nuls > 0.4 and even_nuls < 0.05:
            return "utf-16-le"
        if even_nuls > 0.4 and odd_nuls < 0.05:
            return "utf-16-be"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the head is still UTF-8.
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return "utf-8"
        return "cp1252"


def to_utf8(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Re-encode a chunk stream to UTF-8 NFC (a multi-byte character may span chunks).

    Decomposed accents (`e` + U+0301, from macOS file names or some exports) are composed,
    so `Viame\u0301dis` reads as `Viamédis` for every detector.
    """
    if encoding == "utf-8":
        yield from _utf8_passthrough(chunks)
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield _nfc(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        yield _nfc(tail)


def _utf8_passthrough(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """UTF-8 in, the same bytes out when they are valid and composed (the common case:
    no re-encoding); a character cut at a chunk end waits for the next chunk."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        cut = _complete_prefix(data)
        data, carry = data[:cut], data[cut:]
        if data:
            yield _valid_utf8(data)
    if carry:
        yield _valid_utf8(carry)


def _complete_prefix(data: bytes) -> int:
    """Length of `data` without a trailing, incomplete multi-byte character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:                       # a lead byte: is its sequence complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)


def _valid_utf8(data: bytes) -> bytes:
    if b"\xcc" in data or b"\xcd" in data:      # maybe combining marks: compose them
        return _nfc(data.decode("utf-8", "replace"))
    if speedups.utf8_valid(data) if speedups else _decodes(data):   # C: no string built
        return data
    return data.decode("utf-8", "replace").encode("utf-8")


_EXOTIC = re.compile(rb"\xe2\x80[\x80-\x8a\xaf]|\xef\xbc[\x90-\x99]")


def _plain(match: re.Match[bytes]) -> bytes:
    found = match.group(0)
    return b" " if found[1] == 0x80 else bytes([found[2] - 0x90 + 0x30])


def plain_spaces_and_digits(data: bytes) -> bytes:
    """UTF-8 `data` (whole characters) with Unicode spaces as ` ` and full-width digits as
    ASCII; the same object when there is none. The lead bytes are looked for alone first: a
    one-byte search is memchr (0.05 ms a MiB), a two-byte one 30 times slower (measured)."""
    if (b"\xe2" not in data or b"\xe2\x80" not in data) and (b"\xef" not in data or b"\xef\xbc" not in data):
        return data
    return _EXOTIC.sub(_plain, data)


def _decodes(data: bytes) -> bool:
    """What `_speedups.utf8_valid` says, in Python."""
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _nfc(text: str) -> bytes:
    if _COMBINING.search(text):
        text = unicodedata.normalize("NFC", stream_safe(text))
    return text.encode("utf-8", "replace")


def stream_safe(text: str) -> str:
    """`text` with a combining grapheme joiner after each 30 non-starters in a row."""
    return _long_nonstarter_run().sub(f"\\g<0>{_CGJ}", text)


@functools.lru_cache(maxsize=1)
def _long_nonstarter_run() -> re.Pattern[str]:
    """30 characters of non-zero combining class followed by another one (the classes come
    from this Python's unicodedata; built on first use, about 0.1 s)."""
    ranges: list[str] = []
    start = None
    for code in range(sys.maxunicode + 2):
        if code <= sys.maxunicode and unicodedata.combining(chr(code)):
            start = code if start is None else start
        elif start is not None:
            ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    marks = "[" + "".join(ranges) + "]"
    return re.compile(f"{marks}{{{STREAM_SAFE_RUN}}}(?={marks})")


def decode_text(data: bytes) -> str:
    """A whole small document as text (HTML pages, blobs)."""
    return b"".join(to_utf8([data], sniff_encoding(data[:65536]))).decode("utf-8")
