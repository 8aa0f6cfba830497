"""How counts are written for people, in alerts, reasons and the CLI: `1 document`, `2 documents`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# A detector's name (the key of a report's counts) as a noun for people: singular, plural.
COUNT_NOUNS = {
    "nir": ("NIR", "NIRs"), "iban": ("IBAN", "IBANs"), "siret": ("SIRET", "SIRETs"),
    "rpps": ("RPPS number", "RPPS numbers"), "email": ("e-mail address", "e-mail addresses"),
    "phone": ("phone number", "phone numbers"), "insurer": ("insurer name", "insurer names"),
    "health_terms": ("health term", "health terms"),
}


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`1 document`, `2 documents`, `1,200 NIRs`, `3 RPPS numbers`; `plural_form` when adding
    an `s` is wrong (`plural(2, "entry", "entries")`)."""
    return f"{count:,} {noun if count == 1 else (plural_form or noun + 's')}"


def counts_text(counts: Iterable[tuple[str, int]]) -> str:
    """A report's counts by detector as one line, most first, zeros left out: `25 NIRs, 3 e-mail
    addresses, 2 health terms` (an operator's rule keeps its own name)."""
    ordered = sorted(((name, int(value or 0)) for name, value in counts), key=lambda item: (-item[1], item[0]))
    return ", ".join(counted(value, name) for name, value in ordered if value)


def counted(count: int, name: str) -> str:
    """`count` values of the detector `name`: `1 e-mail address`, `3 e-mail addresses` (an
    operator's rule keeps its own name)."""
    return plural(count, *COUNT_NOUNS.get(name, (name, name + "s")))


def members_of(name: str, count: int) -> str:
    """`12 of our members (watchlist adherents)`: a member watchlist's hits, as every output
    (reasons, alerts, exports, the console) writes them."""
    return f"{count:,} of our members (watchlist {name})"


def members_text(hits: Mapping[str, int]) -> str:
    """`12 of our members (watchlist acme); 3 of our members (watchlist beta)`: every watchlist
    with a hit, by name ("" for none)."""
    return "; ".join(members_of(name, int(count)) for name, count in sorted(hits.items()) if count)
