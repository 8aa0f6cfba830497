"""Text helpers shared by detectors: accent-insensitive patterns and word boundaries.

Detectors scan UTF-8 bytes (extraction hands them UTF-8 whatever the source encoding), so
accent-insensitivity is built into the byte pattern: every letter that can carry an accent
matches its accented forms (either case, precomposed or followed by a combining mark).
"""

from __future__ import annotations

import re
import unicodedata

_ACCENTED = {
    "a": "àâäáãåÀÂÄÁÃÅ",
    "c": "çÇ",
    "e": "éèêëÉÈÊË",
    "i": "îïíìÎÏÍÌ",
    "n": "ñÑ",
    "o": "ôöóòõÔÖÓÒÕ",
    "u": "ùûüúÙÛÜÚ",
    "y": "ÿýŸÝ",
}
# A combining diacritical mark (U+0300-U+036F) after a base letter (NFD text).
_COMBINING = rb"(?:\xcc[\x80-\xbf]|\xcd[\x80-\xaf])?"
_SPACE = rb"(?:[\s_\-]|\xc2\xa0){1,3}"
_APOSTROPHE = rb"(?:'|\xe2\x80\x99|`)?\s?"


def strip_accents(text: str) -> str:
    """`Viamédis` -> `Viamedis`."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def fold_key(text: str) -> str:
    """Accent- and case-free key with separators collapsed: `Mutuelle  Générale` -> `mutuelle generale`."""
    return re.sub(r"[\s_\-]+", " ", strip_accents(text).casefold()).strip()


def folded_pattern(text: str) -> bytes:
    """A Hyperscan byte pattern (to compile caseless) matching `text` accent-insensitively.

    Spaces, hyphens and underscores between words are interchangeable (`Malakoff-Humanis`,
    `Malakoff Humanis`); typographic and straight apostrophes are too.
    """
    out: list[bytes] = []
    for ch in strip_accents(text).lower():
        if ch in " -_":
            if not out or out[-1] != _SPACE:
                out.append(_SPACE)
        elif ch in "'\u2019":
            out.append(_APOSTROPHE)
        elif ch in _ACCENTED:
            forms = [ch.encode()] + [a.encode() for a in _ACCENTED[ch]]
            out.append(b"(?:" + b"|".join(forms) + b")" + _COMBINING)
        elif ch.isascii():
            out.append(re.escape(ch).encode())
        else:
            out.append(re.escape(ch).encode())
    return b"".join(out)


def _char_before(buf: bytes, pos: int) -> str:
    """The character ending just before byte offset `pos` of UTF-8 `buf` ('' at the start)."""
    start = pos - 1
    while start > 0 and pos - start < 4 and 0x80 <= buf[start] < 0xC0:
        start -= 1
    return buf[max(start, 0):pos].decode("utf-8", "replace")[-1:] if pos > 0 else ""


def _char_at(buf: bytes, pos: int) -> str:
    """The character starting at byte offset `pos` of UTF-8 `buf` ('' at the end)."""
    return buf[pos:pos + 4].decode("utf-8", "ignore")[:1] if pos < len(buf) else ""


def is_word(ch: str) -> bool:
    """Letters and digits are word characters; underscores separate words (`viamedis_2024.csv`)."""
    return ch.isalnum()


def on_word_boundaries(buf: bytes, start: int, end: int) -> bool:
    """True when buf[start:end] neither starts nor ends inside a word (Unicode-aware)."""
    if start > 0 and buf[start - 1] < 0x80:
        before_ok = not chr(buf[start - 1]).isalnum()
    else:
        before_ok = not is_word(_char_before(buf, start))
    if end < len(buf) and buf[end] < 0x80:
        return before_ok and not chr(buf[end]).isalnum()
    return before_ok and not is_word(_char_at(buf, end))


def is_digit_at(buf: bytes, pos: int) -> bool:
    """True when byte `pos` exists and is an ASCII digit."""
    return 0 <= pos < len(buf) and 48 <= buf[pos] <= 57


# Words that make a nearby ambiguous name or a bare 13-character number health-insurance data.
HEALTH_CONTEXT = re.compile(
    r"mutuel|assur|sant[eé]|tiers[ -]?payant|compl[eé]mentaire|adh[eé]rent|garantie|"
    r"pr[eé]voyance|rembourse|cotisation|s[eé]curit[eé] sociale|\bnir\b|\bamc\b|ayant[ -]droit|"
    r"b[eé]n[eé]ficiaire|contrat|organisme|insurer|insurance|health",
    re.IGNORECASE,
)


def has_health_context(buf: bytes, start: int, end: int, radius: int = 300) -> bool:
    """True when health-insurance words appear within `radius` bytes around buf[start:end]."""
    window = buf[max(0, start - radius):end + radius].decode("utf-8", "replace")
    return HEALTH_CONTEXT.search(window) is not None
