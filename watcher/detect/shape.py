"""Extract shape: is this part tabular data, how many records, which health-data columns?

Recognises CSV/TSV (delimiter sniffed on the first lines), JSON arrays and JSON lines, and SQL
INSERT dumps, from the head of a part; then counts records over the whole stream with cheap
byte counts. Header names are folded (case, accents, separators) and mapped to roles.

A 13-character NIR column (`nir;cle`, or `nir` alone) is where a bare 13-character number is
a NIR: those rows are parsed and the NIR recombined with its key (or checked by structure
when there is no key column), then handed to the NIR count.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from typing import Callable

from . import nir as nir_rules
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
HEALTH_ROLES = frozenset(
    ["nir", "cle", "date_naissance", "rang_naissance", "mutuelle", "garanties", "adherent", "contrat", "droits",
     "rpps", "adeli", "finess"]
)
PROFESSIONAL_IDS = frozenset(["siret", "rpps", "adeli", "finess"])
CONTACT_ROLES = frozenset(["email", "telephone"])

_SQL_INSERT = re.compile(
    rb"insert\s+(?:ignore\s+)?into\s+[`\"\[]?[\w.]+[`\"\]]?\s*(?:\(([^)]*)\))?\s*values", re.IGNORECASE
)
_SQL_CREATE = re.compile(rb"create\s+table[^(]*\((.*?)\)\s*(?:engine|;|$)", re.IGNORECASE | re.DOTALL)
_SQL_ROW_SEPARATORS = (b"),(", b"), (", b"),\n(", b"),\r\n(")


def header_role(name: str) -> str | None:
    """The role of a column header, e.g. `Num_Sécu` -> `nir`, `Date de naissance` -> `date_naissance`."""
    key = re.sub(r"[^a-z0-9]", "", strip_accents(name).lower())
    if not key:
        return None
    if key in _ROLE_EXACT:
        return _ROLE_EXACT[key]
    for prefix, role in _ROLE_PREFIX:
        if key.startswith(prefix):
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
        self._first_line_pending = False
        self._row_columns: tuple[int, int | None] | None = None   # (nir index, key index) for 13-char NIRs
        self._partial = b""
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
        except ValueError:
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
        if columns is None and (create := _SQL_CREATE.search(head)):
            columns = b",".join(
                line.strip().split()[0] for line in create.group(1).split(b",") if line.strip()
                and not line.strip().upper().startswith((b"PRIMARY", b"KEY", b"UNIQUE", b"CONSTRAINT", b"INDEX"))
            )
        if columns:
            names = [c.strip().strip(b"`\"[] ").decode("utf-8", "replace") for c in columns.split(b",")]
            self._set_headers([n for n in names if n])
        pattern = re.compile(rb"insert\s+(?:ignore\s+)?into", re.IGNORECASE)
        self._counter = lambda data: len(pattern.findall(data)) + sum(data.count(s) for s in _SQL_ROW_SEPARATORS)

    def _sniff_csv(self, head: bytes) -> None:
        lines = [line for line in head.decode("utf-8", "replace").splitlines()[:50] if line.strip()]
        if len(lines) < 2:
            return
        best: tuple[int, str] | None = None
        for delimiter in DELIMITERS:
            counts = [line.count(delimiter) for line in lines[:20]]
            if counts[0] == 0:
                continue
            consistent = sum(1 for c in counts if c == counts[0])
            if consistent >= max(2, int(len(counts) * 0.8)) and (best is None or counts[0] > best[0]):
                best = (counts[0], delimiter)
        if best is None:
            return
        delimiter = best[1]
        self.shape.format, self.shape.delimiter = "csv", delimiter
        header = next(csv.reader([lines[0]], delimiter=delimiter))
        if sum(1 for h in header if header_role(h)) >= 1 and not any(_looks_like_value(h) for h in header):
            self._set_headers([h.strip() for h in header])
            self._first_line_pending = True
            self._plan_nir_rows(lines, delimiter)
        self._counter = lambda data: data.count(b"\n")

    def _plan_nir_rows(self, lines: list[str], delimiter: str) -> None:
        """Parse rows when the NIR column holds 13-character bodies (key apart or absent)."""
        headers = self.shape.headers
        nir_index = next((i for i, h in enumerate(headers) if self.shape.roles.get(h) == "nir"), None)
        if nir_index is None:
            return
        key_index = next((i for i, h in enumerate(headers) if self.shape.roles.get(h) == "cle"), None)
        rows = list(csv.reader(lines[1:20], delimiter=delimiter))
        values = [nir_rules.normalize(r[nir_index]) for r in rows if len(r) > nir_index]
        if values and sum(1 for v in values if len(v) == 13) >= len(values) / 2:
            self._row_columns = (nir_index, key_index)
            self._delimiter = delimiter

    # -- counting ---------------------------------------------------------------------------
    def _count(self, data: bytes, first: bool = False) -> None:
        if not data:
            return
        if self._counter:
            self.shape.records += self._counter(data)
        if first and self._first_line_pending:
            self.shape.records -= 1          # the header line
        self._last_byte = data[-1:]
        if self._row_columns:
            self._rows(data, final=False, skip_header=first)

    def _rows(self, data: bytes, final: bool, skip_header: bool = False) -> None:
        data = self._partial + data
        if final:
            complete, self._partial = data, b""
        else:
            cut = data.rfind(b"\n") + 1
            complete, self._partial = data[:cut], data[cut:]
        lines = complete.decode("utf-8", "replace").splitlines()
        if skip_header:
            lines = lines[1:]
        nir_index, key_index = self._row_columns  # type: ignore[misc]
        for row in csv.reader(lines, delimiter=self._delimiter):
            if len(row) <= nir_index:
                continue
            body = row[nir_index]
            key = row[key_index] if key_index is not None and len(row) > key_index else None
            if len(nir_rules.normalize(body)) == 13 and (value := nir_rules.complete(body, key)):
                self._add_nir(value)


def _looks_like_value(cell: str) -> bool:
    """A header cell is a name, not a number or an e-mail address."""
    cell = cell.strip()
    return bool(re.fullmatch(r"[\d\s.,:/+\-]+", cell)) or "@" in cell


__all__ = ["Shape", "ShapeReader", "header_role"]
