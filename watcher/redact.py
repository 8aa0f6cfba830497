"""One redaction for every exit: what a detector counts is what gets masked.

Everything leak-watcher writes or shows goes through `redact()`: log lines and tracebacks,
what the store keeps (titles, URLs, item ids, errors, notices), alert titles and bodies, the
JSONL sink, and the output of every `watcher` command (`--reveal` aside). Text reaches those
exits from attacker-chosen places (file and zip member names, paste ids, query strings,
titles), so the redaction is built on the detectors themselves:

1. the outgoing text (and its percent-decoded form) is scanned by the same `Scanner` that
   counts identifiers in documents; every sensitive value found (NIR, IBAN, e-mail, phone,
   SIRET/SIREN, RPPS) is located in the text whatever its written form (grouped, dashed,
   thin spaces, glued to letters, lower case, `%40`, a key apart) and replaced by `[NIR]`,
   `[IBAN]`...;
2. NIR-, IBAN- and e-mail-shaped runs the detectors do not count (a NIR with a wrong key is
   still someone's number) are masked too, except inside hexadecimal digests;
3. the result is scanned again: if a detector still counts anything, every token holding a
   digit or an `@` is blanked, and failing that the whole text. What leaves `redact()` is
   therefore text in which no detector counts an identifier (the property tests check it).

`keyed_id()` is for the few places where a raw text is a key (an item id to recognise the item
at the next poll): the masked form plus a keyed fingerprint, so keys stay distinct and stable
without their identifiers. Operator rules are not used here (they are per configuration, the
redaction per process): their values are masked in samples, not in free text.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from .detect import Scanner

__all__ = ["Redactor", "keyed_id", "one_line", "redact", "redact_tree"]

BLANK = "[redacted]"

# --------------------------------------------------------------------------- shapes

_SEP = r"[\s.\-_/]?"
# NIR-shaped: sex, year, month, department (digits or 2A/2B), commune, order, key; no key
# check. Never inside a longer run of digits; letters around are fine (`nir1841...`). Without
# its key a NIR is masked only where the detector counts it (after a label): 13 digits alone
# are as often a millisecond timestamp.
_NIR_BODY = rf"[1-478]{_SEP}\d{{2}}{_SEP}\d{{2}}{_SEP}(?:\d{{2}}|2[AaBb]){_SEP}\d{{3}}{_SEP}\d{{3}}"
_NIR = re.compile(rf"(?<![0-9]){_NIR_BODY}{_SEP}\d{{2}}(?![0-9])")
# ... and a 13-character body after a NIR label, glued to anything (`export_NIR:1841275123456`).
_NIR_LABELLED = re.compile(
    r"(?i)((?:nir|nss|n\W{0,2}\s?s\.?s|num\W?s[eé]cu|s[eé]curit[eé]\ssociale|insee|matricule|immatriculation)"
    rf"[^0-9\n]{{0,30}}?){_NIR_BODY}(?![0-9])"
)
# IBAN-shaped: country, check digits, 11-30 alphanumerics, compact or in groups of four.
# Upper case as written in documents; in any case only when the mod-97 key holds (a shape
# alone would also blank paste ids such as `ab12cdefghijkl`).
_IBAN_BODY = r"[A-Z]{2}\d{2}(?:[0-9A-Z]{11,30}|(?:[ \-][0-9A-Z]{4}){2,7}(?:[ \-][0-9A-Z]{1,3})?)(?![0-9A-Za-z])"
_IBAN = re.compile(r"(?<![0-9A-Za-z])" + _IBAN_BODY)
_IBAN_ANY_CASE = re.compile(r"(?<![0-9A-Za-z])" + _IBAN_BODY, re.IGNORECASE)
# The lookbehind makes a match start only at the beginning of a run: without it, a long run
# of letters with no '@' costs quadratic time (minutes for a 200 kB line).
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+(?:@|%40)(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}", re.IGNORECASE
)
# Our own hexadecimal tokens stay whole: sha256 and HMAC digests (64), SHA-1 (40), alert ids
# (32), the fingerprint suffix of `keyed_id` (#16). Random hex holds a run of ten digits often
# enough (a phone shape in 2% of alert ids) to matter.
# A token of that shape holding a valid NIR (structure and key) is not ours but a disguise
# (`#a184127500000015` in a title): a sha256 holds a 15-digit run 1 time in 30, its key
# holds 1 time in 97 and the structure about 1 in 200 (1 digest in ~600,000 masked).
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32}|#[0-9a-f]{16})(?![0-9A-Za-z])")
_NIR_RUN = re.compile(r"(?=([0-9]{15}))")


def _is_digest(token: str) -> bool:
    runs = _NIR_RUN.findall(token)
    if not runs:
        return True
    from .detect.nir import is_valid        # here: rare, and the detectors cost a start-up

    return not any(is_valid(run) for run in runs)


class _Digests:
    """`finditer`/`sub` over our digests only (see _HEX_TOKEN)."""

    @staticmethod
    def finditer(text: str) -> list[re.Match[str]]:
        return [m for m in _HEX_TOKEN.finditer(text) if _is_digest(m.group(0))]

    @staticmethod
    def sub(replace: Callable[[re.Match[str]], str], text: str) -> str:
        return _HEX_TOKEN.sub(lambda m: replace(m) if _is_digest(m.group(0)) else m.group(0), text)


_DIGEST = _Digests()
_TOKEN = re.compile(r"[^\s\"'<>()\[\]{},;]*[0-9@][^\s\"'<>()\[\]{},;]*")


def _may_hold_identifier(text: str) -> bool:
    """False only for text no sensitive detector can count anything in: every identifier but
    an e-mail address has at least nine ASCII digits (a SIREN; NIRs 11+, IBANs 13+)."""
    return "@" in text or "%40" in text or sum(map(text.count, "0123456789")) >= 9


def _hide_digests(text: str) -> str:
    """`text` with our digests turned to `x`s of the same length (positions unchanged)."""
    return _DIGEST.sub(lambda match: "x" * len(match.group(0)), text)


def _mask_shapes(text: str) -> str:
    """NIR-, IBAN- and e-mail-shaped runs masked, outside our digests (left whole: random hex
    holds a NIR or an IBAN shape, with a key that holds 1 time in 97, often enough)."""
    pieces, cursor = [], 0
    for digest in _DIGEST.finditer(text):
        pieces += [_mask_shape_runs(text[cursor:digest.start()]), digest.group(0)]
        cursor = digest.end()
    pieces.append(_mask_shape_runs(text[cursor:]))
    return "".join(pieces)


def _mask_shape_runs(text: str) -> str:
    text = _NIR_LABELLED.sub(r"\1[NIR]", _NIR.sub("[NIR]", text))
    text = _IBAN_ANY_CASE.sub(_checked_iban, _IBAN.sub("[IBAN]", text))
    return _EMAIL.sub("[EMAIL]", text)


def _checked_iban(match: re.Match[str]) -> str:
    from .detect.iban import valid_length

    compact = re.sub(r"[ \-]", "", match.group(0)).upper()
    return "[IBAN]" if valid_length(compact) else match.group(0)


# --------------------------------------------------------------------------- locating values

# Characters an identifier may be written across (`1 84 12`, `FR76-3000`, `+33 (0)6`); any
# other character that is not a letter, digit or `@` ends a run, so a value is never located
# across a quote or a comma (a JSON line stays JSON).
_JOINERS = frozenset(".-_/+()") | {chr(c) for c in range(0x3001) if chr(c).isspace() and chr(c) != "\n"}
# Unicode spaces (no-break, thin, figure...) read as a space and full-width digits as ASCII
# ones, as extraction does for documents (`extract.decode`); one character for one, so
# positions in the text do not move.
_PLAIN = {ord(c): " " for c in _JOINERS if c.isspace() and c != " "} | {0xFF10 + d: str(d) for d in range(10)}
_HEX = frozenset("0123456789abcdefABCDEF")

# Where each kind's value is located: (core of the normalized value, digits of the text that
# may precede, digits that may follow). A NIR may be written without its key or with it
# apart; a phone number with 0, 33, 0033 or (0) before its nine digits.
_CORES: dict[str, Callable[[str], tuple[str, int, int]]] = {
    "nir": lambda v: (v.lstrip("~")[:13].lower(), 0, 2),
    "phone": lambda v: (v[-9:], 4, 0),
    "siret": lambda v: (v.rpartition(":")[2], 0, 0),
}


def _core(name: str, value: str) -> tuple[str, int, int]:
    core = _CORES.get(name)
    if core:
        return core(value)
    return "".join(c for c in value.lower() if c.isalnum() or c == "@"), 0, 0


def _skeleton(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text as lower-case letters, digits and `@` (percent-escapes decoded), with the span
    of the text each character came from; `\\n` marks where a run ends."""
    chars: list[str] = []
    spans: list[tuple[int, int]] = []
    i, size = 0, len(text)
    while i < size:
        char, width = text[i], 1
        if char == "%" and i + 2 < size and text[i + 1] in _HEX and text[i + 2] in _HEX:
            # an escaped byte; one of a UTF-8 sequence (`%E2%80%89`, a thin space) joins
            code, width = int(text[i + 1:i + 3], 16), 3
            char = chr(code) if code < 0x80 else "."
        if char.isascii() and (char.isalnum() or char == "@"):
            chars.append(char.lower())
            spans.append((i, i + width))
        elif char not in _JOINERS:
            chars.append("\n")
            spans.append((i, i + width))
        i += width
    return "".join(chars), spans


def _extend(skeleton: str, start: int, end: int, before: int, after: int) -> tuple[int, int]:
    while before and start and skeleton[start - 1].isdigit():
        start, before = start - 1, before - 1
    while after and end < len(skeleton) and skeleton[end].isdigit():
        end, after = end + 1, after - 1
    return start, end


def _locate(text: str, found: dict[str, set[str]]) -> list[tuple[int, int, str]]:
    """Spans of `text` (start, end, kind) holding the values found, in any written form."""
    skeleton, spans = _skeleton(text.translate(_PLAIN))
    located = []
    for name, values in found.items():
        for value in values:
            core, before, after = _core(name, value)
            if not core:
                continue
            at = skeleton.find(core)
            while at >= 0:
                start, end = _extend(skeleton, at, at + len(core), before, after)
                begin = spans[start][0]
                begin -= begin > 0 and text[begin - 1] == "+"           # +33 6...
                located.append((begin, spans[end - 1][1], name))
                at = skeleton.find(core, at + 1)
    return located


def _replace(text: str, located: list[tuple[int, int, str]]) -> str:
    """`text` with each located span (overlaps merged) replaced by `[KIND]`."""
    out, cursor = [], 0
    for start, end, name in sorted(located):
        if start < cursor:                       # overlaps the previous span: extend it
            if end > cursor:
                cursor = end
            continue
        out.append(text[cursor:start])
        out.append(f"[{name.upper()}]")
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


# --------------------------------------------------------------------------- the redactor


class Redactor:
    """Masks identifiers in outgoing text (see the module docstring). Thread-safe: the
    scanner's state is used under a lock; a call made while scanning (a detector that logs)
    falls back to the shapes alone instead of waiting for itself."""

    def __init__(self, scanner: Scanner | None = None) -> None:
        self._scanner = scanner
        self._lock = threading.RLock()
        self._busy = threading.local()

    def __call__(self, text: str) -> str:
        if not _may_hold_identifier(text.translate(_PLAIN)):
            return text
        text = _mask_shapes(text)
        if getattr(self._busy, "on", False):
            return text
        with self._lock:
            self._busy.on = True
            try:
                return self._mask_counted(text)
            finally:
                self._busy.on = False

    def counted(self, text: str) -> dict[str, set[str]]:
        """The sensitive values the detectors count in `text` or its percent-decoded form
        (our digests aside)."""
        text = _hide_digests(text).translate(_PLAIN)
        if not _may_hold_identifier(text):
            return {}
        scanner = self._scanner or self._build()
        found: dict[str, set[str]] = {}
        forms = [text] + ([unquote(text)] if "%" in text else [])
        for form in forms:
            detection = scanner.start()
            detection.scan_text(form.translate(_PLAIN).encode("utf-8", "surrogatepass"))
            for name, values in detection.values.items():
                if values and scanner.by_name[name].sensitive:
                    found.setdefault(name, set()).update(values)
        return found

    def _mask_counted(self, text: str) -> str:
        found = self.counted(text)
        if not found:
            return text
        text = _replace(text, _locate(_hide_digests(text), found))
        if not self.counted(text):
            return text
        text = _TOKEN.sub(BLANK, text)           # a form the locator missed: blank every token
        return text if not self.counted(text) else BLANK

    def _build(self) -> Scanner:
        from .detect import Scanner
        from .detect.compiled import speedups

        # No insurer names: they are not identifiers, and their ~400 patterns tripled the cost.
        self._scanner = Scanner(insurers=[], compiled=bool(speedups))
        return self._scanner


@functools.cache
def _default() -> Redactor:
    return Redactor()


def redact(text: str) -> str:
    """`text` with every identifier masked (this process's shared `Redactor`). Short texts
    are remembered: the daemon asks for the same item ids and URLs at every poll."""
    return _redact_short(text) if len(text) <= SHORT else _default()(text)


def one_line(text: object, limit: int | None = None) -> str:
    """Untrusted text (a title, an error quoting a page) as one printable line of at most
    `limit` characters, redacted: what the store, the alerts and the CLI show of it."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "\u2026"
    return redact(flat)


SHORT = 512


@functools.lru_cache(maxsize=8192)
def _redact_short(text: str) -> str:
    return _default()(text)


def redact_tree(value: Any) -> Any:
    """`redact` applied to every string of a JSON-like value (dicts, lists), keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_tree(item) for item in value]
    if isinstance(value, dict):
        return {redact(str(key)): redact_tree(item) for key, item in value.items()}
    return value


def keyed_id(text: str, fingerprint: Callable[[str, str], str]) -> str:
    """`text` itself when it holds no identifier; else its masked form and 16 hex digits of
    its keyed fingerprint (`privacy.Fingerprinter`), distinct for distinct texts and stable
    across restarts, never the identifier."""
    masked = redact(text)
    return text if masked == text else f"{masked} #{fingerprint('item', text)[:16]}"
