"""Extract shape: is this part tabular data, how many records, which health-data columns?

Recognises CSV/TSV (delimiter sniffed on the first lines), JSON (an array of objects, JSON
lines, or an API response holding one: `{"data": {"beneficiaires": [...]}}`) and SQL INSERT
dumps, from the head of a part; then counts records over the whole stream with cheap byte
counts. Header names are folded (case, accents, separators) and mapped to roles.

Records are records. A CSV record is a non-blank line up to the table's last row (a line
with the table's number of fields): prose, a signature or a footer after the table are not
records, nor is a header line, even one naming no known column. A JSON document counts the
objects of its largest array of objects (chosen in the head; see `ShapeReader._sniff_json`).

A 13-character NIR column (`nir;cle`, or `nir` alone) is where a bare 13-character number is
a NIR: those rows are parsed and the NIR recombined with its key (or checked by structure
when there is no key column), then handed to the NIR count; so is a key column that a
spreadsheet stored as a number (`7` for `07`). A column of NIRs a spreadsheet wrote in
scientific notation (`1,84127512345678E+14`, `1.8412751234567E+14` for a trailing zero) is
parsed too; one written without all the digits (`1,84127E+14`) holds no NIR any more, but is
still a NIR column: `Shape.lost_digits`.

Real files are messy: a carriage return or NUL inside a field, an unbalanced quote, a ragged
row, a field over csv's size limit cost that line its quoting (it is split at every
delimiter), never the part. A record is a line ending in "\n", parsed or counted; every
pattern here takes linear time whatever the input.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Self

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
    # `N° Sécu`, `N° INSEE`, `Code NIR`, `num_assure_social`... (`code INSEE` is a commune's code,
    # `immatriculation` a vehicle's just as often, `SSN` an American number: none of them here)
    "nsecu": "nir", "secu": "nir", "ninsee": "nir", "noinsee": "nir", "numeroinsee": "nir", "codenir": "nir",
    "numnir": "nir", "numeronir": "nir", "nonir": "nir", "numassuresocial": "nir", "numeroassuresocial": "nir",
    "noassuresocial": "nir",
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
    # NIR columns a spreadsheet wrote in scientific notation without all the digits
    # (`1,84127E+14`): no NIR can be read back, but the column is a NIR column.
    lost_digits: list[str] = field(default_factory=list)

    @property
    def role_set(self) -> set[str]:
        return set(self.roles.values())

    @property
    def nir_column(self) -> bool:
        return "nir" in self.role_set or bool(self.lost_digits)

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
        lost = " with a NIR column with lost digits (scientific notation)" if self.lost_digits else ""
        return f"{kind} {noun} of {self.records:,} records{lost}"


@dataclass(frozen=True)
class _RowPlan:
    """The columns a part's rows are parsed for (rows are parsed only when there is one)."""

    nir: int | None = None              # 13-character NIRs ...
    key: int | None = None              # ... and their key column
    sci: tuple[int, ...] = ()           # NIRs in scientific notation

    def __bool__(self) -> bool:
        return self.nir is not None or bool(self.sci)


@dataclass(frozen=True)
class Sniffed:
    """The head's verdict on a CSV or text part, handed to the readers of its later slices."""

    format: str | None
    delimiter: str | None
    headers: tuple[str, ...]
    roles: dict[str, str]
    lost_digits: tuple[str, ...]
    fields: int                         # the table's width (0: not a table)
    plan: _RowPlan


@dataclass(frozen=True)
class SliceCount:
    """One slice's records, and what its table end says (see `_TableEnd`)."""

    records: int                        # lines counted, less the header and blank starts
    rows_seen: bool                     # a row of the table among them
    after: int                          # lines after its last row (all of them without one)
    last_line_row: bool                 # its last line, not ended by a newline, is a row

    @staticmethod
    def merge(sniffed: Sniffed, counts: list[SliceCount]) -> Shape:
        """The part's shape from its slices, in order: what one reader over the whole part
        says (`ShapeReader.finish`)."""
        shape = Shape(sniffed.format, sniffed.delimiter, 0, list(sniffed.headers), dict(sniffed.roles),
                      list(sniffed.lost_digits))
        if sniffed.format is None or not counts:
            return shape
        records = sum(c.records for c in counts)
        after = 0
        for count in counts:
            after = count.after if count.rows_seen else after + count.after
        shape.records = max(0, records + (1 if counts[-1].last_line_row else -after))
        return shape


class ShapeReader:
    """Follows one part's chunks: sniffs the head, then counts records.

    `add_nir` receives NIRs recombined from a 13-character NIR column or read back from
    scientific notation.
    """

    def __init__(self, add_nir: Callable[[str], None]) -> None:
        self.shape = Shape()
        self._add_nir = add_nir
        self._head = bytearray()
        self._sniffed = False
        self._counter: Callable[[bytes], int] | None = None
        self._skip_lines = 0
        self._delimiter = ","
        self._plan = _RowPlan()
        self._table: _TableEnd | None = None   # CSV: where the table's last row is
        self._partial = bytearray()         # a row not yet ended (parsed rows)

    @classmethod
    def resume(cls, add_nir: Callable[[str], None], sniffed: Sniffed) -> Self:
        """A reader that counts a later slice of a part (cut at a line start) whose head
        another reader sniffed: `watcher.parallel` gives each process a slice."""
        reader = cls(add_nir)
        reader._sniffed = True
        reader.shape = Shape(sniffed.format, sniffed.delimiter, 0, list(sniffed.headers), dict(sniffed.roles),
                             list(sniffed.lost_digits))
        if sniffed.format == "csv":
            reader._delimiter = sniffed.delimiter or ","
            reader._counter = _count_lines
            reader._table = _TableEnd(reader._delimiter, sniffed.fields)
            reader._plan = sniffed.plan
        return reader

    def feed(self, chunk: bytes) -> None:
        if not self._sniffed:
            self._head += chunk
            if len(self._head) < HEAD_BYTES:
                return
            self._sniff_and_count(bytes(self._head))
            self._head = bytearray()
            return
        self._count(chunk)

    def sniffed(self) -> Sniffed | None:
        """What the head said, for `resume`; None before the sniff, and for the formats whose
        records cannot be counted slice by slice (JSON, SQL: a record may span lines)."""
        if not self._sniffed or self.shape.format not in ("csv", None):
            return None
        shape = self.shape
        return Sniffed(shape.format, shape.delimiter, tuple(shape.headers), dict(shape.roles),
                       tuple(shape.lost_digits), self._table.needed + 1 if self._table else 0, self._plan)

    def finish_slice(self) -> SliceCount:
        """`finish` for one slice of a part: what `SliceCount.merge` needs."""
        if not self._sniffed:
            self._sniff_and_count(bytes(self._head))
        if self._plan and self._partial:
            self._rows(b"", final=True)
        table = self._table
        return SliceCount(self.shape.records, bool(table and table.rows_seen), table.after if table else 0,
                          bool(table and table.last_line_is_row()))

    def finish(self) -> Shape:
        if not self._sniffed:
            self._sniff_and_count(bytes(self._head))
        if self._plan and self._partial:
            self._rows(b"", final=True)
        if self._table:
            # the last line (without a newline) is a record when it holds something, and
            # the lines after the table's last row are not records
            self.shape.records = max(0, self.shape.records + self._table.close())
        if self.shape.format is None:
            self.shape.records = 0
        return self.shape

    # -- sniffing ---------------------------------------------------------------------------
    def _sniff_and_count(self, head: bytes) -> None:
        """Sniff a CSV on its first SNIFF_LINES lines only (the first chunk may be a megabyte:
        decoding all of it cost a directory of 1 MB text files 16% of their CPU); count all
        of `head`."""
        self._sniffed = True
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if text[:1] in (b"[", b"{") and self._sniff_json(text):
            pass
        elif _may_insert(head[:HEAD_BYTES]) and _SQL_INSERT.search(head[:HEAD_BYTES]):
            self._sniff_sql(head)
        else:
            self._sniff_csv(_first_lines(head, SNIFF_LINES))
        if self.shape.format:
            self._count(head, first=True)

    def _set_headers(self, names: list[str]) -> None:
        self.shape.headers = names
        self.shape.roles = {n: role for n in names if (role := header_role(n))}

    def _sniff_json(self, text: bytes) -> bool:
        """An array of objects, JSON lines, or a document holding arrays of objects (an API
        response): the records are the objects of the largest array of objects in the head,
        unless another array's (or the single top object's) keys name more known columns
        (`nom`, `nir`...): a member's own record, not the list of its guarantees.

        Its objects are counted through one of their keys, `"nom":`, over the whole stream
        (bytes.count, no parsing): the first key that occurs in the head exactly once per
        object of that array. Limit: the array is chosen in the head (HEAD_BYTES); past it,
        the key is counted wherever it occurs, so objects of another array with the same key
        count too (the head's count is exact).
        """
        tops, arrays = _json_arrays(text)
        if text[:1] == b"{" and tops >= 2:
            candidates = [(tops, 0, "jsonl")]
        else:
            # the largest arrays, and the outermost (records holding longer lists of their own)
            chosen = set(sorted(arrays, key=lambda a: (-a[0], a[1]))[:JSON_CANDIDATES])
            chosen.update(sorted(arrays, key=lambda a: (a[2], a[1]))[:JSON_CANDIDATES])
            candidates = [(objects, start, "json") for objects, start, _ in chosen]
            if text[:1] == b"{":
                candidates.append((1, 0, "jsonl"))      # one object: one record
        best: tuple[tuple[int, int, int], dict, str, int] | None = None
        for objects, start, fmt in candidates:
            first = _json_object(text, start)
            if first is None:
                continue
            rank = (len({role for k in first if (role := header_role(str(k)))}), objects, -start)
            if best is None or rank > best[0]:
                best = (rank, first, fmt, objects)
        if best is None:
            return False
        _, first, self.shape.format, objects = best
        self._set_headers([str(k) for k in first])
        markers = [json.dumps(str(k), ensure_ascii=False).encode() for k in list(first)[:32]]
        counts = [_marker_count(text, m) for m in markers]
        exact = [m for m, c in zip(markers, counts, strict=False) if c == objects]
        marker = exact[0] if exact else min(zip(markers, counts, strict=False), key=lambda mc: abs(mc[1] - objects))[0]
        self._counter = _MarkerCount(marker)
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
            self._plan = self._plan_nir_rows(
                [_sql_values(m.group(1)) for m in _SQL_TUPLE.finditer(head.decode("utf-8", "replace"))])
        pattern = re.compile(rb"insert\s+(?:ignore\s+)?into", re.IGNORECASE)
        self._counter = lambda data: len(pattern.findall(data)) + len(_SQL_ROW_SEPARATOR.findall(data))

    def _sniff_csv(self, head: bytes) -> None:
        """Find a run of lines with the same number of fields (quote-aware).

        The run may start after a title or a heading (an HTML page's `<h1>` before its table).
        One delimiter per line is prose as often as data: it counts only under a header naming
        a known column. A first line naming no known column is a header too when it reads as
        one (`_unnamed_header`): not a record.
        """
        parts = head.decode("utf-8", "replace").split("\n", SNIFF_LINES)
        last = parts.pop()                # the head's last line (maybe cut), or the rest of it
        # The run is looked for in the first RUN_LINES lines; the rest only matter once found.
        lines = list(itertools.islice((line.removesuffix("\r") for line in parts if line.strip()), RUN_LINES))
        if len(lines) < 2 and len(parts) < SNIFF_LINES and last.strip():
            lines.append(last.removesuffix("\r"))     # a two-line part without a final newline
        if len(lines) < 2:
            return
        probe = "\n".join(lines)
        best: tuple[tuple[bool, int, int], str, int, int] | None = None
        for delimiter in DELIMITERS:
            if delimiter not in probe:    # one field per line: no run (prose: most delimiters)
                continue
            run = _longest_run([_field_count(line, delimiter) for line in lines])
            if run is None:
                continue
            start, length, fields = run
            if fields == 2 and not any(header_role(h) for h in _fields(lines[start], delimiter)):
                continue
            score = (length >= 3, fields, length)
            if best is None or score > best[0]:
                best = (score, delimiter, start, fields)
        if best is None:
            return
        _, delimiter, start, fields = best
        if len(lines) == RUN_LINES:       # a table: its first PLAN_ROWS rows are read too
            lines = [line.removesuffix("\r") for line in parts if line.strip()]
        self.shape.format, self.shape.delimiter = "csv", delimiter
        self._delimiter = delimiter
        self._skip_lines = start                      # title lines before the table
        self._table = _TableEnd(delimiter, fields)
        header = _fields(lines[start], delimiter)
        sample = _parse_rows(lines[start + 1:start + 1 + PLAN_ROWS], delimiter)
        named = any(header_role(h) for h in header) and not any(_looks_like_value(h) for h in header)
        if named or _unnamed_header(header, sample):
            self._set_headers([h.strip() for h in header])
            self._skip_lines += 1
        else:
            sample.insert(0, header)
        plan = self._plan_nir_rows(sample) if named else _RowPlan()
        sci, lost = _scientific_columns(sample, self.shape.headers, self.shape.roles)
        self.shape.lost_digits = lost
        self._plan = _RowPlan(plan.nir, plan.key, sci)
        self._counter = _count_lines

    def _plan_nir_rows(self, rows: list[list[str]]) -> _RowPlan:
        """Parse rows (CSV lines or SQL tuples; `rows` are the first ones) when the NIR column
        may hold 13-character bodies the NIR detector cannot pair with their key: a key column
        that is not the next one, a key column a spreadsheet stored as a number
        (`1841275123456;7`), or a NIR column without a key column whose first rows show
        13-character values. (A 2-digit key in the next column is matched by the NIR detector
        itself, `1841275123456;40` or `'1841275123456','40'`, much faster than parsing rows.)"""
        headers = self.shape.headers
        nir_index = next((i for i, h in enumerate(headers) if self.shape.roles.get(h) == "nir"), None)
        if nir_index is None:
            return _RowPlan()
        key_index = next((i for i, h in enumerate(headers) if self.shape.roles.get(h) == "cle"), None)
        bodies = any(len(nir_rules.normalize(r[nir_index])) == 13 for r in rows if len(r) > nir_index)
        # A key below 10 stored as a number is one digit: 9 keys in 97, so the first 100 rows of
        # such a column show one but for 1 time in 17,000 ((88/97) ** 100).
        if key_index == nir_index + 1 and not (bodies and any(
                len(r) > key_index and len(k := r[key_index].strip()) == 1 and k.isdigit() for r in rows)):
            return _RowPlan()
        if key_index is not None or bodies:
            return _RowPlan(nir_index, key_index)
        return _RowPlan()

    # -- counting ---------------------------------------------------------------------------
    def _count(self, data: bytes, first: bool = False) -> None:
        if not data:
            return
        if self._counter:
            self.shape.records += self._counter(data)
        if first:
            self.shape.records -= self._skip_lines    # title and header lines
        if self._table:
            self.shape.records -= self._table.feed(data)
        if self._plan:
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
            rows = (_parse_rows(lines, self._delimiter) if '"' in text
                    else (line.split(self._delimiter) for line in lines))
        nir_index, key_index, sci = self._plan.nir, self._plan.key, self._plan.sci
        add, complete_nir, normalize = self._add_nir, nir_rules.complete, nir_rules.normalize
        for row in rows:
            if nir_index is not None and len(row) > nir_index:
                body = row[nir_index]
                # empty, or a 15-character NIR the main detector counts: skipped
                if len(body) == 13 or (13 < len(body) <= 20 and len(normalize(body)) == 13):
                    key = row[key_index] if key_index is not None and len(row) > key_index else None
                    # A NIR is ASCII: `1²4...` passes str.isdigit() but not int() in the NIR checks.
                    if body.isascii() and (key is None or key.isascii()) and (value := complete_nir(body, key)):
                        add(value)
            for index in sci:
                if len(row) > index and (value := scientific_nir(row[index])):
                    add(value)


PLAN_ROWS = 100                 # first rows that decide which columns are parsed
SNIFF_LINES = 2 * PLAN_ROWS     # lines of the head a CSV is sniffed and planned on
RUN_LINES = 40                  # of which the first, where a run of rows is looked for
JSON_CANDIDATES = 8             # largest arrays of objects of a JSON head whose keys are read


class _TableEnd:
    """Where a CSV table's last row is, so that the lines after it (prose, a signature, a
    footer) are not records: `after` counts the lines `count_lines` counted after the last
    row seen; a line that is not a row between two rows stays a record (a messy row).

    A row is a line with the table's number of fields: as many delimiters as it needs, or at
    least that many in a line with quotes (a quoted field may hold more). Each chunk is read
    from its end, over the lines that hold a delimiter: in a table its last line is a row,
    so a chunk costs one line; prose after a table holds few delimiters, so a chunk of it
    costs a few rfind calls. A chunk with more than WALK delimited lines after its last row
    (another table, of another width) is reduced to its delimiters, quotes and newlines (one
    bytes.translate, about 2.5 GB/s) and its last row looked for in that.
    """

    WALK = 64          # lines holding a delimiter read one by one, then the reduced chunk

    def __init__(self, delimiter: str, fields: int) -> None:
        self.delimiter = delimiter.encode()
        self.needed = fields - 1
        self.row = b"\n" + self.delimiter * self.needed + b"\n"
        kept = (ord("\n"), ord('"'), self.delimiter[0])
        self.deleted = bytes(b for b in range(256) if b not in kept)
        self.after = 0
        self.rows_seen = False
        self._carry = bytearray()           # the start of a line not ended yet
        self._long = False                  # ... longer than MAX_ROW: not a row

    def is_row(self, line: bytes) -> bool:
        if b'"' in line:
            return line.count(self.delimiter) >= self.needed
        return line.count(self.delimiter) == self.needed

    def feed(self, data: bytes) -> int:
        """Follows one chunk; returns 1 when `count_lines(data)` counted a blank line (it
        counts the line a chunk begins in, whatever it holds), else 0."""
        last = data.rfind(b"\n")
        if last < 0:
            self._extend(data)
            return 0
        blank = not self._long and not self._carry.strip(b" \t\r") and _BLANK_START.match(data) is not None
        found = self._last_row(data, last)
        if found < 0:
            self.after += _count_lines(data) - blank
        else:                               # the lines after the row's newline
            self.after = _count_lines(data[found:last + 1]) - 1
            self.rows_seen = True
        self._carry = bytearray()
        self._long = False
        self._extend(data[last + 1:])
        return int(blank)

    def close(self) -> int:
        """What the last line (no newline after it) adds to the records, less the lines
        after the last row."""
        if self.last_line_is_row():
            return 1
        return -self.after                  # a blank or trailing last line is not a record either

    def last_line_is_row(self) -> bool:
        return not self._long and self.is_row(bytes(self._carry))

    def _extend(self, data: bytes) -> None:
        if self._long:
            return
        self._carry += data
        if len(self._carry) > MAX_ROW:
            self._carry = bytearray()
            self._long = True

    def _first_line(self, data: bytes, end: int) -> bytes:
        """The line ending at data[end] that began in an earlier chunk."""
        return b"" if self._long else bytes(self._carry) + data[:end]

    def _last_row(self, data: bytes, last: int) -> int:
        """The offset of the newline ending the last row among data's complete lines, or -1.

        Backwards over the lines holding a delimiter (a line without one is never a row, and
        rfind steps over a run of them at memchr speed): in a table, the last line."""
        end, delimiter = last, self.delimiter
        for _ in range(self.WALK):
            hit = data.rfind(delimiter, 0, end)
            if hit < 0:                     # the first line may still hold them in its carried start
                first = data.find(b"\n")
                return first if self.is_row(self._first_line(data, first)) else -1
            start = data.rfind(b"\n", 0, hit) + 1
            line_end = data.find(b"\n", hit)
            if self.is_row(data[start:line_end] if start else self._first_line(data, line_end)):
                return line_end
            if not start:
                return -1
            end = start - 1
        first = data.find(b"\n")
        skeleton = data[first:end + 1].translate(None, self.deleted)     # "\n", quotes, delimiters
        position = skeleton.rfind(self.row)
        row_end = position + len(self.row) - 1 if position >= 0 else -1
        quote = skeleton.find(b'"', max(row_end, 0))
        while quote >= 0:                   # lines with quotes after it: rows if enough delimiters
            line_end = skeleton.find(b"\n", quote)
            if skeleton.count(self.delimiter, skeleton.rfind(b"\n", 0, quote) + 1, line_end) >= self.needed:
                row_end = line_end
            quote = skeleton.find(b'"', line_end)
        if row_end < 0:
            return first if self.is_row(self._first_line(data, first)) else -1
        offset = end
        for _ in range(skeleton.count(b"\n", row_end + 1)):
            offset = data.rfind(b"\n", first, offset)
        return offset


_BLANK_START = re.compile(rb"[ \t\r]*+\n")
# A NIR a spreadsheet wrote as a number in scientific notation, with a decimal comma or dot:
# all 15 digits, or 14 when the key ends in 0 (a trailing zero is dropped; a key is never 00).
_SCIENTIFIC = re.compile(r"\s*([1-4])[.,](\d{13,14})[eE]\+?14\s*")
# ... and without all of them (`1,84127E+14`): a NIR column whose NIRs are lost.
_SCIENTIFIC_LOST = re.compile(r"\s*([1-4])(?:[.,](\d{0,12}))?[eE]\+?14\s*")


def scientific_nir(cell: str) -> str | None:
    """The NIR of a cell in scientific notation (`1,84127512345678E+14`), key checked."""
    match = _SCIENTIFIC.fullmatch(cell)
    if match is None:
        return None
    digits = (match.group(1) + match.group(2)).ljust(15, "0")
    return digits if nir_rules.is_valid(digits) else None


def _scientific_columns(rows: list[list[str]], headers: list[str],
                        roles: dict[str, str]) -> tuple[tuple[int, ...], list[str]]:
    """(columns holding NIRs in scientific notation, names of NIR columns whose digits are
    lost) among the sampled rows. A column counts when at least half of its cells (and two)
    are 15-digit numbers in scientific notation (E+14), so a stray value in prose or in a
    column of amounts is never read as a NIR. A lost-digit column is a NIR column under a
    NIR header, or under no known header when every lost value starts as a common NIR does
    (sex 1 or 2, a valid month when shown): 15-digit IMEIs (35..., 86...) stay out."""
    width = max((len(r) for r in rows), default=0)
    found: list[int] = []
    lost_names: list[str] = []
    for index in range(min(width, 256)):
        cells = [c for r in rows if len(r) > index and (c := r[index].strip())]
        if not any(c.endswith("14") for c in cells):
            continue
        full = [c for c in cells if _SCIENTIFIC.fullmatch(c)]
        lost = [m for c in cells if (m := _SCIENTIFIC_LOST.fullmatch(c))]
        if len(full) + len(lost) < 2 or 2 * (len(full) + len(lost)) < len(cells):
            continue
        if full:
            found.append(index)
        if lost:
            name = headers[index] if index < len(headers) else f"column {index + 1}"
            role = roles.get(name)
            common = role is None and all(_common_nir_start(m.group(1) + (m.group(2) or "")) for m in lost)
            if role == "nir" or common:
                lost_names.append(name)
    return tuple(found), lost_names


def _common_nir_start(digits: str) -> bool:
    return digits[0] in "12" and (len(digits) < 5 or digits[3:5] in nir_rules.STRICT_MONTHS)


def _unnamed_header(header: list[str], rows: list[list[str]]) -> bool:
    """A first line naming no known column is still a header when it reads as names above
    values (csv.Sniffer's idea, cheaper): distinct, non-empty names, none a value, and a
    column whose cells are values under its name (numbers, dates, e-mails), or all of one
    length that is not the name's. A first row of data holds values where the rows do."""
    names = [h.strip() for h in header]
    if not all(names) or len(set(names)) < len(names):
        return False
    if any(_looks_like_value(n) or len(n) > MAX_HEADER for n in names):
        return False
    rows = [r for r in rows if len(r) == len(names)][:20]
    if len(rows) < 2:
        return False
    for index, name in enumerate(names):
        column = [r[index].strip() for r in rows]
        if 5 * sum(map(_looks_like_value, column)) >= 4 * len(column):
            return True
        lengths = {len(c) for c in column}
        if len(rows) >= 3 and len(lengths) == 1 and len(name) not in lengths and column[0]:
            return True
    return False


def _json_arrays(text: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """(top-level values, arrays of objects as (objects in the head, offset of the first, depth))
    of a JSON head, truncated or not: its brackets read by one tokenizer that steps over
    strings (linear time, no recursion, any depth)."""
    stack: list[list[int]] = []          # per open bracket: [is array, objects in it, first]
    arrays: list[tuple[int, int, int]] = []
    tops = 0
    for token in _JSON_TOKEN.finditer(text):
        at = token.start()
        char = text[at]
        if char == 0x22:                 # a string
            continue
        if char in b"[{":
            if not stack:
                tops += 1
            elif char == 0x7B and stack[-1][0]:
                parent = stack[-1]
                parent[1] += 1
                if parent[1] == 1:
                    parent[2] = at
            stack.append([char == 0x5B, 0, -1])
        elif stack:
            closed = stack.pop()
            if closed[0] and closed[1]:
                arrays.append((closed[1], closed[2], len(stack)))
    arrays.extend((a[1], a[2], depth) for depth, a in enumerate(stack) if a[0] and a[1])
    return tops, arrays


# A string (one that never ends runs to the end: linear on hostile quotes), or a bracket.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def _json_object(text: bytes, start: int) -> dict | None:
    """The JSON object at `start`, or None (not an object, cut by the head's end, deeper
    than the decoder goes)."""
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:].decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value else None


def _marker_count(data: bytes, marker: bytes) -> int:
    return data.count(marker + b":") + data.count(marker + b" :")


class _MarkerCount:
    """Occurrences of `"key":` or `"key" :` over a stream of chunks, those a chunk boundary
    cuts included: each boundary is looked at through a window shorter than twice the
    pattern, where an occurrence can only be one that straddles it."""

    def __init__(self, marker: bytes) -> None:
        self._patterns = (marker + b":", marker + b" :")
        self._tail = b""

    def __call__(self, data: bytes) -> int:
        count = sum(data.count(p) for p in self._patterns)
        if self._tail:
            count += sum((self._tail[-(len(p) - 1):] + data[:len(p) - 1]).count(p) for p in self._patterns)
        self._tail = (self._tail + data)[-(len(self._patterns[1]) - 1):] if len(data) < len(self._patterns[1]) \
            else data[-(len(self._patterns[1]) - 1):]
        return count


_BLANK_LINE = re.compile(rb"\n(?=[ \t\r]*\n)")


def _may_insert(head: bytes) -> bool:
    """Whether `head` may hold an SQL INSERT: a substring test on its lower-case copy, ~5x
    cheaper than the case-blind regex, which most documents (not SQL) then skip."""
    return b"insert" in head.lower()


def _first_lines(data: bytes, lines: int) -> bytes:
    """`data` up to the end of its `lines`-th line (all of it when it has fewer)."""
    if len(data) <= HEAD_BYTES and data.count(b"\n") < lines:
        return data                 # a small paste: one count instead of a find per line
    end = -1
    for _ in range(lines):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return data
    return data[:end + 1]


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


__all__ = ["Shape", "ShapeReader", "SliceCount", "Sniffed", "header_role"]
