"""SQLite databases (an application's or a small CRM's `.db`, `.sqlite`): each table read as
`;`-separated rows under a header of its column names, as a spreadsheet is (office.py). Scanned
raw, a NIR stored as an INTEGER is eight binary bytes and invisible; as rows it reads as its
digits, and a `nir` column meets its `cle` column as in any CSV.

A file scanned from disk is opened read-only and `immutable` (SQLite writes nothing, not even
a journal, and reads only the pages it needs); a database fetched or found inside an archive
is opened in memory (`Connection.deserialize`) from at most MAX_DATABASE bytes. Only its
tables' stored columns are read: no view, no trigger, no virtual table, no VIRTUAL generated
column (what a hostile schema could make run). A value longer than MAX_VALUE is an error that
ends its table, the queries of one database stop after MAX_STEPS of SQLite's virtual machine
(~10 s of CPU: a million-row table takes a few percent of it), and the rows count against the
document's expansion budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .blobs import MiB, Budget, Refused
from .rows import csv_chunks, integral

if TYPE_CHECKING:
    import sqlite3

MAGIC = b"SQLite format 3\x00"
MAX_DATABASE = 256 * MiB
MAX_VALUE = 4 * MiB
MAX_STEPS = 10**9
_STEPS_A_CALL = 100_000         # the progress handler's period
_TABLES = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
           "AND coalesce(upper(substr(ltrim(sql), 1, 14)), '') != 'CREATE VIRTUAL' ORDER BY rootpage")


def looks_like_sqlite(head: bytes) -> bool:
    return head.startswith(MAGIC)


def sqlite_tables(source: bytes | Path, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(table name, its rows as UTF-8 `;`-separated lines) for each table of the database (its
    bytes, or its file); a table must be read before the next is asked for. A database SQLite
    cannot open, or a table it cannot read to the end, is noted; what was read stands.
    sqlite3 is imported here: `watcher scan` of anything else does not pay for it."""
    import sqlite3

    try:
        db = _open(source)
    except sqlite3.Error as exc:
        budget.note(f"{what}: unreadable SQLite database ({exc.__class__.__name__})")
        return
    try:
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE)
        for pragma in ("query_only = ON", "trusted_schema = OFF", "cell_size_check = ON"):
            db.execute(f"PRAGMA {pragma}")
        calls = itertools.count()
        db.set_progress_handler(lambda: next(calls) * _STEPS_A_CALL > MAX_STEPS, _STEPS_A_CALL)
        tables = [name for (name,) in db.execute(_TABLES)]
        budget.spend_members(len(tables), what)
    except (sqlite3.Error, Refused) as exc:
        db.close()
        budget.note(str(exc) if isinstance(exc, Refused) else
                    f"{what}: unreadable SQLite database ({exc.__class__.__name__})")
        return
    try:
        for name in tables:
            label = f"{what}: table {name!r}"
            yield name, csv_chunks(_rows(db, name, budget, label), budget, label)
    finally:
        db.close()


def _open(source: bytes | Path) -> sqlite3.Connection:
    import sqlite3

    if isinstance(source, Path):
        return sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db.deserialize(source)
    except sqlite3.Error:
        db.close()
        raise
    return db


def _quoted(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


def _rows(db: sqlite3.Connection, table: str, budget: Budget, label: str) -> Iterator[list[object]]:
    """The table's header (its column names) and rows: its stored columns only, since a
    VIRTUAL generated column is computed as it is read (a hostile schema's expression, say
    `length(hex(zeroblob(1000000 + id)))`, costs 1 ms a row, one VM step: MAX_STEPS does not
    see it, and it holds nothing)."""
    import sqlite3

    try:
        stored = [name for _, name, *_, hidden in db.execute(f"PRAGMA table_xinfo({_quoted(table)})") if hidden != 2]
        if not stored:
            return
        cursor = db.execute(f"SELECT {', '.join(map(_quoted, stored))} FROM {_quoted(table)}")
        yield stored
        while rows := cursor.fetchmany(1000):
            yield from ([_cell(value) for value in row] for row in rows)
    except sqlite3.Error as exc:        # corrupt pages, a value over MAX_VALUE, MAX_STEPS
        budget.note(f"{label}: not read to its end ({exc.__class__.__name__}: {exc})")


def _cell(value: object) -> object:
    """A value as a cell: an integral REAL as its integer, a BLOB as its text when it is UTF-8
    (binary otherwise: left out)."""
    if isinstance(value, float):
        return integral(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return ""
    return value
