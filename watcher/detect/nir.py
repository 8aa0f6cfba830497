"""NIR (French social security number): 13 characters + a 2-digit key.

`S YY MM LL CCC OOO KK` — sex, birth year, month, place (département + commune, or 97x/98x +
commune, or 99 + country), order number, key = 97 - (body mod 97) with 2A -> 19, 2B -> 18.

Matched in every written form (compact, grouped 1-2-2-2-3-3-2 by spaces, dots, dashes or
no-break spaces, key apart), never inside a longer run of digits. A 13-character NIR without
its key counts only after a label that says what it is (`NIR :`, `n° SS`, `matricule`...);
the tabular detector handles `nir;cle` columns through `complete()`.
"""

from __future__ import annotations

import re
from typing import Iterator

from ..privacy import mask_nir
from .base import Pattern, Span
from .text import is_digit_at

MONTHS = frozenset(
    [f"{m:02d}" for m in range(1, 13)] + ["20"] + [f"{m}" for m in range(30, 43)] + [f"{m}" for m in range(50, 100)]
)
_MONTH = rb"(?:0[1-9]|1[0-2]|20|3[0-9]|4[0-2]|[5-9][0-9])"
_SEPARATORS = (b"", b" ", rb"\.", b"-", rb"\xc2\xa0")
_KEY_SEPARATOR = rb"(?:[ ./\-]|\xc2\xa0)?"
_DELETE = b" .-/\xc2\xa0\t"
# Labels that make a bare 13-character number a NIR (accent- and case-insensitive).
_E = rb"(?:e|\xc3\xa9|\xc3\x89)"
_LABEL = (
    rb"(?:\bnir|\bn(?:o|\xc2\xb0|\xc2\xba|um(?:" + _E + rb"ro)?)?\.?\s?(?:de\s)?(?:s\.?s\b\.?|s" + _E + rb"cu)"
    rb"|\bnss\b|s" + _E + rb"curit" + _E + rb"\ssociale|\binsee|\bmatricule)"
)
_LABEL_GAP = rb"[^0-9\n]{0,30}?"
_KEY_AFTER = re.compile(r"^\s{0,3}[./:\-]?\s{0,3}(?:cl[eé]\s{0,3}[:=]?\s{0,3})?(\d{2})(?!\d)", re.IGNORECASE)


def _body(sep: bytes) -> bytes:
    return (
        rb"[1-4]" + sep + rb"[0-9]{2}" + sep + _MONTH + sep + rb"(?:[0-9]{2}|2[AB])" + sep
        + rb"[0-9]{3}" + sep + rb"[0-9]{3}"
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
    if len(body) != 13 or body[0] not in "1234" or body[3:5] not in MONTHS or body[10:13] == "000":
        return False
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
    return len(nir) == 15 and nir[13:].isdigit() and structure_ok(nir[:13]) and int(nir[13:]) == nir_key(nir[:13])


def normalize(text: str) -> str:
    """Drop separators and upper-case: `2 53 07 2a 073 004 43` -> `255072A07300443`."""
    return re.sub(r"[\s.\-/]", "", text).upper()


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
        if not key.isdigit() or int(key) != expected:
            return None
    return f"{body}{expected:02d}"


class NirDetector:
    name = "nir"
    sensitive = True

    def patterns(self) -> list[Pattern]:
        full = [Pattern(_body(sep) + _KEY_SEPARATOR + rb"[0-9]{2}") for sep in _SEPARATORS]
        labelled = [Pattern(_LABEL + _LABEL_GAP + _body(sep)) for sep in _SEPARATORS]
        return full + labelled

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        full_forms = len(_SEPARATORS)
        for start, end, tag in spans:
            if is_digit_at(buf, end):
                continue
            if tag < full_forms:
                if is_digit_at(buf, start - 1):
                    continue
                nir = buf[start:end].translate(None, _DELETE).decode("ascii", "replace").upper()
                if is_valid(nir):
                    yield nir
            else:
                value = self._labelled(buf, start, end)
                if value:
                    yield value

    @staticmethod
    def _labelled(buf: bytes, start: int, end: int) -> str | None:
        """A 13-character body after a label; a key right after it must match."""
        tail = buf[max(start, end - 40):end].decode("utf-8", "replace")
        body = normalize(tail)[-13:]
        after = _KEY_AFTER.match(buf[end:end + 30].decode("utf-8", "replace"))
        return complete(body, after.group(1) if after else None)

    def mask(self, value: str) -> str:
        return mask_nir(value)
