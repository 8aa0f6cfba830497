"""Office documents to text: spreadsheets (.xlsx) as rows, so an analyst's dropped workbook
reads like a CSV; word-processing and OpenDocument files (.docx, .odt, .ods) as their text.

An .xlsx is a zip of XML: cell strings live in `xl/sharedStrings.xml`, each sheet in
`xl/worksheets/sheetN.xml` refers to them by index, and empty cells are simply absent. Scanned
as raw XML, a `nir` column and its `cle` column would never meet; rendered as `;`-separated
rows (cells at their column, strings resolved), the tabular detector sees the records and the
NIR detector pairs a 13-character NIR with its key as in any CSV.

Members are read through `blobs.read_member` (expansion budget and ratio checks apply) and
parsed incrementally with lxml, so a sheet of a million rows is never held whole. In .docx
and OpenDocument files a word may be split over several runs (`<w:t>1 84 12</w:t>...<w:t>75
123 456 40</w:t>`): their text is joined tag-free, with a line per paragraph or table row and
`;` between table cells, rather than scanned as XML.
"""

from __future__ import annotations

import csv
import html
import io
import re
import zipfile
from typing import Iterator

from lxml import etree

from .blobs import CORRUPT, MiB, Budget, Refused, read_member

SHARED_STRINGS = "xl/sharedStrings.xml"
MAX_SHARED_STRINGS = 64 * MiB        # of XML: beyond it, the cells that refer to them stay empty
MAX_COLUMNS = 16384                  # XFD, Excel's last column: a larger reference is not a cell
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_SHEET = re.compile(r"xl/worksheets/sheet(\d+)\.xml")
# The member holding the text of a .docx, or of an OpenDocument file (which has a `mimetype`).
TEXT_MEMBERS = ("word/document.xml", "content.xml")
MAX_TEXT_MEMBER = 64 * MiB
_LINE_END = re.compile(rb"</(?:w:p|w:tr|text:p|text:h|table:table-row)>|<(?:w:br|w:cr|text:line-break)\b[^>]{0,200}>")
_CELL_END = re.compile(rb"(?:</(?:w:p|text:p)>\s*)?</(?:w:tc|table:table-cell)>")   # a cell's last paragraph ends with it
_TAB = re.compile(rb"<(?:w:tab|text:tab)\b[^>]{0,200}/>")
_SPACES = re.compile(rb"<text:s\b[^>]{0,200}/>")
_TAG = re.compile(rb"<[^>]{0,4000}>")


def office_parts(source: bytes | str, budget: Budget, label: str) -> Iterator[tuple[str, Iterator[bytes]]] | None:
    """(name, UTF-8 chunks) of an office document: an .xlsx's sheets as `a;b;c` rows
    (`sheetN`, in sheet order), a .docx/.odt/.ods's text (`text`); None for any other zip."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError):
        return None                                     # zip_members says why
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return _sheets(archive, budget, label)
    member = next((name for name in TEXT_MEMBERS if name in names), None)
    if member == "word/document.xml" or (member == "content.xml" and "mimetype" in names):
        return _document(archive, member, budget, label)
    archive.close()
    return None


def _document(archive: zipfile.ZipFile, member: str, budget: Budget, label: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    with archive:
        info = archive.getinfo(member)
        if info.file_size > MAX_TEXT_MEMBER:
            budget.notes.append(f"{label}: {member} over {MAX_TEXT_MEMBER // MiB} MiB, not read")
            return
        try:
            xml = b"".join(read_member(archive, info, budget, label))
        except Refused as exc:
            budget.notes.append(str(exc))
            return
        except CORRUPT as exc:
            budget.notes.append(f"{label}: {member} unreadable ({exc.__class__.__name__})")
            return
        yield "text", iter([_xml_text(xml)])


def _xml_text(xml: bytes) -> bytes:
    """The text of a document's XML: runs joined, a line per paragraph or row, `;` per cell."""
    xml = _CELL_END.sub(b";", xml)
    xml = _LINE_END.sub(b"\n", xml)
    xml = _TAB.sub(b"\t", _SPACES.sub(b" ", xml))
    text = _TAG.sub(b"", xml).decode("utf-8", "replace")
    return html.unescape(text).encode("utf-8")


def _sheets(archive: zipfile.ZipFile, budget: Budget, label: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    with archive:
        try:
            strings = _shared_strings(archive, budget, label)
        except Refused as exc:                          # a bomb: the sheets are not read either
            budget.notes.append(str(exc))
            return
        except (*CORRUPT, etree.XMLSyntaxError) as exc:
            budget.notes.append(f"{label}: shared strings unreadable ({exc.__class__.__name__}), cells using them left empty")
            strings = []
        sheets = sorted((int(m.group(1)), name) for name in archive.namelist() if (m := _SHEET.fullmatch(name)))
        for number, name in sheets:
            yield f"sheet{number}", _sheet_rows(archive, name, strings, budget, label)


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of chunks (what lxml's incremental parser reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size


def _member(archive: zipfile.ZipFile, name: str, budget: Budget, label: str) -> _ChunkReader | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    return _ChunkReader(read_member(archive, info, budget, label))


def _shared_strings(archive: zipfile.ZipFile, budget: Budget, label: str) -> list[str]:
    reader = _member(archive, SHARED_STRINGS, budget, label)
    if reader is None:
        return []
    if archive.getinfo(SHARED_STRINGS).file_size > MAX_SHARED_STRINGS:
        budget.notes.append(f"{label}: shared strings over {MAX_SHARED_STRINGS // MiB} MiB, the cells using them left empty")
        return []
    strings = []
    for _, item in etree.iterparse(reader, tag=f"{_MAIN}si", huge_tree=True, resolve_entities=False, no_network=True):
        strings.append("".join(item.itertext(f"{_MAIN}t")))
        _forget(item)
    return strings


def _sheet_rows(archive: zipfile.ZipFile, name: str, strings: list[str], budget: Budget, label: str) -> Iterator[bytes]:
    """The sheet's rows as `;`-separated UTF-8 lines, about a MiB at a time."""
    reader = _member(archive, name, budget, label)
    if reader is None:
        return
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    rows = etree.iterparse(reader, tag=f"{_MAIN}row", huge_tree=True, resolve_entities=False, no_network=True)
    try:
        for _, row in rows:
            writer.writerow(_cells(row, strings))
            _forget(row)
            if out.tell() >= MiB:
                yield out.getvalue().encode("utf-8")
                out.seek(0)
                out.truncate()
    except etree.XMLSyntaxError as exc:                 # a damaged sheet: what was read still counts
        budget.notes.append(f"{label}: {name} unreadable after {out.tell()} bytes of rows ({exc})")
    if out.tell():
        yield out.getvalue().encode("utf-8")


def _forget(element: etree._Element) -> None:
    """Free an element parsed and used, and its siblings before it (constant memory)."""
    element.clear()
    while element.getprevious() is not None:
        del element.getparent()[0]


_C, _V, _T, _INLINE_T = f"{_MAIN}c", f"{_MAIN}v", f"{_MAIN}t", f"{_MAIN}is/{_MAIN}t"


def _cells(row: etree._Element, strings: list[str]) -> list[str]:
    """Cell values at their columns (`r="C7"` is the third), shared strings resolved."""
    values: list[str] = []
    for cell in row.iterchildren(_C):
        column = _column(cell.get("r"), len(values))
        if column >= MAX_COLUMNS:
            continue
        kind = cell.get("t")
        if kind == "inlineStr":                 # plain, or rich text in runs (rare)
            value = cell.findtext(_INLINE_T) or "".join(cell.itertext(_T))
        else:
            value = cell.findtext(_V) or ""
            if kind == "s" and value.isdigit():
                index = int(value)
                value = strings[index] if index < len(strings) else ""
        if column >= len(values):
            values.extend([""] * (column - len(values) + 1))
        values[column] = value
    return values


def _column(reference: str | None, default: int) -> int:
    """`C7` -> 2; a cell without a reference follows the previous one."""
    index = 0
    for position, letter in enumerate(reference or ""):
        if not "A" <= letter <= "Z" or position == 3:
            break
        index = index * 26 + ord(letter) - 64
    return index - 1 if index else default
