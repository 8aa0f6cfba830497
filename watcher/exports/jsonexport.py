"""An incident as versioned JSON: `"schema": "leak-watcher/incident/1"`.

The analyst's own copy of an incident (for a ticket, a DPO's file, a script), with everything
`IncidentExport` holds, masked samples included (the MISP and STIX exports, made to be shared,
leave them out). Keys, always present, in this order:

    schema          "leak-watcher/incident/1"; a change that removes or retypes a key bumps it
    id              the export's uuid (deterministic, see `model.py`)
    incident_id     the incident's id in leak-watcher (`watcher incidents show ID`)
    severity        low | medium | high | critical
    state           open | acknowledged | closed | false-positive
    first_seen      when leak-watcher first saw the incident (ISO 8601 UTC)
    last_seen       when it last saw a document of it
    first_posted    the earliest post date of its documents, as their sources date them; null
    nirs            estimated distinct NIRs (the grouping's union estimate)
    counts          {identifier kind: count}: nir is `nirs`, other kinds the largest count of
                    one document
    watchlist_hits  {watchlist name: distinct member NIRs over every document}, {} when no
                    member list matched (added to version 1: a new key, nothing removed)
    insurers        insurers named in the documents
    reasons         why the severity, of the most severe document
    samples         masked samples (`1 84 12 •• ••• ••• ••`), at most five
    sources         names of the sources the documents came from
    documents       [{source, source_kind, url, title, sha256, size, posted_at, first_seen,
                      severity, tor, watchlist_hits}]: url and title masked, tor null when
                      not known, watchlist_hits the document's own member counts

No key holds a cleartext identifier, nor a member fingerprint: texts were redacted when the
export was built, and a watchlist is named and counted, never listed.
"""

from __future__ import annotations

import json
from typing import Any

from .model import IncidentExport

__all__ = ["SCHEMA", "incident_json", "incident_record"]

SCHEMA = "leak-watcher/incident/1"


def incident_record(export: IncidentExport) -> dict[str, Any]:
    """The export as a JSON-ready dict (see the module docstring for its keys)."""
    return {
        "schema": SCHEMA,
        "id": export.uuid("json"),
        "incident_id": export.incident_id,
        "severity": export.severity,
        "state": export.state,
        "first_seen": export.first_seen,
        "last_seen": export.last_seen,
        "first_posted": export.first_posted,
        "nirs": export.nirs,
        "counts": dict(export.counts),
        "watchlist_hits": dict(export.watchlist_hits),
        "insurers": list(export.insurers),
        "reasons": list(export.reasons),
        "samples": list(export.samples),
        "sources": list(export.sources),
        "documents": [document.to_dict() for document in export.documents],
    }


def incident_json(export: IncidentExport) -> str:
    """The export as JSON text (indented, UTF-8 characters as they are)."""
    return json.dumps(incident_record(export), indent=2, ensure_ascii=False)
