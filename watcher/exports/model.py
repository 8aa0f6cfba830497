"""What an incident export holds, built from an incident payload, and the ids it is given.

`IncidentExport` is the one value the three formats (`misp.py`, `stix.py`, `jsonexport.py`)
render: the incident's severity, state, dates, counts per identifier kind, insurers, reasons,
masked samples, and its documents (source, masked URL and title, sha256, size, post date,
first seen, severity, Tor). It holds no cleartext identifier: every text is passed through
`watcher.redact.redact` here, once more after the store and the alert payload did, because
titles, URLs and reasons are attacker-chosen; dates are kept only in the stored form
(`watcher.dates.is_normalised`), so no other text passes through a date field.

The payload
-----------

`export_from_payload(payload, installation=...)` reads the dict an alert carries (its
`payload` column, or its JSONL record from `watcher.alerts.jsonl_record`): `incident` (id,
nirs, sources, first_seen, first_posted), `counts`, `insurers`, `reasons`, `samples`,
`first_seen`, `first_posted`, and the one document it was raised by (`source`, `url`,
`item_title`, `posted_at`). It also reads, when present, the keys `incident_payload` adds:

    severity, state, last_seen       the incident's (an alert payload has none of them)
    documents                        every document of the incident: dicts with source,
                                     source_kind, url, title, sha256, size, posted_at,
                                     first_seen, severity, tor (None: not known), and
                                     watchlist_hits (its finding's members per watchlist)

Member counts (`watchlist_hits`: watchlist name -> distinct member NIRs, never a NIR or a
fingerprint) are the incident's (`incident.watchlist_hits`, distinct over all its documents;
an alert payload older than the incident counts falls back to its document's) and each
document's (`documents[].watchlist_hits`; in an alert payload, its `watchlist_hits`).

`incident_payload(state, incident_id)` builds that whole dict from the state database (the
incident row and its findings here; its documents, the item links they were seen in with their
source kinds, from `watcher.alerts.records.incident_documents`, the one query of an incident's
documents, which `watcher incidents show` and the console read too), so an incident that never
alerted (below `min_severity`) exports too.

Deterministic ids
-----------------

Every id an export gives (MISP event, object and attribute uuids; STIX report, identity and
observed-data ids) is a uuid5 in a namespace of the installation, named after the incident id
and what the object is (`incident/7`, `incident/7/misp/object/document/3`...). Exporting the
same incident twice gives the same ids, so a MISP instance or a TIP that receives the second
export updates the event or STIX objects it has (a STIX object with the same id and a later
`modified` is its next version) instead of holding two copies of one leak; an analyst can
diff two exports. Random ids would duplicate the incident at every export.

The namespace is per installation because incident ids are not: every leak-watcher has an
incident #1, and two installations sharing one MISP must not overwrite each other's events.
`installation_namespace(secret)` derives it from the installation's fingerprint key (an
HMAC of a fixed label: stable across restarts and configuration moves, and revealing nothing
of the key); `watcher rekey` replaces the key and so the namespace: exports made after it
are new events. Ids that a format defines by their content (STIX file and URL observables,
uuid5 of their hashes or value in the STIX namespace) are left to the format: they are the
same in every installation, which is what lets two reports of one file correlate.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import is_onion
from ..dates import is_normalised
from ..redact import redact
from ..score import SEVERITIES, severity_rank

if TYPE_CHECKING:
    from ..store import StateDB

__all__ = [
    "STATES",
    "Document",
    "IncidentExport",
    "export_from_payload",
    "incident_payload",
    "installation_namespace",
    "watchlist_hits",
]

#: An incident's triage state. Exports of an incident the store records no state for say "open".
STATES = ("open", "acknowledged", "closed", "false-positive")
#: The store's name of a state, where it differs (watcher incidents ack records "acked").
_STORED_STATES = {"acked": "acknowledged"}
#: The root of every installation's namespace (uuid5 of the project's name in the URL namespace).
ROOT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://leak-watcher/exports")
_NAMESPACE_LABEL = b"leak-watcher exports namespace v1"
_HEX_DIGEST = frozenset("0123456789abcdef")
TEXT_LIMIT = 300            # a title, URL or reason longer than this is cut (with an ellipsis)


def installation_namespace(secret: bytes) -> uuid.UUID:
    """The uuid5 namespace of this installation's export ids, from its fingerprint key."""
    label = hmac.digest(secret, _NAMESPACE_LABEL, "sha256").hex()
    return uuid.uuid5(ROOT_NAMESPACE, label)


def clean_text(value: object, limit: int = TEXT_LIMIT) -> str | None:
    """Untrusted text as one printable, redacted line of at most `limit` characters; None stays."""
    if value is None:
        return None
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "\u2026"
    return redact(flat) or None


def _date(value: object) -> str | None:
    """A stored date (`2026-11-28T16:40:00Z`), or None for anything else."""
    return value if is_normalised(value) else None


def _sha256(value: object) -> str | None:
    text = str(value or "").lower()
    return text if len(text) == 64 and set(text) <= _HEX_DIGEST else None


def _severity(value: object, default: str = "low") -> str:
    text = str(value or "")
    return text if text in SEVERITIES[1:] else default


def _count(value: object) -> int:
    try:
        return max(int(value), 0)   # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Document:
    """One document of an incident, as exports show it (texts masked)."""

    source: str
    url: str | None
    title: str | None
    sha256: str | None
    size: int | None
    posted_at: str | None       # the post's own date, when its source gives one
    first_seen: str | None      # when leak-watcher first saw it
    severity: str | None
    tor: bool | None            # fetched through Tor (None: not known)
    source_kind: str | None = None
    watchlist_hits: dict[str, int] = field(default_factory=dict)   # distinct members per watchlist

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        size = data.get("size")
        tor = data.get("tor")
        url = clean_text(data.get("url"))
        if tor is None and url and is_onion(url):
            tor = True
        return cls(
            source=clean_text(data.get("source"), 80) or "?",
            url=url,
            title=clean_text(data.get("title", data.get("item_title"))),
            sha256=_sha256(data.get("sha256")),
            size=_count(size) if size is not None else None,
            posted_at=_date(data.get("posted_at")),
            first_seen=_date(data.get("first_seen")),
            severity=_severity(data["severity"]) if data.get("severity") else None,
            tor=bool(tor) if tor is not None else None,
            source_kind=clean_text(data.get("source_kind"), 40),
            watchlist_hits=watchlist_hits(data.get("watchlist_hits")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "source_kind": self.source_kind, "url": self.url, "title": self.title,
                "sha256": self.sha256, "size": self.size, "posted_at": self.posted_at,
                "first_seen": self.first_seen, "severity": self.severity, "tor": self.tor,
                "watchlist_hits": dict(self.watchlist_hits)}


def watchlist_hits(value: object) -> dict[str, int]:
    """A `watchlist_hits` map (watchlist name -> distinct members) as exports carry it: names
    cleaned like any text (a name is the operator's, but a NIR-shaped one is masked all the
    same), counts as non-negative integers, zeros left out, by name."""
    if not isinstance(value, Mapping):
        return {}
    hits: dict[str, int] = {}
    for name, count in value.items():
        cleaned, members = clean_text(name, 64), _count(count)
        if cleaned and members:
            hits[cleaned] = max(hits.get(cleaned, 0), members)
    return dict(sorted(hits.items()))


@dataclass(frozen=True)
class IncidentExport:
    """One incident, ready to render: no cleartext identifier, ids from `namespace`."""

    incident_id: int
    namespace: uuid.UUID
    severity: str
    state: str
    first_seen: str
    last_seen: str
    first_posted: str | None
    nirs: int                               # estimated distinct NIRs of the incident
    counts: dict[str, int]                  # per identifier kind (nir: the incident's estimate)
    insurers: tuple[str, ...]
    reasons: tuple[str, ...]
    samples: tuple[str, ...]                # masked, as the alerts carry them
    sources: tuple[str, ...]
    documents: tuple[Document, ...] = field(default=())
    watchlist_hits: dict[str, int] = field(default_factory=dict)  # distinct members per watchlist, every document

    def uuid(self, *parts: object) -> str:
        """The deterministic id of a part of this export (see the module docstring)."""
        name = "/".join(["incident", str(self.incident_id), *map(str, parts)])
        return str(uuid.uuid5(self.namespace, name))

    @property
    def documents_with_hash(self) -> tuple[Document, ...]:
        return tuple(d for d in self.documents if d.sha256)


def export_from_payload(payload: Mapping[str, Any], *, installation: uuid.UUID) -> IncidentExport:
    """The export of the incident `payload` describes (see the module docstring for its keys).

    `installation` is the id namespace (`installation_namespace(secret)`). Raises ValueError
    when the payload names no incident or has no first-seen date.
    """
    incident = payload.get("incident") or {}
    incident_id = incident.get("id", payload.get("incident_id"))
    if incident_id is None:
        raise ValueError("the payload names no incident (no incident.id)")
    documents = payload.get("documents")
    if documents is None:       # an alert payload: the one document that raised it
        documents = [{"source": payload.get("source"), "url": payload.get("url"),
                      "title": payload.get("item_title"), "sha256": payload.get("sha256"),
                      "size": payload.get("size"), "posted_at": payload.get("posted_at"),
                      "severity": payload.get("severity"), "watchlist_hits": payload.get("watchlist_hits")}
                     ] if payload.get("source") else []
    docs = tuple(Document.from_dict(d) for d in documents)
    severity = _severity(payload.get("severity"), "")
    if not severity:
        severity = max((d.severity for d in docs if d.severity), key=severity_rank, default="low")
    counts = {clean_text(kind, 40) or "?": _count(value) for kind, value in (payload.get("counts") or {}).items()}
    nirs = max(_count(incident.get("nirs")), counts.get("nir", 0))
    if nirs:
        counts["nir"] = nirs
    first_seen = _date(incident.get("first_seen")) or _date(payload.get("first_seen"))
    if first_seen is None:
        raise ValueError("the payload has no first_seen date")
    state = str(payload.get("state") or "open")
    state = _STORED_STATES.get(state, state)
    return IncidentExport(
        incident_id=int(incident_id),
        namespace=installation,
        severity=severity,
        state=state if state in STATES else "open",
        first_seen=first_seen,
        last_seen=_date(payload.get("last_seen")) or max([first_seen, *(d.first_seen or "" for d in docs)]),
        first_posted=_date(incident.get("first_posted")) or _date(payload.get("first_posted")),
        nirs=nirs,
        counts=dict(sorted(counts.items())),
        insurers=_texts(payload.get("insurers"), 120),
        reasons=_texts(payload.get("reasons")),
        samples=_texts(payload.get("samples"), 120),
        sources=_texts(incident.get("sources") or [d.source for d in docs], 80),
        documents=docs,
        watchlist_hits=watchlist_hits(incident.get("watchlist_hits") or payload.get("watchlist_hits")),
    )


def _texts(values: Iterable[object] | None, limit: int = TEXT_LIMIT) -> tuple[str, ...]:
    """Distinct cleaned texts, in their first order."""
    cleaned = (clean_text(value, limit) for value in values or ())
    return tuple(dict.fromkeys(text for text in cleaned if text))


# --------------------------------------------------------------------------- from the store


def incident_payload(state: StateDB, incident_id: int,
                     tor_sources: Iterable[str] = ()) -> dict[str, Any] | None:
    """The full payload of incident `incident_id` from the state database, or None if unknown.

    Counts are the incident's NIR estimate for `nir`, and for every other kind the largest
    count of one of its documents (reposts of one leak would be counted twice by a sum).
    Insurers are those of every document; reasons and samples those of the most severe.
    `tor_sources` names the sources configured with `tor = true` (the store does not record
    how a document was fetched); a document at a .onion URL is marked Tor whatever it says.
    """
    row = state.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        return None
    names = [column[0] for column in state.db.execute("SELECT * FROM incidents LIMIT 0").description]
    incident = dict(zip(names, row, strict=False))
    findings = state.db.execute(
        """SELECT f.id, f.sha256, f.size, f.severity, f.reasons, f.counts, f.insurers, f.samples, f.first_seen,
            f.watchlist_hits
        FROM incident_findings AS m JOIN findings AS f ON f.id = m.finding_id
        WHERE m.incident_id = ? ORDER BY f.first_seen, f.id""",
        (incident_id,),
    ).fetchall()
    counts: dict[str, int] = {}
    insurers: list[str] = []
    members: dict[int, dict[str, int]] = {}
    for finding_id, _sha256, _size, _severity, _reasons, counts_json, insurers_json, _samples, _seen, hits in findings:
        for kind, value in json.loads(counts_json).items():
            counts[kind] = max(counts.get(kind, 0), _count(value))
        insurers.extend(json.loads(insurers_json))
        members[finding_id] = json.loads(hits or "{}")
    documents = _documents(state, incident_id, frozenset(tor_sources), members)
    worst = max(findings, key=lambda f: (severity_rank(f[3]), -f[0]), default=None)
    return {
        "incident": {"id": incident["id"], "nirs": incident["nirs"], "sources": json.loads(incident["sources"]),
                     "findings": len(findings), "first_seen": incident["first_seen"],
                     "first_posted": incident.get("first_posted"),
                     "watchlist_hits": json.loads(incident.get("watchlist_hits") or "{}")},
        "severity": incident["severity"],
        "state": incident.get("state") or "open",
        "first_seen": incident["first_seen"],
        "last_seen": incident["last_seen"],
        "first_posted": incident.get("first_posted"),
        "counts": counts,
        "insurers": list(dict.fromkeys(insurers)),
        "reasons": json.loads(worst[4]) if worst else [],
        "samples": json.loads(worst[7])[:5] if worst else [],
        "documents": documents,
    }


def _documents(state: StateDB, incident_id: int, tor: frozenset[str],
               members: Mapping[int, dict[str, int]]) -> list[dict[str, Any]]:
    """The incident's documents (`watcher.alerts.records.incident_documents`), finding by
    finding (by first sighting), each finding's by first sighting and source: the order the
    export's per-document ids are numbered in, so it must not change. `members`: each
    finding's member counts per watchlist."""
    from ..alerts.records import incident_documents

    rows = sorted(incident_documents(state.db, incident_id),
                  key=lambda d: (d["finding_seen"], d["finding_id"], d["first_seen"], d["source"]))
    return [{"source": d["source"], "source_kind": d["source_kind"], "url": d["url"], "title": d["title"],
             "sha256": d["sha256"], "size": d["size"], "posted_at": d["posted_at"], "first_seen": d["first_seen"],
             "severity": d["severity"], "tor": (d["source"] in tor) if tor else None,
             "watchlist_hits": members.get(d["finding_id"], {})} for d in rows]
