"""Reading an organisation's files: NIRs (one per line, or a CSV column) and fingerprints.

A NIR file is read line by line: the first non-blank line decides. A line that is a NIR (any
written form: spaces, dots, dashes, no-break or thin spaces, full-width digits, with or without
its key) makes a list of one NIR per line; a line split by `;`, `,`, tab or `|` makes a CSV whose
NIR column is the one named `--column` (a header or a 1-based number), else the header that
names a NIR (`nir`, `num_secu`, `nss`...), else the first column whose value is a NIR; a `cle`
column next to a 13-character one gives its key. Files come as spreadsheets write them
(`text_lines`: UTF-16, UTF-8 or Windows-1252; `_cell`: Excel's text markers, a float's `.0`). A
line that is not a valid NIR is counted with its line number and a reason, never its value
(the caller prints neither the line nor the value).

A fingerprint file (`watcher watchlist fingerprint`, `export-fingerprints`) is text: an optional
header `# leak-watcher-watchlist/1 key-check=<16 hex>` then one member fingerprint per line, 16
lower- or upper-case hex digits (the first 8 bytes of the CMAC, big-endian).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..detect.nir import complete, is_valid

HEADER_PREFIX = "# leak-watcher-watchlist/1"
_KEY_CHECK = re.compile(r"key-check=([0-9a-f]{16})\b")
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{16}")
_DELIMITERS = ";,\t|"
_NIR_HEADERS = frozenset({"nir", "nirs", "num_secu", "numsecu", "numero_secu", "num_ss", "numero_ss", "nss",
                          "secu", "securite_sociale", "numero_securite_sociale", "n_secu", "insee",
                          "numero_insee", "matricule", "immatriculation", "no_ss", "ss"})
_KEY_HEADERS = frozenset({"cle", "cle_nir", "cle_secu", "cle_ss", "key", "cle_insee"})
_NIR_WORDS = re.compile(r"(?:^|_)(?:nir|nss|insee|securite_sociale|secu)(?:_|$)")
_SEPARATORS = str.maketrans("", "", " .-/_")
MAX_REPORTED = 20                # invalid line numbers listed, then a count
BATCH = 1 << 20                  # valid NIRs handed to `NirFile.flush` at a time


class FileFormatError(ValueError):
    """A file that cannot be read as asked (no NIR column, a bad --column); never quotes a value."""


def text_lines(handle: io.BufferedReader) -> Iterator[str]:
    """The lines of a member file as spreadsheets and HR tools write them: UTF-16 with its BOM
    (Excel's "Unicode text"), else UTF-8 (a BOM dropped), a line that is not UTF-8 read as
    Windows-1252 (Excel's "CSV" on a French Windows), line by line so a mixed file reads too."""
    if handle.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        wrapper = io.TextIOWrapper(handle, encoding="utf-16", errors="replace", newline="")
        try:
            yield from wrapper
        finally:
            wrapper.detach()                 # the caller closes its file
        return
    for number, raw in enumerate(iter(handle.readline, b"")):
        line = raw.removeprefix(codecs.BOM_UTF8) if number == 0 else raw
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            yield line.decode("cp1252", errors="replace")


def normalized(text: str) -> str:
    """A NIR's written form as 13 or 15 upper-case ASCII characters: NFKC first (full-width
    digits, no-break and thin spaces become ASCII), then spaces and `.-/_` dropped."""
    return "".join(unicodedata.normalize("NFKC", text).split()).translate(_SEPARATORS).upper()


_EXCEL_TEXT = re.compile(r'=?"(.*)"', re.DOTALL)       # ="0123..." (Excel's text formula), "0123..."
_WHOLE_FLOAT = re.compile(r"(\d{13}|\d{15})[.,]0+")     # 184127512345640.0: a float with every digit
_SCIENTIFIC = re.compile(r"\d(?:[.,]\d*)?[eE]\+?\d+")  # 1,84127E+14: the digits are gone
SCIENTIFIC = "a number in scientific notation, its last digits lost (export the column as text)"


def _cell(text: str) -> str:
    """A spreadsheet's cell as the number it holds: its quotes, Excel's `="..."` and `'`
    text markers and a float's `.0` dropped."""
    text = text.strip()
    if (match := _EXCEL_TEXT.fullmatch(text)) is not None:
        text = match.group(1).strip()
    text = text.removeprefix("'")
    if (match := _WHOLE_FLOAT.fullmatch(text)) is not None:
        text = match.group(1)
    return text


def nir_of(text: str, key: str | None = None) -> tuple[str | None, str]:
    """(the 15-character NIR, "") or (None, why it is not one)."""
    cell = _cell(text)
    if _SCIENTIFIC.fullmatch(cell):
        return None, SCIENTIFIC
    value = normalized(cell)
    if not value:
        return None, "empty"
    if key is not None and len(value) == 13:
        written = normalized(_cell(key))
        value += written.zfill(2) if written.isdigit() else written     # a key stored as a number: 7 for 07
    if len(value) == 13:
        nir = complete(value)
        return (nir, "") if nir else (None, "not a NIR (structure)")
    if len(value) != 15:
        return None, f"not a NIR ({len(value)} characters)"
    if is_valid(value):
        return value, ""
    if complete(value[:13]) is None:
        return None, "not a NIR (structure)"
    return None, "not a NIR (the key does not match)"


@dataclass
class NirFile:
    """What reading a NIR file found. The valid NIRs go to `flush` in batches of BATCH (a 20M
    list never sits in memory as strings: the caller turns each batch into fingerprints, and
    counts the duplicates among those); the invalid lines are counted, the first ones kept."""

    flush: Callable[[list[str]], None]
    valid: int = 0                          # valid lines (duplicates included)
    invalid: int = 0
    first_invalid: list[tuple[int, str]] = field(default_factory=list)   # (line number, reason)
    column: str | None = None               # the CSV column read (its header or number), None: one per line
    batch: list[str] = field(default_factory=list)

    def add(self, line: int, nir: str | None, reason: str) -> None:
        if nir is None:
            self.invalid += 1
            if len(self.first_invalid) < MAX_REPORTED:
                self.first_invalid.append((line, reason))
            return
        self.valid += 1
        self.batch.append(nir)
        if len(self.batch) >= BATCH:
            self.done()

    def done(self) -> None:
        """Hand the last valid NIRs to `flush`."""
        if self.batch:
            self.flush(self.batch)
            self.batch = []

    def problems(self) -> list[str]:
        """The invalid lines, first MAX_REPORTED, as `line N: reason` (never the value)."""
        shown = [f"line {line}: {reason}" for line, reason in self.first_invalid]
        if self.invalid > len(shown):
            shown.append(f"... and {self.invalid - len(shown):,} more invalid lines")
        return shown


def _names_nir(name: str) -> bool:
    """A header that names the NIR column: a known name, or one with `nir`, `nss`, `insee` or
    `securite_sociale` as a word (`n_securite_sociale` for `N° Sécurité Sociale`, `nir_assure`)."""
    if name in _NIR_HEADERS:
        return True
    return name not in _KEY_HEADERS and _NIR_WORDS.search(name) is not None


def _header_name(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip().strip('"').lower()
    return re.sub(r"[^a-z0-9]+", "_", folded).strip("_")


def read_nirs(lines: Iterable[str], flush: Callable[[list[str]], None], column: str | None = None) -> NirFile:
    """Read a NIR file's lines (see the module docstring); the valid NIRs go to `flush`."""
    numbered = ((number, line.rstrip("\r\n")) for number, line in enumerate(lines, 1))
    found = NirFile(flush)
    for number, line in numbered:
        if line.strip():
            first = (number, line)
            break
    else:
        return found
    delimiter = _delimiter(first[1]) if column is not None or nir_of(first[1])[0] is None else None
    rest = _chain(first, numbered)
    if delimiter is None:
        if column is not None:
            raise FileFormatError("--column needs a CSV file (fields separated by ; , tab or |)")
        _read_plain(rest, found)
    else:
        _read_csv(rest, delimiter, column, found)
    found.done()
    return found


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _delimiter(line: str) -> str | None:
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def _read_plain(lines: Iterator[tuple[int, str]], found: NirFile) -> None:
    for number, line in lines:
        if not line.strip():
            continue
        nir, reason = nir_of(line)
        if nir is None and number == 1 and _names_nir(_header_name(line)):
            continue                                 # a one-column file's header
        found.add(number, nir, reason)


def _read_csv(lines: Iterator[tuple[int, str]], delimiter: str, column: str | None, found: NirFile) -> None:
    def fields_of(line: str) -> list[str]:
        return next(csv.reader([line], delimiter=delimiter), [])

    number, head = next(lines)
    fields = fields_of(head)
    header = not any(nir_of(f)[0] for f in fields)
    names = [_header_name(f) for f in fields] if header else []
    index = _column(names, fields, column)
    rows = lines if header else _chain((number, head), lines)
    if index is None:                    # the first column whose value is a NIR (on the first data row)
        data = next(((n, line) for n, line in rows if line.strip()), None)
        if data is None:
            return
        index = next((i for i, f in enumerate(fields_of(data[1])) if nir_of(f)[0]), None)
        if index is None:
            raise FileFormatError("no NIR column found: name it with --column (its header or its number)")
        rows = _chain(data, rows)
    key_index = next((i for i, n in enumerate(names) if n in _KEY_HEADERS), None)
    found.column = fields[index].strip() if header and index < len(fields) else str(index + 1)
    for number, line in rows:
        if not line.strip():
            continue
        row = fields_of(line)
        if index >= len(row):
            found.add(number, None, f"no column {index + 1}")
            continue
        key = row[key_index] if key_index is not None and key_index < len(row) else None
        found.add(number, *nir_of(row[index], key))


def _column(names: list[str], fields: list[str], column: str | None) -> int | None:
    """The NIR column's index: `--column` (a header or a 1-based number), else a NIR header."""
    if column is None:
        return next((i for i, n in enumerate(names) if _names_nir(n)), None)
    if column.isdigit():
        index = int(column) - 1
        if not 0 <= index < len(fields):
            raise FileFormatError(f"--column {column}: the first line has {len(fields)} columns")
        return index
    wanted = _header_name(column)
    for i, name in enumerate(names):
        if name == wanted:
            return i
    raise FileFormatError(f"--column {column!r}: no such header on the first line")


@dataclass
class FingerprintFile:
    """What reading a fingerprint file found; the fingerprints go to `flush` in batches."""

    flush: Callable[[list[int]], None]
    count: int = 0                                       # fingerprints read (duplicates included)
    key_check: str | None = None
    invalid: list[int] = field(default_factory=list)     # line numbers (the first MAX_REPORTED)
    invalid_count: int = 0


def read_fingerprints(lines: Iterable[str], flush: Callable[[list[int]], None]) -> FingerprintFile:
    """Read a fingerprint file (see the module docstring); its fingerprints (unsigned 64-bit)
    go to `flush`."""
    found = FingerprintFile(flush)
    batch: list[int] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _KEY_CHECK.search(line)
            if line.startswith(HEADER_PREFIX) and match:
                found.key_check = match.group(1)
            continue
        if _FINGERPRINT.fullmatch(line):
            batch.append(int(line, 16))
            if len(batch) >= BATCH:
                found.count += len(batch)
                flush(batch)
                batch = []
        else:
            found.invalid_count += 1
            if len(found.invalid) < MAX_REPORTED:
                found.invalid.append(number)
    if batch:
        found.count += len(batch)
        flush(batch)
    return found


def header(key_check: str) -> str:
    """The first line of a fingerprint file."""
    return f"{HEADER_PREFIX} key-check={key_check} (AES-256-CMAC of the 15-character NIR, first 8 bytes)"
