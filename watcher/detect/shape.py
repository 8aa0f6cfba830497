"""Extract shape: is this part tabular data, how many records, which health-data columns?

Recognises CSV/TSV (delimiter sniffed on the first lines), JSON arrays and JSON lines, and SQL
INSERT dumps, from the head of a part; then counts records over the whole stream with cheap
byte counts. Header names are folded (case, accents, separators) and mapped to roles.

A 13-character NIR column (`nir;cle`, or `nir` alone) is where a bare 13-character number is
a NIR: those rows are parsed and the NIR recombined with its key (or checked by structure
when there is no key column), then handed to the NIR count.

Real files are messy: a carriage return or NUL inside a field, an unbalanced quote, a ragged
row, a field over csv's size limit cost that line its quoting (it is split at every
delimiter), never the part. A record is a line ending in "\n", parsed or counted; every
pattern here takes linear time whatever the input.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from . import nir as nir_rules
from .compiled import speedups
from .text import strip_accents

HEAD_BYTES = 64 * 1024
DELIMITERS = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe"}

# Folded header name (lower-case, no accents, alphanumerics only) -> role.
_ROLE_EXACT = {
    "nom": "nom", "name": "nom", "lastname": "nom", "nomnaissance": "nom", "nomusage": "nom", "nomfamille": "nom",
    "prenom": "prenom", "prenoms": "prenom", "firstname": "prenom",
    "sexe": "sexe", "civilite": "sexe", "genre": "sexe",
    "ddn": "date_naissance", "dob": "date_naissance", "naissance": "date_naissance", "birthdate": "date_naissance",
    "rangnaissance": "rang_naissance", "rang": "rang_naissance",
    "nss": "nir", "noss": "nir", "numss": "nir", "nirpp": "nir", "insee": "nir", "numinsee": "nir",
    "matricule": "nir", "numeross": "nir",
    "cle": "cle", "clenir": "cle", "clesecu": "cle", "cless": "cle", "cleinsee": "cle", "key": "cle",
    "mutuelle": "mutuelle", "organisme": "mutuelle", "assureur": "mutuelle", "amc": "mutuelle",
    "codeamc": "mutuelle", "numamc": "mutuelle", "complementaire": "mutuelle", "caisse": "mutuelle",
    "regime": "mutuelle", "insurer": "mutuelle", "operateurtp": "mutuelle",
    "garanties": "garanties", "garantie": "garanties", "formule": "garanties", "niveaugarantie": "garanties",
    "numadherent": "adherent", "adherent": "adherent", "noadherent": "adherent", "numeroadherent": "adherent",
    "numcontrat": "contrat", "contrat": "contrat", "nocontrat": "contrat", "numerocontrat": "contrat",
    "datedebutdroits": "droits", "debutdroits": "droits", "datefindroits": "droits", "droits": "droits",
    "rpps": "rpps", "numrpps": "rpps", "adeli": "adeli", "finess": "finess", "numfiness": "finess",
    "siret": "siret", "siren": "siret", "raisonsociale": "raison_sociale",
    "email": "email", "mail": "email", "courriel": "email", "adressemail": "email", "emailaddress": "email",
    "telephone": "telephone", "tel": "telephone", "mobile": "telephone", "portable": "telephone",
    "phone": "telephone", "numtel": "telephone",
    "iban": "iban", "rib": "iban", "bic": "iban",
}
_ROLE_PREFIX = (
    ("nir", "nir"), ("numsecu", "nir"), ("numerosecu", "nir"), ("nosecu", "nir"), ("securitesociale", "nir"),
    ("numerodesecu", "nir"), ("datenaiss", "date_naissance"), ("datedenaiss", "date_naissance"),
    ("cle", "cle"), ("mutuelle", "mutuelle"), ("organisme", "mutuelle"), ("garantie", "garanties"),
    ("email", "email"), ("telephone", "telephone"), ("siret", "siret"), ("rpps", "rpps"), ("finess", "finess"),
)
# Anywhere in the folded header: `N° sécurité sociale`, `no_secu_assure`, `Mutuelle santé`...
_ROLE_PART = (
    ("securitesociale", "nir"), ("numsecu", "nir"), ("nosecu", "nir"), ("numerosecu", "nir"), ("desecu", "nir"),
    ("datenaiss", "date_naissance"), ("datedenaiss", "date_naissance"), ("mutuelle", "mutuelle"),
)
HEALTH_ROLES = frozenset(
    ["nir", "cle", "date_naissance", "rang_naissance", "mutuelle", "garanties", "adherent", "contrat", "droits",
     "rpps", "adeli", "finess"]
)
PROFESSIONAL_IDS = frozenset(["siret", "rpps", "adeli", "finess"])
CONTACT_ROLES = frozenset(["email", "telephone"])

# The column list holds no parenthesis and is bounded, so a run of `insert into t (` without
# a closing one costs each occurrence a few bytes, not a scan to the end (quadratic).
_SQL_INSERT = re.compile(
    rb"insert\s+(?:ignore\s+)?into\s+[`\"\[]?[\w.]+[`\"\]]?\s*(?:\(([^()]{0,8192})\))?\s*values", re.IGNORECASE
)
# CREATE TABLE's opening, then the first `)` that ends its body, each found once (a lazy
# `(.*?)` from every `create table` of a hostile head would rescan the rest each time).
_SQL_CREATE = re.compile(rb"create\s+table\b[^(;]{0,512}+\(", re.IGNORECASE)
_SQL_CREATE_END = re.compile(rb"\)\s*(?:engine|;|$)", re.IGNORECASE)
MAX_HEADER = 256                # characters of a column name
MAX_ROW = 1 << 20               # a row longer than this is not a row of an extract
_SQL_ROW_SEPARATOR = re.compile(rb"\)\s*,\s*\(")
# One parenthesised tuple of values; quoted strings may hold parentheses, '' or \' escapes.
# Possessive: a run of quotes in hostile text can never make the search backtrack.
_SQL_TUPLE = re.compile(r"\(((?:'(?:[^'\\]|\\.|'')*+'|[^()'])*+)\)")


def header_role(name: str) -> str | None:
    """The role of a column header, e.g. `Num_Sécu` -> `nir`, `Date de naissance` -> `date_naissance`."""
    if len(name) > MAX_HEADER:      # a sentence or a blob, not a header (and NFD of a long run of
        return None                 # combining marks is quadratic)
    key = re.sub(r"[^a-z0-9]", "", strip_accents(name).lower())
    if not key:
        return None
    if key in _ROLE_EXACT:
        return _ROLE_EXACT[key]
    for prefix, role in _ROLE_PREFIX:
        if key.startswith(prefix):
            return role
    if len(key) <= 32:              # a header, not a sentence that mentions "mutuelles"
        for part, role in _ROLE_PART:
            if part in key:
                return role
    return None


@dataclass
class Shape:
    """What a part looks like as data."""

    format: str | None = None              # csv | json | jsonl | sql | None
    delimiter: str | None = None
    records: int = 0
    headers: list[str] = field(default_factory=list)   # as written
    roles: dict[str, str] = field(default_factory=dict)  # header -> role

    @property
    def role_set(self) -> set[str]:
        return set(self.roles.values())

    @property
    def nir_column(self) -> bool:
        return "nir" in self.role_set

    @property
    def health_headers(self) -> list[str]:
        return [h for h, role in self.roles.items() if role in HEALTH_ROLES]

    @property
    def professional(self) -> bool:
        roles = self.role_set
        return bool(roles & PROFESSIONAL_IDS) and bool(roles & CONTACT_ROLES)

    def describe(self) -> str:
        """`semicolon CSV extract of 1,204 records`, `JSON-lines sample of 25 records`..."""
        kind = {
            "csv": f"{DELIMITERS.get(self.delimiter or ',', 'delimited')} CSV",
            "json": "JSON array", "jsonl": "JSON-lines", "sql": "SQL INSERT dump",
        }.get(self.format or "", "text")
        noun = "extract" if self.records >= 100 else "sample"
        return f"{kind} {noun} of {self.records:,} records"


class ShapeReader:
    """Follows one part's chunks: sniffs the head, then counts records.

    `add_nir` receives NIRs recombined from a 13-character NIR column.
    """

    def __init__(self, add_nir: Callable[[str], None]) -> None:
        self.shape = Shape()
        self._add_nir = add_nir
        self._head = bytearray()
        self._sniffed = False
        self._counter: Callable[[bytes], int] | None = None
        self._skip_lines = 0
        self._row_columns: tuple[int, int | None] | None = None   # (nir index, key index) for 13-char NIRs
        self._partial = bytearray()         # a row not yet ended (13-character NIR rows)
        self._last_byte = b""

    def feed(self, chunk: bytes) -> None:
        if not self._sniffed:
            self._head += chunk
            if len(self._head) < HEAD_BYTES:
                return
            self._sniff_and_count(bytes(self._head))
            self._head = bytearray()
            return
        self._count(chunk)

    def finish(self) -> Shape:
        if not self._sniffed:
            self._sniff_and_count(bytes(self._head))
        if self._row_columns and self._partial:
            self._rows(b"", final=True)
        if self.shape.format == "csv" and self._last_byte not in (b"\n", b""):
            self.shape.records += 1          # last line without a newline
        if self.shape.format is None:
            self.shape.records = 0
        return self.shape

    # -- sniffing ---------------------------------------------------------------------------
    def _sniff_and_count(self, head: bytes) -> None:
        self._sniffed = True
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if text[:1] in (b"[", b"{") and self._sniff_json(text):
            pass
        elif _SQL_INSERT.search(head[:HEAD_BYTES]):
            self._sniff_sql(head)
        else:
            self._sniff_csv(head)
        if self.shape.format:
            self._count(head, first=True)

    def _set_headers(self, names: list[str]) -> None:
        self.shape.headers = names
        self.shape.roles = {n: role for n in names if (role := header_role(n))}

    def _sniff_json(self, text: bytes) -> bool:
        decoder = json.JSONDecoder()
        sample = text.decode("utf-8", "replace")
        try:
            if sample.startswith("["):
                first, _ = decoder.raw_decode(sample[1:].lstrip())
                fmt = "json"
            else:
                first, _ = decoder.raw_decode(sample)
                fmt = "jsonl"
        except (ValueError, RecursionError):    # not JSON, or nested deeper than the decoder goes
            return False
        if not isinstance(first, dict) or not first:
            return False
        self.shape.format = fmt
        self._set_headers([str(k) for k in first])
        marker = json.dumps(next(iter(first)), ensure_ascii=False).encode()
        self._counter = lambda data: data.count(marker + b":") + data.count(marker + b" :")
        return True

    def _sniff_sql(self, head: bytes) -> None:
        self.shape.format = "sql"
        insert = _SQL_INSERT.search(head)
        columns = insert.group(1) if insert and insert.group(1) else None
        if columns is None and (body := _create_table_body(head)) is not None:
            columns = b",".join(
                line.strip().split()[0] for line in body.split(b",") if line.strip()
                and not line.strip().upper().startswith((b"PRIMARY", b"KEY", b"UNIQUE", b"CONSTRAINT", b"INDEX"))
            )
        if columns:
            names = [c.strip().strip(b"`\"[] ").decode("utf-8", "replace") for c in columns.split(b",")]
            self._set_headers([n for n in names if n])
            self._plan_nir_rows([_sql_values(m.group(1)) for m in _SQL_TUPLE.finditer(head.decode("utf-8", "replace"))])
        pattern = re.compile(rb"insert\s+(?:ignore\s+)?into", re.IGNORECASE)
        self._counter = lambda data: len(pattern.findall(data)) + len(_SQL_ROW_SEPARATOR.findall(data))

    def _sniff_csv(self, head: bytes) -> None:
        """Find a run of lines with the same number of fields (quote-aware).

        The run may start after a title or a heading (an HTML page's `<h1>` before its table).
        One delimiter per line is prose as often as data: it counts only under a header naming
        a known column.
        """
        lines = [line.removesuffix("\r") for line in head.decode("utf-8", "replace").split("\n")[:80] if line.strip()]
        if len(lines) > 2 and not head.endswith(b"\n"):
            lines = lines[:-1]                        # the last line of the head may be cut
        if len(lines) < 2:
            return
        best: tuple[tuple[bool, int, int], str, int] | None = None
        for delimiter in DELIMITERS:
            run = _longest_run([_field_count(line, delimiter) for line in lines[:40]])
            if run is None:
                continue
            start, length, fields = run
            if fields == 2 and not any(header_role(h) for h in _fields(lines[start], delimiter)):
                continue
            score = (length >= 3, fields, length)
            if best is None or score > best[0]:
                best = (score, delimiter, start)
        if best is None:
            return
        _, delimiter, start = best
        self.shape.format, self.shape.delimiter = "csv", delimiter
        self._skip_lines = start                      # title lines before the table
        header = _fields(lines[start], delimiter)
        if any(header_role(h) for h in header) and not any(_looks_like_value(h) for h in header):
            self._set_headers([h.strip() for h in header])
            self._skip_lines += 1
            self._delimiter = delimiter
            self._plan_nir_rows(_parse_rows(lines[start + 1:start + 40], delimiter))
        self._counter = _count_lines

    def _plan_nir_rows(self, rows: list[list[str]]) -> None:
        """Parse rows (CSV lines or SQL tuples; `rows` are the first ones) when the NIR column
        may hold 13-character bodies the NIR detector cannot pair with their key: a key column
        that is not the next one, or a NIR column without a key column whose first rows show
        13-character values. (A key in the next column is matched by the detector itself,
        `1841275123456;40` or `'1841275123456','40'`, much faster than parsing rows.)"""
        headers = self.shape.headers
        nir_index = next((i for i, h in enumerate(headers) if self.shape.roles.get(h) == "nir"), None)
        if nir_index is None:
            return
        key_index = next((i for i, h in enumerate(headers) if self.shape.roles.get(h) == "cle"), None)
        values = [nir_rules.normalize(r[nir_index]) for r in rows if len(r) > nir_index]
        if key_index == nir_index + 1:
            return
        if key_index is not None or any(len(v) == 13 for v in values):
            self._row_columns = (nir_index, key_index)

    # -- counting ---------------------------------------------------------------------------
    def _count(self, data: bytes, first: bool = False) -> None:
        if not data:
            return
        if self._counter:
            self.shape.records += self._counter(data)
        if first:
            self.shape.records -= self._skip_lines    # title and header lines
        self._last_byte = data[-1:]
        if self._row_columns:
            self._rows(data, final=False, skip_header=first)

    def _rows(self, data: bytes, final: bool, skip_header: bool = False) -> None:
        sql = self.shape.format == "sql"
        cut = len(data) if final else data.rfind(b")" if sql else b"\n") + 1   # the rows surely complete
        if not cut and not final:           # no row ends in this chunk: keep it (appended in place, linear)
            self._partial += data
            if len(self._partial) > MAX_ROW:    # no row is that long: not rows, let it go
                self._partial.clear()
            return
        complete = bytes(self._partial) + data[:cut] if self._partial else data[:cut]
        self._partial = bytearray(data[cut:])
        text = complete.decode("utf-8", "replace")
        if sql:
            rows: Iterable[list[str]] = (_sql_values(m.group(1)) for m in _SQL_TUPLE.finditer(text))
        else:
            # Records end at "\n" only, as they are counted: a stray "\r" or another line
            # separator inside a field (exports edited on Windows) does not split a row.
            lines = text.split("\n")
            if "\r" in text:
                lines = [line.removesuffix("\r") for line in lines]
            if skip_header:
                lines = [line for line in lines if line.strip()][self._skip_lines:]
            rows = _parse_rows(lines, self._delimiter) if '"' in text else (line.split(self._delimiter) for line in lines)
        nir_index, key_index = self._row_columns  # type: ignore[misc]
        add, complete_nir, normalize = self._add_nir, nir_rules.complete, nir_rules.normalize
        for row in rows:
            if len(row) <= nir_index:
                continue
            body = row[nir_index]
            if len(body) != 13 and not (13 < len(body) <= 20 and len(normalize(body)) == 13):
                continue            # empty, or a 15-character NIR the main detector counts
            key = row[key_index] if key_index is not None and len(row) > key_index else None
            # A NIR is ASCII: `1²4...` passes str.isdigit() but not int() in the NIR checks.
            if body.isascii() and (key is None or key.isascii()) and (value := complete_nir(body, key)):
                add(value)


_BLANK_LINE = re.compile(rb"\n(?=[ \t\r]*\n)")


def count_lines_py(data: bytes) -> int:
    """Lines holding something (blank lines are not records); `_speedups.count_lines` does
    it in C (the regex costs a dense CSV 0.3 s per 100 MB)."""
    return data.count(b"\n") - len(_BLANK_LINE.findall(data))


_count_lines = speedups.count_lines if speedups else count_lines_py


def _create_table_body(head: bytes) -> bytes | None:
    """What the first CREATE TABLE of a dump declares between its parentheses."""
    opening = _SQL_CREATE.search(head)
    if opening is None:
        return None
    end = _SQL_CREATE_END.search(head, opening.end())
    return head[opening.end():end.start()] if end else None


def _sql_values(inner: str) -> list[str]:
    """The values of one SQL tuple, unquoted: `1,'O''Brien','1841275123456'`."""
    try:
        return next(csv.reader([inner], delimiter=",", quotechar="'", escapechar="\\", skipinitialspace=True), [])
    except csv.Error:
        return []


def _fields(line: str, delimiter: str) -> list[str]:
    """One line's fields, quote-aware; never raises. A line csv refuses (a carriage return
    in an unquoted field, a field over csv's size limit) is split at every delimiter."""
    if '"' not in line:
        return line.split(delimiter)         # what csv would say, 20x cheaper
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return [field.strip('"') for field in line.split(delimiter)]


def _parse_rows(lines: list[str], delimiter: str) -> list[list[str]]:
    """One row per line. csv parses them all at once (fast), but an unbalanced quote would
    make it swallow the following lines into one field (or raise): then line by line."""
    try:
        rows = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error:
        rows = []
    if len(rows) == len(lines):
        return rows
    return [_fields(line, delimiter) for line in lines]


def _field_count(line: str, delimiter: str) -> int:
    if delimiter not in line:
        return 1
    if '"' not in line:
        return line.count(delimiter) + 1     # what _fields would say, without the list
    return len(_fields(line, delimiter))


def _longest_run(counts: list[int]) -> tuple[int, int, int] | None:
    """(start, length, fields) of the first run of >= 2 equal counts of >= 2 fields that begins
    among the first 10 lines, preferring a run of 3 or more lines."""
    found: tuple[int, int, int] | None = None
    for start in range(min(10, len(counts))):
        fields = counts[start]
        if fields < 2:
            continue
        length = _run_length(counts, start)
        if length >= 3 or (length == 2 and start + 2 == len(counts)):
            return start, length, fields
        if length >= 2 and found is None:
            found = (start, length, fields)
    return found


def _run_length(counts: list[int], start: int) -> int:
    """Lines from `start` with its field count. The run steps over one ragged line (a field
    missing, or one too many) when the two lines after it have the count again, so a header
    stays the header of its table even when its first row is ragged."""
    fields, end, stepped = counts[start], start + 1, False
    while end < len(counts):
        if counts[end] != fields:
            if stepped or counts[end + 1:end + 3] != [fields, fields]:
                break
            stepped = True
        end += 1
    return end - start


def _looks_like_value(cell: str) -> bool:
    """A header cell is a name, not a number or an e-mail address."""
    cell = cell.strip()
    return bool(re.fullmatch(r"[\d\s.,:/+\-]+", cell)) or "@" in cell


__all__ = ["Shape", "ShapeReader", "header_role"]
