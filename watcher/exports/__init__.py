"""Incident exports: a MISP event, a STIX 2.1 bundle, versioned JSON (issue 14, part 3).

    model.py        IncidentExport: what every format renders, built from an incident payload
                    (`export_from_payload`), the payload read from the state database
                    (`incident_payload`), deterministic ids (`installation_namespace`)
    misp.py         the MISP event (pymisp)
    stix.py         the STIX 2.1 bundle (stix2)
    jsonexport.py   "leak-watcher/incident/1" JSON

The way to an export, for the command line:

    payload = incident_payload(state, incident_id, tor_sources=names_of_tor_sources)
    export = export_from_payload(payload, installation=installation_namespace(secret))
    text = render(export, "misp" | "stix" | "json", tlp="tlp:amber")

pymisp and stix2 are imported only inside the functions that build their format (each costs
about 0.2-0.3 s), so importing this package costs nothing more than `watcher.redact`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .model import (
    Document,
    IncidentExport,
    export_from_payload,
    incident_payload,
    installation_namespace,
)

if TYPE_CHECKING:
    from ..store import StateDB

__all__ = ["FORMATS", "Document", "IncidentExport", "export_from_payload", "export_incident", "incident_payload",
           "installation_namespace", "render"]

FORMATS = ("misp", "stix", "json")


def render(export: IncidentExport, fmt: str, *, tlp: str | None = None) -> str:
    """The export as text in format `fmt` (one of FORMATS); `tlp` for misp and stix."""
    if fmt == "json":
        from .jsonexport import incident_json

        return incident_json(export)
    options: dict[str, Any] = {"tlp": tlp} if tlp else {}
    if fmt == "misp":
        from .misp import misp_json

        return misp_json(export, **options)
    if fmt == "stix":
        from .stix import stix_json

        return stix_json(export, **options)
    raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")


def export_incident(state: StateDB, incident_id: int, secret: bytes, fmt: str, *,
                    tor_sources: Iterable[str] = (), tlp: str | None = None) -> str | None:
    """Incident `incident_id` of the state database rendered in `fmt` under this
    installation's ids (`secret`), or None if there is no such incident: what `watcher
    incidents export` writes and the console downloads. ValueError for a TLP the format does
    not know."""
    payload = incident_payload(state, incident_id, tor_sources=tor_sources)
    if payload is None:
        return None
    return render(export_from_payload(payload, installation=installation_namespace(secret)), fmt, tlp=tlp)
