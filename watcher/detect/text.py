"""Text helpers shared by detectors: accent-insensitive patterns and word boundaries.

Detectors scan UTF-8 bytes (extraction hands them UTF-8 whatever the source encoding), so
accent-insensitivity is built into the byte pattern: every letter that can carry an accent
matches its accented forms in either case. Extraction composes text (NFC) before it gets
here, so a letter followed by a combining mark arrives as one precomposed character.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from .base import Pattern
from .engine import Engine, default_cache_dir

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


def _forms(letter: str) -> bytes:
    """`letter` or one of its accented forms, as bytes: the two-byte forms grouped by lead
    byte into classes (`(?:e|\xc3[\xa9\xa8...])`), which `re` compiles ten times faster
    than an alternation of every form."""
    by_lead: dict[int, list[int]] = {}
    for accented in _ACCENTED[letter]:
        lead, trail = accented.encode()
        by_lead.setdefault(lead, []).append(trail)
    classes = [re.escape(bytes([lead])) + b"[" + b"".join(re.escape(bytes([t])) for t in trails) + b"]"
               for lead, trails in by_lead.items()]
    return b"(?:" + b"|".join([letter.encode()] + classes) + b")"


_ACCENTED_FORMS = {letter: _forms(letter) for letter in _ACCENTED}
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
            out.append(_ACCENTED_FORMS[ch])
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
    """Letters, digits and combining marks are word characters; underscores separate words
    (`viamedis_2024.csv`).

    A mark belongs to the letter before it: NFC leaves many letters decomposed (Hebrew
    points, Indic nuktas, Hangul tone marks, the composition exclusions), so the character
    right before a name can be the mark of a letter it is glued to (`שׁMAE` is one word).
    """
    return ch.isalnum() or (ch != "" and unicodedata.category(ch)[:1] == "M")


def _end_of_marks(buf: bytes, end: int) -> int:
    """`end` moved past the combining marks that follow it: they accent the name's last
    letter (`MAE` + U+0331 is `MAE` with an accent), so the boundary is after them."""
    while end < len(buf) and buf[end] >= 0x80:
        ch = _char_at(buf, end)
        if not ch or unicodedata.category(ch)[:1] != "M":
            break
        end += len(ch.encode("utf-8"))
    return end


def on_word_boundaries(buf: bytes, start: int, end: int) -> bool:
    """True when buf[start:end] neither starts nor ends inside a word (Unicode-aware)."""
    if start > 0 and buf[start - 1] < 0x80:
        before_ok = not chr(buf[start - 1]).isalnum()
    else:
        before_ok = not is_word(_char_before(buf, start))
    if end < len(buf) and buf[end] < 0x80:
        return before_ok and not chr(buf[end]).isalnum()
    return before_ok and not is_word(_char_at(buf, _end_of_marks(buf, end)))


# What makes a nearby ambiguous name an insurer: French health-insurance words and the column
# names of health-data extracts, nothing else. No English (`health`, `insurance`, `assure`,
# `adherent`: the ambiguous names are English first names and words too), no word that is
# common in another language on its own (`organisme` in id/ro/nl, `garantie` in de/nl/ro,
# `assurance` in en, `contrat`, `complementaire` in nl): those count in a French phrase or as a
# column only. `NIR` is the first name Nir and near-infrared in prose, so it counts only as a
# label (`NIR :`, `nir:`, `n° NIR`; not `Nir:`, a chat handle) or a column name.
_SEP = r"[ _\-]+"
_FRENCH_HEALTH = (
    r"mutuelles?|mutualit[eé]s?|mutualistes?|sant[eé]|tiers" + _SEP + r"payants?|pr[eé]voyance|"
    r"rembourse(?:ments?|r|s|nt)?|rembours[eé]e?s?|cotisations?|s[eé]curit[eé]" + _SEP + r"sociale|"
    r"ayants?" + _SEP + r"droits?|b[eé]n[eé]ficiaires?|carte" + _SEP + r"vitale|cpam|caisse" + _SEP + r"primaire|"
    r"r[eé]gime" + _SEP + r"obligatoire|attestation" + _SEP + r"de" + _SEP + r"droits|assureurs?|"
    r"assur(?:é|ée|és|ées)|adh(?:é|É)rents?|d[’']assurances?|"
    r"assurances?" + _SEP + r"(?:maladie|sant[eé]|compl[eé]mentaires?|pr[eé]voyance|d[eé]c[eè]s|emprunteur)|"
    r"(?:organismes?|couvertures?|assurances?)" + _SEP + r"(?:compl[eé]mentaires?|assureurs?|d['’]assurance)|"
    r"contrats?" + _SEP + r"(?:sant[eé]|collectifs?|responsables?|d['’]assurance)|"
    r"garanties" + _SEP + r"(?:sant[eé]|optique|dentaire|hospitalisation|frais)|"
    r"(?:num[eé]ro|n°|no)" + _SEP + r"(?:de" + _SEP + r")?(?:contrat|adh[eé]rent|s[eé]cu|ss|amc)|code" + _SEP + r"amc"
)
# Column names: alone between delimiters (a CSV/TSV header or cell), or in a snake_case name.
_COLUMNS = r"nir|nss|secu|amc|adh[eé]rent|assur[eé]|mutuelle|organisme|assureur|garanties|contrat|r[eé]gime"
_CELL = (r"(?:(?<=[\n;,\t|])|(?<=[\n;,\t|][ \"']))(?:" + _COLUMNS + r"|rang_naissance)"
         r"(?=[ \"']?[;,\t|\r\n])")
_SNAKE = r"(?<![^\W_])(?:" + _COLUMNS + r")_|_(?:" + _COLUMNS + r")(?![^\W_])"
_NIR_LABEL = r"(?-i:\bNIR|\bnir)[\"']?\s*[:=]|\bn°\s*nir\b"
HEALTH_CONTEXT = re.compile(
    rf"\b(?:{_FRENCH_HEALTH})\b|{_CELL}|{_SNAKE}|{_NIR_LABEL}",
    re.IGNORECASE,
)


class HealthContext:
    """Where HEALTH_CONTEXT occurs in one buffer, found block by block as occurrences ask.

    `near(start, end)`: a context match overlaps the `radius` bytes around buf[start:end]
    (`garanties santé` counts whole when the window cuts it). Each block of the buffer is
    searched at most once, whatever the number of names and occurrences asking: prose naming
    `Mae` or `maaf` every line costs one pass of the regex, not one per occurrence (a 600-byte
    search each, 3 s a MiB in dense prose)."""

    BLOCK = 1024
    HEAD = 8          # characters before a block for the lookbehinds and \b
    TAIL = 128        # a match starting in a block ends within this (the longest phrase)

    def __init__(self, buf: bytes, radius: int = 300) -> None:
        self.buf = buf
        self.radius = radius
        self._spans: dict[int, list[tuple[int, int]]] = {}    # block -> byte spans starting in it

    def near(self, start: int, end: int) -> bool:
        lo, hi = max(0, start - self.radius), min(len(self.buf), end + self.radius)
        first = max(0, lo - self.TAIL) // self.BLOCK       # a match may start before lo
        for block in range(first, (hi - 1) // self.BLOCK + 1):
            if any(s < hi and e > lo for s, e in self._block(block)):
                return True
        return False

    def _block(self, block: int) -> list[tuple[int, int]]:
        if block not in self._spans:
            self._spans[block] = self._search(block)
        return self._spans[block]

    def _search(self, block: int) -> list[tuple[int, int]]:
        """Context spans starting in `block`. The text is decoded with surrogateescape so
        that character offsets map back to byte offsets exactly, even through bad bytes; the
        buffer's start and end read as line ends (a header row at the top of a file)."""
        buf, first = self.buf, block * self.BLOCK
        lo = max(0, first - self.HEAD)
        while lo > 0 and 0x80 <= buf[lo] < 0xC0:
            lo -= 1
        hi = min(len(buf), first + self.BLOCK + self.TAIL)
        text = ("\n" if lo == 0 else "") + buf[lo:hi].decode("utf-8", "surrogateescape")
        text += "\n" if hi == len(buf) else ""
        shift = lo - (1 if lo == 0 else 0)
        spans: list[tuple[int, int]] = []
        done, offset = 0, shift                     # text[:done] is offset - shift bytes long
        for match in HEALTH_CONTEXT.finditer(text):
            offset += len(text[done:match.start()].encode("utf-8", "surrogateescape"))
            done = match.start()
            if first <= offset < first + self.BLOCK:
                spans.append((offset, offset + len(match.group().encode("utf-8", "surrogateescape"))))
        return spans


def _written_pattern(text: str) -> bytes:
    """`text` with each accented letter as written (either case) or without its accent;
    separators and apostrophes interchangeable."""
    out: list[bytes] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in " -_":
            if not out or out[-1] != _SPACE:
                out.append(_SPACE)
        elif ch in "'\u2019":
            out.append(_APOSTROPHE)
        elif not ch.isascii():
            forms = sorted({strip_accents(ch).encode(), ch.lower().encode(), ch.upper().encode()})
            out.append(b"(?:" + b"|".join(forms) + b")")
        else:
            out.append(re.escape(ch).encode())
    return b"".join(out)


def scan_pattern(text: str) -> bytes:
    """The fast Hyperscan pattern for `text`: each accented letter as written or plain.

    A near-literal Hyperscan matches quickly; `folded_pattern` (any accent on any letter,
    either case) is the exhaustive form, used to locate occurrences afterwards. Text with
    accents placed elsewhere than in the watch list is not seen: a trade of a rare miss for
    a much faster scan of dense extracts. (One pattern with local alternatives, where there
    were a plain and an as-written pattern: 4x faster on an extract naming an insurer on
    every row.)
    """
    return _bounded(text, _written_pattern(text))


def _bounded(text: str, pattern: bytes) -> bytes:
    """ASCII word boundaries where `text` starts or ends with an ASCII letter or digit, so
    `Gan` is not even reported inside `organisme` (Python checks Unicode boundaries after).
    The boundary characters are part of the match: `single` patterns only say "present"."""
    if text[:1].isascii() and text[:1].isalnum():
        pattern = rb"(?:^|[^A-Za-z0-9])" + pattern
    if text[-1:].isascii() and text[-1:].isalnum():
        pattern += rb"(?:[^A-Za-z0-9]|$)"
    return pattern


class _Patterns:
    """A detector-shaped holder of patterns, for an `Engine` of its own."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self._patterns = patterns

    def patterns(self) -> list[Pattern]:
        return self._patterns


class Vocabulary:
    """Names or words matched accent- and case-insensitively on word boundaries.

    Hyperscan only says which entries occur in a buffer (`single` patterns, one report each)
    and Python's `re` then finds their first valid occurrence inside the accepted window: a
    document names an insurer thousands of times but only one valid occurrence matters, so
    dense extracts cost no per-match Python work. Entries in `located` (ambiguous names,
    which need context around an occurrence and may never get it) are checked at their
    first occurrence; when that one does not qualify, `located_ends` asks a second, small
    database for all their occurrences in the buffer, rather than searching for them again
    with `re` through every chunk.
    """

    def __init__(self, texts: list[str], located: frozenset[int] = frozenset(), group: str = "") -> None:
        self.texts = texts
        self.located = located
        self._regexes: dict[int, re.Pattern[bytes]] = {}
        self._patterns: list[Pattern] = []
        self._entry: list[int] = []          # pattern tag -> index in texts
        seen: set[bytes] = set()
        for index, text in enumerate(texts):
            expr = scan_pattern(text)
            if expr not in seen:              # `Viamedis` and `Viamédis` share one pattern
                seen.add(expr)
                self._patterns.append(Pattern(expr, single=True, group=group))
                self._entry.append(index)
        self._every: Engine | None = None    # every occurrence of the located entries, built on demand

    def patterns(self) -> list[Pattern]:
        return self._patterns

    def located_ends(self, buf: bytes, window: tuple[int, int]) -> dict[int, list[int]]:
        """entry -> the ends of every occurrence of the located entries ending in `window`."""
        if self._every is None:
            tags = [tag for tag, entry in enumerate(self._entry) if entry in self.located]
            every = _Patterns([Pattern(self._patterns[tag].expr) for tag in tags])
            self._every, self._every_entry = Engine([every], cache=default_cache_dir()), [self._entry[t] for t in tags]
        found: dict[int, list[int]] = {}
        for tag, ends in self._every.hits(buf, *window)[0]:
            found.setdefault(self._every_entry[tag], []).extend(ends)
        return found

    def entries(self, hits: list[tuple[int, list]]) -> dict[int, list[int]]:
        """entry (index in `texts`) -> the match ends Hyperscan reported, in order."""
        found: dict[int, list[int]] = {}
        for tag, ends in hits:
            found.setdefault(self._entry[tag], []).extend(ends)
        return found

    def regex(self, entry: int) -> re.Pattern[bytes]:
        if entry not in self._regexes:
            self._regexes[entry] = re.compile(folded_pattern(self.texts[entry]), re.IGNORECASE)
        return self._regexes[entry]

    def occurrences(
        self, buf: bytes, entry: int, window: tuple[int, int], ends: list[int] = ()  # type: ignore[assignment]
    ) -> Iterator[tuple[int, int]]:
        """(start, end) of `entry` on word boundaries, ending inside `window`.

        Hyperscan's reported ends come first (a short search right before each); an entry
        whose first occurrence does not qualify is then searched through the window, unless
        it is `located` (the caller then passes `located_ends`).
        """
        lo, hi = window
        regex = self.regex(entry)
        reach = 4 * len(self.texts[entry]) + 8
        seen: set[tuple[int, int]] = set()
        for end in sorted(set(ends)):
            match = regex.search(buf, max(0, end - reach), min(hi, end))
            if match and match.end() > lo and on_word_boundaries(buf, match.start(), match.end()):
                seen.add(match.span())
                yield match.span()
        if entry in self.located:
            return
        for match in regex.finditer(buf, max(0, lo - 512), hi):
            if match.span() not in seen and match.end() > lo and on_word_boundaries(buf, *match.span()):
                yield match.span()

    def covers(self, buf: bytes, entry: int, start: int, end: int) -> bool:
        """True when `entry` occurs around buf[start:end] (a longer name containing it)."""
        for match in self.regex(entry).finditer(buf, max(0, start - 256), min(len(buf), end + 256)):
            if match.start() <= start and end <= match.end() and on_word_boundaries(buf, *match.span()):
                return True
        return False
