"""Tables as text: the rows of a SQLite table or an .xls sheet written as `;`-separated UTF-8
lines, as an .xlsx's are (office.py), so the tabular detector reads them like any CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from .blobs import MiB, Budget


def csv_chunks(rows: Iterable[Iterable[object]], budget: Budget, label: str) -> Iterator[bytes]:
    """`rows` as `;`-separated lines (quoted where a cell needs it), about a MiB at a time,
    each chunk counted against the document's expansion budget."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    for row in rows:
        writer.writerow(row)
        if out.tell() >= MiB:
            yield _spent(out, budget, label)
    if out.tell():
        yield _spent(out, budget, label)


def _spent(out: io.StringIO, budget: Budget, label: str) -> bytes:
    data = out.getvalue().encode("utf-8", "replace")
    out.seek(0)
    out.truncate()
    budget.spend(len(data), label)
    return data


def integral(value: float) -> int | float:
    """An integral float as its integer (a NIR stored as 184127512345678.0 reads as its 15
    digits), any other as it is."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value
