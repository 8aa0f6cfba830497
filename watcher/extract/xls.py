"""Excel 97-2003 workbooks (.xls: BIFF records in an OLE2 compound file) as `;`-separated rows,
one part per sheet, as an .xlsx is read (office.py). Scanned raw, a NIR typed into a cell is an
8-byte float and invisible; as rows it reads as its 15 digits, beside its `cle` column.

Read by xlrd (2.x reads .xls only, pure Python), from at most MAX_WORKBOOK bytes held in
memory, its warnings kept out of the output. An OLE2 file that is not a workbook (a .doc, a
.msg) is left to the text path, as before; a damaged sheet ends with a note.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .blobs import MiB, Budget, Refused
from .rows import csv_chunks, integral

if TYPE_CHECKING:
    import xlrd

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_WORKBOOK = 64 * MiB
_TEXT, _NUMBER, _DATE, _BOOLEAN = 1, 2, 3, 4        # xlrd's XL_CELL_TEXT, _NUMBER, _DATE, _BOOLEAN


def looks_like_ole2(head: bytes) -> bool:
    return head.startswith(OLE2_MAGIC)


def xls_sheets(data: bytes, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]] | None:
    """(sheet name, its rows as UTF-8 lines) for each sheet, or None when `data` is not a
    workbook xlrd can open (another OLE2 document, or one too damaged to start). xlrd is
    imported here (2.6 ms): `watcher scan` of anything else does not pay for it."""
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True, ragged_rows=True, logfile=io.StringIO())
    except Exception:       # xlrd's own errors, and what hostile bytes make it raise: not a workbook
        return None
    return _sheets(book, budget, what)


def _sheets(book: xlrd.book.Book, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    try:
        budget.spend_members(book.nsheets, what)
        for index in range(book.nsheets):
            try:
                sheet = book.sheet_by_index(index)
            except Exception as exc:        # a damaged sheet: the others are still read
                budget.note(f"{what}: sheet {index + 1} unreadable ({exc.__class__.__name__})")
                continue
            yield sheet.name, csv_chunks(_rows(sheet), budget, f"{what}: sheet {sheet.name!r}")
            book.unload_sheet(index)
    except Refused as exc:
        budget.note(str(exc))
    finally:
        book.release_resources()


def _rows(sheet: xlrd.sheet.Sheet) -> Iterator[list[object]]:
    for index in range(sheet.nrows):
        yield [_cell(cell.ctype, cell.value) for cell in sheet.row(index)]


def _cell(kind: int, value: object) -> object:
    """A number as Excel shows it unformatted (a NIR typed in a cell is 184127512345678.0),
    text as text, errors and blanks empty."""
    if kind in (_NUMBER, _DATE) and isinstance(value, float):
        return integral(value)
    if kind == _BOOLEAN:
        return int(bool(value))
    return value if kind == _TEXT else ""
