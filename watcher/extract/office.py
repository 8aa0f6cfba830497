"""Office documents to text: spreadsheets (.xlsx) as rows, so an analyst's dropped workbook
reads like a CSV; word-processing and OpenDocument files (.docx, .odt, .ods) as their text.

An .xlsx is a zip of XML: cell strings live in `xl/sharedStrings.xml`, each sheet in
`xl/worksheets/sheetN.xml` refers to them by index, and empty cells are simply absent. Scanned
as raw XML, a `nir` column and its `cle` column would never meet; rendered as `;`-separated
rows (cells at their column, strings resolved), the tabular detector sees the records and the
NIR detector pairs a 13-character NIR with its key as in any CSV.

Members are read through `blobs.read_member` (expansion budget and ratio checks apply) and
pushed through lxml parsers whose targets keep only the row being read: a sheet of a million
rows, or of millions of elements that are not rows, is never held whole. In .docx
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
from array import array
from collections.abc import Iterator

from lxml import etree

from .blobs import CORRUPT, MiB, Budget, Refused, ZipSource, open_zip, read_member

SHARED_STRINGS = "xl/sharedStrings.xml"
MAX_SHARED_STRINGS = 64 * MiB        # of XML: beyond it, the cells that refer to them stay empty
MAX_COLUMNS = 16384                  # XFD, Excel's last column: a larger reference is not a cell
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_SHEET = re.compile(r"xl/worksheets/sheet([0-9]{1,6})\.xml")
# The member holding the text of a .docx, or of an OpenDocument file (which has a `mimetype`).
TEXT_MEMBERS = ("word/document.xml", "content.xml")
MAX_TEXT_MEMBER = 64 * MiB
# A tag holds no `<`: `[^<>]` with possessive bounds, so a run of `<` costs a step each.
_LINE_END = re.compile(rb"</(?:w:p|w:tr|text:p|text:h|table:table-row)>|<(?:w:br|w:cr|text:line-break)\b[^<>]{0,200}+>")
# A cell's last paragraph ends with it.
_CELL_END = re.compile(rb"(?:</(?:w:p|text:p)>\s*)?</(?:w:tc|table:table-cell)>")
_TAB = re.compile(rb"<(?:w:tab|text:tab)\b[^<>]{0,200}+/>")
_SPACES = re.compile(rb"<text:s\b[^<>]{0,200}+/>")
_TAG = re.compile(rb"<[^<>]{0,4000}+>")
# An OpenDocument number cell: its value in full beside the text it is shown as, which may have
# lost digits (LibreOffice shows a 15-digit NIR as `1,84127E+014`). Its text becomes the value.
_VALUE_CELL = re.compile(rb'(<table:table-cell\b[^<>]{0,2000}?\boffice:value="([0-9.eE+-]{1,40})"[^<>]{0,2000}+>)'
                         rb"(?:(?!</table:table-cell>)[^<]|<(?!/table:table-cell>)){0,4000}+</table:table-cell>")
# Where a document's XML may be cut into pieces: before an opening tag (no pattern above
# spans one). Pieces of about a MiB keep the memory flat whatever the member's size.
_OPENING_TAGS = (b"<w:", b"<text:", b"<table:")
MAX_PIECE = 4 * MiB


def office_parts(source: ZipSource, budget: Budget, label: str) -> Iterator[tuple[str, Iterator[bytes]]] | None:
    """(name, UTF-8 chunks) of an office document: an .xlsx's sheets as `a;b;c` rows
    (`sheetN`, in sheet order), a .docx/.odt/.ods's text (`text`); None for any other zip."""
    try:
        archive = open_zip(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        return None                                     # zip_members says why
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return _sheets(archive, budget, label)
    member = next((name for name in TEXT_MEMBERS if name in names), None)
    if member == "word/document.xml" or (member == "content.xml" and "mimetype" in names):
        return _document(archive, member, budget, label)
    archive.close()
    return None


def _document(archive: zipfile.ZipFile, member: str, budget: Budget,
              label: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    with archive:
        info = archive.getinfo(member)
        if info.file_size > MAX_TEXT_MEMBER:
            budget.note(f"{label}: {member} over {MAX_TEXT_MEMBER // MiB} MiB, not read")
            return
        yield "text", _text_pieces(read_member(archive, info, budget, label))


def _text_pieces(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The text of a document's XML, a piece at a time (a bomb or a corrupt stream raises
    from `chunks` after the text before it was given)."""
    pending = bytearray()
    for chunk in chunks:
        start = len(pending)
        pending += chunk
        cut = max(pending.rfind(tag, start) for tag in _OPENING_TAGS)
        if cut <= 0 and len(pending) > MAX_PIECE:      # no opening tag for MiBs: any tag then
            cut = pending.rfind(b"<", start)
        if cut > 0:
            yield _xml_text(bytes(pending[:cut]))
            del pending[:cut]
    if pending:
        yield _xml_text(bytes(pending))


def _xml_text(xml: bytes) -> bytes:
    """The text of a document's XML: runs joined, a line per paragraph or row, `;` per cell
    (a number cell's full value, not the text it is shown as)."""
    xml = _VALUE_CELL.sub(rb"\1\2</table:table-cell>", xml)
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
            budget.note(str(exc))
            return
        except (*CORRUPT, etree.XMLSyntaxError) as exc:
            budget.note(f"{label}: shared strings unreadable ({exc.__class__.__name__}), cells using them left empty")
            strings = SharedStrings()
        sheets = sorted((int(m.group(1)), name) for name in archive.namelist() if (m := _SHEET.fullmatch(name)))
        for number, name in sheets:
            yield f"sheet{number}", _sheet_rows(archive, name, strings, budget, label)


def _member(archive: zipfile.ZipFile, name: str, budget: Budget, label: str) -> Iterator[bytes] | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    return read_member(archive, info, budget, label)


class SharedStrings:
    """A workbook's shared strings, packed: each block of 4,096 joined into one string with
    their end offsets (millions of small str objects would take four times the memory)."""

    BLOCK = 4096

    def __init__(self) -> None:
        self._blocks: list[tuple[str, array[int]]] = []
        self._batch: list[str] = []

    def append(self, text: str) -> None:
        self._batch.append(text)
        if len(self._batch) == self.BLOCK:
            self._seal()

    def _seal(self) -> None:
        ends, end = array("I"), 0
        for text in self._batch:
            end += len(text)
            ends.append(end)
        self._blocks.append(("".join(self._batch), ends))
        self._batch = []

    def __len__(self) -> int:
        return len(self._blocks) * self.BLOCK + len(self._batch)

    def get(self, index: int) -> str:
        """The string at `index`; empty past the end."""
        block, position = divmod(index, self.BLOCK)
        if block < len(self._blocks):
            text, ends = self._blocks[block]
            return text[ends[position - 1] if position else 0:ends[position]]
        return self._batch[position] if block == len(self._blocks) and position < len(self._batch) else ""


def _shared_strings(archive: zipfile.ZipFile, budget: Budget, label: str) -> SharedStrings:
    strings = SharedStrings()
    chunks = _member(archive, SHARED_STRINGS, budget, label)
    if chunks is None:
        return strings
    if archive.getinfo(SHARED_STRINGS).file_size > MAX_SHARED_STRINGS:
        budget.note(f"{label}: shared strings over {MAX_SHARED_STRINGS // MiB} MiB, the cells using them left empty")
        return strings
    parser = _parser(_StringsTarget(strings))
    for chunk in chunks:
        parser.feed(chunk)
    parser.close()
    return strings


def _sheet_rows(archive: zipfile.ZipFile, name: str, strings: SharedStrings, budget: Budget,
                label: str) -> Iterator[bytes]:
    """The sheet's rows as `;`-separated UTF-8 lines, about a MiB at a time."""
    chunks = _member(archive, name, budget, label)
    if chunks is None:
        return
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    target = _SheetTarget(strings)
    parser = _parser(target)
    try:
        for chunk in chunks:
            parser.feed(chunk)
            writer.writerows(target.rows)
            target.rows.clear()
            if out.tell() >= MiB:
                yield out.getvalue().encode("utf-8")
                out.seek(0)
                out.truncate()
        parser.close()
    except etree.XMLSyntaxError as exc:                 # a damaged sheet: what was read still counts
        budget.note(f"{label}: {name} unreadable after {out.tell()} bytes of rows ({exc})")
    writer.writerows(target.rows)
    if out.tell():
        yield out.getvalue().encode("utf-8")


def _parser(target: object) -> etree.XMLParser:
    """A push parser that hands its events to `target` and builds no tree: memory stays flat
    whatever the XML holds (millions of elements outside any row, say)."""
    return etree.XMLParser(target=target, huge_tree=True, resolve_entities=False, no_network=True)


_ROW, _C, _V, _T, _SI = f"{_MAIN}row", f"{_MAIN}c", f"{_MAIN}v", f"{_MAIN}t", f"{_MAIN}si"
_INDEX = re.compile(r"[0-9]{1,9}")       # ASCII digits only: `\d` and isdigit() take ² and ١


class _StringsTarget:
    """Parser target for the shared strings: each `si`'s text, its runs (`t`) joined."""

    def __init__(self, strings: SharedStrings) -> None:
        self._strings = strings
        self._texts: list[str] | None = None       # inside an `si`
        self._capture = 0

    def start(self, tag: str, attrib: object) -> None:
        if tag == _SI:
            self._texts = []
        elif tag == _T and self._texts is not None:
            self._capture += 1

    def data(self, text: str) -> None:
        if self._capture:
            self._texts.append(text)    # type: ignore[union-attr]

    def end(self, tag: str) -> None:
        if tag == _T and self._capture:
            self._capture -= 1
        elif tag == _SI and self._texts is not None:
            self._strings.append("".join(self._texts))
            self._texts, self._capture = None, 0

    def close(self) -> None:
        return None


class _SheetTarget:
    """Parser target for a worksheet: `rows` gets each row's cell values at their columns
    (`r="C7"` is the third), shared strings resolved. A value is the text of the cell's `v`,
    or of its `t` runs (inline strings); a shared-string cell whose value is not a plain index
    (`123²`, which str.isdigit() takes and int() refuses) keeps that value as its text."""

    def __init__(self, strings: SharedStrings) -> None:
        self.rows: list[list[str]] = []
        self._strings = strings
        self._values: list[str] | None = None      # inside a row
        self._column = 0
        self._kind: str | None = None
        self._texts: list[str] | None = None       # inside a cell
        self._capture = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if tag == _C:
            if self._values is not None:
                self._column = _column(attrib.get("r"), len(self._values))
                self._kind, self._texts, self._capture = attrib.get("t"), [], 0
        elif tag in (_V, _T):
            if self._texts is not None:
                self._capture += 1
        elif tag == _ROW:
            self._values, self._texts = [], None

    def data(self, text: str) -> None:
        if self._capture:
            self._texts.append(text)    # type: ignore[union-attr]

    def end(self, tag: str) -> None:
        if tag in (_V, _T):
            if self._capture:
                self._capture -= 1
        elif tag == _C:
            if self._texts is not None:
                self._cell("".join(self._texts))
            self._texts, self._capture = None, 0
        elif tag == _ROW and self._values is not None:
            self.rows.append(self._values)
            self._values = None

    def _cell(self, value: str) -> None:
        values, column = self._values, self._column
        if values is None or column >= MAX_COLUMNS:
            return
        if self._kind == "s":
            value = self._strings.get(int(value)) if _INDEX.fullmatch(value) else value
        if column >= len(values):
            values.extend([""] * (column - len(values) + 1))
        values[column] = value

    def close(self) -> None:
        return None


def _column(reference: str | None, default: int) -> int:
    """`C7` -> 2; a cell without a reference follows the previous one."""
    index = 0
    for position, letter in enumerate(reference or ""):
        if not "A" <= letter <= "Z" or position == 3:
            break
        index = index * 26 + ord(letter) - 64
    return index - 1 if index else default
