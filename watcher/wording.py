"""How counts are written for people, in alerts, reasons and the CLI: `1 document`, `2 documents`."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`1 document`, `2 documents`, `1,200 NIRs`, `3 RPPS numbers`; `plural_form` when adding
    an `s` is wrong (`plural(2, "entry", "entries")`)."""
    return f"{count:,} {noun if count == 1 else (plural_form or noun + 's')}"
