"""NIR (French social security number): 13 characters + a 2-digit key.

`S YY MM LL CCC OOO KK` — sex, birth year, month, place (département + commune, or 97x/98x +
commune, or 99 + country), order number, key = 97 - (body mod 97) with 2A -> 19, 2B -> 18.

Matched in every written form (compact, grouped 1-2-2-2-3-3-2 by spaces, dots, dashes or
no-break spaces; the key apart, in brackets or after `clé`; and as a number with its
thousands grouped, `184 127 512 345 678`, as a spreadsheet's number format shows it and Excel
exports it to CSV), never inside a longer run of digits. A 13-character NIR without its key
counts only after a label that says what it is (`NIR :`, `n° SS`, `matricule`...);
the tabular detector handles `nir;cle` columns through `complete()`.
"""

from __future__ import annotations

import re
from enum import IntEnum
from collections.abc import Iterator

from ..privacy import mask_nir
from .base import FAILED, NOT_AFTER_DIGIT, NOT_BEFORE_DIGIT, Hits, Pattern, Window, number_end, tagged
from .compiled import speedups

# The months the Assurance Maladie's own validator accepts: 01-12, 20 (unknown) and 21-99
# (30-42 and 50-99: incomplete birth certificates; 21-29 and 43-49 exist too). Only 01-12
# and 20 are the strict form (see LOOSE).
MONTHS = frozenset([f"{m:02d}" for m in range(1, 13)] + [f"{m}" for m in range(20, 100)])
_MONTH = rb"(?:0[1-9]|1[0-2]|[2-9][0-9])"
_SEPARATOR = rb"(?:[ .\-]|\xc2\xa0)?"      # mixed separators are rare, the key check keeps them honest
# The key may stand apart: after a space, dot, dash, slash or no-break space, in the next
# column of a CSV row or an SQL tuple (`1841275123456;40`, `"1841275123456","40"`,
# `'1841275123456', '40'`), in brackets or named (`1841275123456 (40)`, `..., clé : 40`): as
# strong as a compact NIR, since the key must match.
_KEY_WORD = rb" ?\( ?|(?:, ?| )?\(? ?[cC][lL](?:[eE]|\xc3\xa9|\xc3\x89) ?:? ?"
_KEY_SEPARATOR = rb"(?: ?[./\-] ?| |\xc2\xa0|[\x22']? ?[;,\t|] ?[\x22']?|" + _KEY_WORD + rb")?"
_DELETE = b" .-/\xc2\xa0\t;,|\x22'():cClLeE\xa9\x89\xc3"
_SPECIAL_PLACES_B = frozenset([b"20", b"97", b"98", b"99"])
# Labels that make a bare 13-character number a NIR (accent- and case-insensitive).
_E = rb"(?:e|\xc3\xa9|\xc3\x89)"
# A key of JSON or a column of SQL may glue its words: `code_nir`, `codeNir`, `numero_insee`.
_LABEL = (
    rb"(?:(?:\b|_|code|num(?:" + _E + rb"ro)?|no)(?:nir|insee)"
    rb"|\bn(?:o|\xc2\xb0|\xc2\xba|um(?:" + _E + rb"ro)?)?[._\-]?\s?(?:de[\s_\-])?(?:s\.?s\b\.?|s" + _E + rb"cu)"
    rb"|\bs" + _E + rb"cu\b|\bnss\b|s" + _E + rb"curit" + _E + rb"\ssociale|(?:\b|_)matricule|\bimmatriculation"
    rb"|assur" + _E + rb"s?\ssocial)"
)
_LABEL_GAP = rb"[^0-9\n]{0,30}?"
# Five groups of three digits, one separator throughout: `184 127 512 345 678`, and with a
# no-break space, dots or commas (fr-FR, de-DE, en-US number formats).
_THOUSANDS = rb"[1-4][0-9]{2}(?:(?: [0-9]{3}){4}|(?:\.[0-9]{3}){4}|(?:,[0-9]{3}){4}|(?:\xc2\xa0[0-9]{3}){4})"
_KEY_AFTER = re.compile(r"^\s{0,3}[./:\-]?\s{0,3}(?:cl[eé]\s{0,3}[:=]?\s{0,3})?(\d{2})(?!\d)", re.IGNORECASE)


def _body(sep: bytes) -> bytes:
    """Sex, year, month, place (never 00), commune, order (never 000) with one separator."""
    return (
        rb"[1-4]" + sep + rb"[0-9]{2}" + sep + _MONTH + sep + rb"(?:0[1-9]|[1-9][0-9]|2[AB])" + sep
        + rb"[0-9]{3}" + sep + rb"(?:00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})"
    )


def nir_key(body: str) -> int:
    """The key of a 13-character body (2A and 2B count as 19 and 18)."""
    place = body[5:7]
    if place == "2A":
        body = body[:5] + "19" + body[7:]
    elif place == "2B":
        body = body[:5] + "18" + body[7:]
    return 97 - int(body) % 97


def structure_ok(body: str) -> bool:
    """Sex, month, place and order checks on a 13-character body (upper-case, no separators)."""
    if len(body) != 13 or not body.isascii() or body[0] not in "1234" or body[3:5] not in MONTHS \
            or body[10:13] == "000":
        return False                     # isascii: `²` and other digits pass isdigit, not int
    if not (body[1:5].isdigit() and body[7:13].isdigit()):
        return False
    dept = body[5:7]
    if dept in ("2A", "2B"):
        return True
    if not dept.isdigit():
        return False
    if dept == "20":                     # Corsica before 1976: 20; from 1976, 2A/2B
        return not 76 <= int(body[1:3]) <= 99
    if dept in ("97", "98"):             # overseas: 3-digit département, 2-digit commune
        return "971" <= body[5:8] <= "989"
    if dept == "99":                     # born abroad: 3-digit country code
        return body[7:10] != "000"
    return "01" <= dept <= "96" and body[7:10] != "000"


def is_valid(nir: str) -> bool:
    """Full check of a normalized 15-character NIR (structure and key)."""
    return (len(nir) == 15 and nir[13:].isascii() and nir[13:].isdigit() and structure_ok(nir[:13])
            and int(nir[13:]) == nir_key(nir[:13]))


def normalize(text: str) -> str:
    """Drop separators and upper-case: `2 53 07 2a 073 004 43` -> `255072A07300443`.

    Chained replaces: several times faster than str.translate or re.sub on short strings.
    """
    return (
        text.replace(" ", "").replace(".", "").replace("-", "").replace("/", "")
        .replace("\xa0", "").replace("\t", "").strip().upper()
    )


def complete(body: str, key: str | None = None) -> str | None:
    """The normalized 15-character NIR for a 13-character body and an optional key.

    With a key, the key must match; without one (a keyless column or label), structure only
    and the key is computed so the same person counts once whatever the form.
    """
    body = normalize(body)
    if not structure_ok(body):
        return None
    expected = nir_key(body)
    if key is not None:
        key = key.strip()
        if not (key.isascii() and key.isdigit()) or int(key) != expected:
            return None
    return f"{body}{expected:02d}"


STRICT_MONTHS = frozenset([f"{m:02d}" for m in range(1, 13)] + ["20"])
_STRICT_MONTHS_B = frozenset(m.encode() for m in STRICT_MONTHS)
_STRICT_SEX = (ord("1"), ord("2"))
# The rarer forms (sex 3/4, months 30-42 and 50-99) are found marked `~nir`: random 15-digit
# numbers pass the permissive structure and the key about 1 in 400, the strict one (sex 1/2,
# month 01-12 or 20) about 1 in 4,000, so the rarer forms count only in a document that is
# health data by other signs (an insurer, health words or columns).
LOOSE = "~"


def take_loose(values: set[str]) -> list[str]:
    """In place: the values of the rarer forms (marked `~`) leave `values`; returns them
    unmarked, for the caller to put back when the document has context (or when they are a
    member's). One comparison per value finds them (`~` sorts after every character of a NIR)
    and the set is never copied (copying a million-value set twice cost a dense extract 10%
    of its CPU and 56 MiB)."""
    loose = [v for v in values if v >= LOOSE]
    values.difference_update(loose)
    return [v[1:] for v in loose]


class NirTag(IntEnum):
    """The NIR detector's patterns, by the tag the engine reports with their matches."""

    LABELLED = 0    # a 13-character body after a label (`NIR :`, `n° SS`...), key optional
    FULL = 1        # a full NIR in every written form (left to `_speedups` when built)
    THOUSANDS = 2   # a full NIR as a number, thousands grouped (left to `_speedups` when built)


class NirDetector:
    """13-character NIRs after a label through Hyperscan; full NIRs through the compiled
    number pass (`_speedups.scan_numbers`, see `Scanner`) when built, else through a
    Hyperscan pattern and `_full`. `compiled=False` forces the Python path (tests compare).
    """

    name = "nir"
    sensitive = True

    def __init__(self, compiled: bool = True) -> None:
        self.compiled = bool(compiled and speedups)

    def patterns(self) -> list[Pattern]:
        body = _body(_SEPARATOR)
        patterns = {NirTag.LABELLED: Pattern(_LABEL + _LABEL_GAP + body + NOT_BEFORE_DIGIT)}
        if not self.compiled:
            patterns[NirTag.FULL] = Pattern(NOT_AFTER_DIGIT + body + _KEY_SEPARATOR + rb"[0-9]{2}" + NOT_BEFORE_DIGIT)
            patterns[NirTag.THOUSANDS] = Pattern(NOT_AFTER_DIGIT + _THOUSANDS + NOT_BEFORE_DIGIT)
        return tagged(patterns)

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for tag, ends in hits:
            if tag == NirTag.FULL:
                yield from self._full(buf, ends)
            elif tag == NirTag.THOUSANDS:
                yield from self._thousands(buf, ends)
            else:
                for end in ends:
                    value = self._labelled(buf, number_end(buf, end))   # a label is context enough
                    if value:
                        yield value

    @staticmethod
    def _full(buf: bytes, ends: list[int]) -> Iterator[str]:
        """The hot path of dense extracts, kept free of calls and on bytes: the pattern
        already checked sex, month, place and order; the key and the rarer places (Corsica,
        overseas, abroad, commune 000) remain. A number of the right structure whose key
        fails yields FAILED (counted by the plausibility test, never a value)."""
        for end in ends:
            if 48 <= buf[end - 1] <= 57:
                raw = buf[end - 40 if end > 40 else 0:end]
            else:
                raw = buf[end - 41 if end > 41 else 0:end - 1]
            nir = raw.translate(None, _DELETE)[-15:]
            place = nir[5:7]
            if place.isdigit():
                if (place in _SPECIAL_PLACES_B or nir[7:10] == b"000") and not structure_ok(nir[:13].decode()):
                    continue
                if 97 - int(nir[:13]) % 97 != int(nir[13:]):
                    yield FAILED
                    continue
                value = nir.decode()
            else:
                value = nir.decode().upper()
                if not structure_ok(value[:13]):
                    continue
                if not is_valid(value):
                    yield FAILED
                    continue
            yield value if nir[0] in _STRICT_SEX and nir[3:5] in _STRICT_MONTHS_B else LOOSE + value

    @staticmethod
    def _thousands(buf: bytes, ends: list[int]) -> Iterator[str]:
        """A NIR as a number with its thousands grouped, unless the groups go on before or
        after it (a longer number); FAILED when only the key fails (`_full`)."""
        for end in ends:
            end = number_end(buf, end)
            width = 2 if buf[end - 5:end - 3] == b"\xc2\xa0" else 1
            separator, start = buf[end - 3 - width:end - 3], end - 15 - 4 * width
            if (buf[start - width:start] == separator and buf[start - width - 1:start - width].isdigit()) \
                    or (buf[end:end + width] == separator and buf[end + width:end + width + 1].isdigit()):
                continue
            value = buf[start:end].replace(separator, b"").decode()
            if not structure_ok(value[:13]):
                continue
            if int(value[13:]) != nir_key(value[:13]):
                yield FAILED
                continue
            yield value if value[0] in "12" and value[3:5] in STRICT_MONTHS else LOOSE + value

    @staticmethod
    def _labelled(buf: bytes, end: int) -> str | None:
        """A 13-character body after a label; a key right after it must match."""
        body = normalize(buf[max(0, end - 40):end].decode("utf-8", "replace"))[-13:]
        after = _KEY_AFTER.match(buf[end:end + 30].decode("utf-8", "replace"))
        return complete(body, after.group(1) if after else None)

    def mask(self, value: str) -> str:
        return mask_nir(value.lstrip(LOOSE))
