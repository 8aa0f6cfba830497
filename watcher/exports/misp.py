"""An incident as a MISP event (pymisp), the way French sector CERTs share leaks.

    event       info "leak-watcher incident #7: CRITICAL, ~25 NIRs, Viamedis", date = first
                seen, timestamp = last seen, threat level from the severity, analysis from the
                triage state, distribution "your organisation only" (0) unless told, not
                published (an analyst reviews it in MISP first)
    tags        the TLP (`tlp:amber` unless told), `infoleak:submission="crawler"`,
                `infoleak:source="..."` per kind of source, `infoleak:automatic-detection=
                "mail"` / `"phone-number"` when such identifiers were counted, and
                `infoleak:confirmed="false-positive"` for an incident triaged so: machine tags
                of MISP's infoleak taxonomy (version 3) as written there; NIRs, IBANs or health
                data have no value in it, and none is made up. `infoleak:output-format`
                (ail-daily/weekly/monthly) names AIL's digest events, not one incident's: unused
    attributes  a counter, the incident's distinct-NIR estimate; the other identifiers
                counted as one text (`identifiers counted: 12 e-mail addresses, 3 IBANs`: MISP
                refuses a second event attribute of the same type and value, and two kinds
                often have the same count); the insurers as target-org, the reasons and the
                severity as text; each with the incident's first and last seen
    members     per member watchlist with a hit: the event tag `leak-watcher:watchlist="NAME"`
                (what an analyst's MISP filters events on: `tags=leak-watcher:watchlist=...`)
                and a `confidentiality-impact` object (the STIX 2.1 incident extension's, in
                MISP's templates): `record_count` the distinct members over every document
                (a counter, tagged the same), `information_type` pii, `loss_type`
                suspected-loss (none once triaged a false positive), `description` `12 of our
                members (watchlist NAME)`; the info says it too. An object rather than an
                event attribute: MISP refuses a second event attribute of the same type and
                value (a list's 70 members beside the 70 NIRs' counter), not object ones
    objects     per document, a `leaked-document` (masked title, masked URL, source, first
                seen, its own member counts in its comment) referring (`characterized-by`) to a
                `file` object (sha256, size), one per distinct content

Every attribute has `to_ids` false: a paste URL or a document's hash is evidence of a leak,
not an indicator to block or alert on in an IDS, and MISP would push to_ids attributes to
sensors. Every text went through `watcher.redact` when the export was built (`model.py`); the
whole JSON is not redacted again, since uuids and epoch stamps are digit runs a phone-shaped
mask could hit.

Not exported: the NIR fingerprints (keyed HMACs), and of a watchlist nothing but its name
and counts (never a member, never a member fingerprint). They are keyed with this installation's
secret, so no other MISP user can correlate or reverse them: shared, they would only add
personal-data-derived values to a platform that keeps and syncs them, without use to anyone
else. The masked samples are left out too (they still show birth year and month); the
`json` export, kept by the analyst, carries them.

pymisp costs about 0.2-0.3 s to import: it is imported inside the functions, so `watcher
scan` and the daemon never pay it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..timestamps import parse_time
from ..wording import counts_text, members_of
from .model import Document, IncidentExport, clean_text

if TYPE_CHECKING:
    from pymisp import MISPEvent

__all__ = ["DEFAULT_TLP", "misp_event", "misp_json"]

DEFAULT_TLP = "tlp:amber"
# The MISP TLP taxonomy (2.0 and the 1.0 tlp:white still in use).
TLP_TAGS = ("tlp:clear", "tlp:white", "tlp:green", "tlp:amber", "tlp:amber+strict", "tlp:red")
THREAT_LEVELS = {"critical": 1, "high": 1, "medium": 2, "low": 3}     # 1 high, 2 medium, 3 low
ANALYSIS = {"open": 0, "acknowledged": 1, "closed": 2, "false-positive": 2}  # initial, ongoing, completed
#: infoleak:source values by kind of source (watcher.sources); other kinds: "unknown".
SOURCE_TAGS = {"privatebin": "pastie-website", "listing": "pastie-website", "forum": "electronic-forum",
               "feed": "public-website", "json": "public-website", "telegram": "other", "directory": "other"}
#: infoleak:automatic-detection values for the identifier kinds the taxonomy knows.
DETECTION_TAGS = {"email": "mail", "phone": "phone-number"}
#: The machine tag of a member watchlist with a hit (leak-watcher's own namespace).
WATCHLIST_TAG = 'leak-watcher:watchlist="{name}"'


def misp_event(export: IncidentExport, *, tlp: str = DEFAULT_TLP, distribution: int = 0) -> MISPEvent:
    """The MISP event of `export` (pymisp's `MISPEvent`, ids from the export's namespace)."""
    from pymisp import MISPEvent

    if tlp not in TLP_TAGS:
        raise ValueError(f"{tlp!r} is not a TLP tag ({', '.join(TLP_TAGS)})")
    event = MISPEvent(force_timestamps=True)
    event.uuid = export.uuid("misp", "event")
    event.info = _info(export)
    event.date = parse_time(export.first_seen).date()
    event.timestamp = int(parse_time(export.last_seen).timestamp())
    event.threat_level_id = THREAT_LEVELS[export.severity]
    event.analysis = ANALYSIS[export.state]
    event.distribution = distribution
    event.published = False
    for tag in _tags(export, tlp):
        event.add_tag(tag)
    _attributes(event, export)
    _member_objects(event, export)
    files: dict[str, Any] = {}
    for document in export.documents:
        _document_objects(event, export, document, files)
    return event


def misp_json(export: IncidentExport, **options: Any) -> str:
    """The event as MISP's JSON format (`{"Event": {...}}`, as MISP imports and pymisp loads)."""
    event = misp_event(export, **options)
    return json.dumps({"Event": json.loads(event.to_json())}, indent=2, sort_keys=True, ensure_ascii=False)


def _info(export: IncidentExport) -> str:
    what = f"~{export.nirs:,} NIRs" if export.nirs else (export.reasons[0] if export.reasons else "finding")
    insurers = ", ".join(export.insurers[:3]) + (f" +{len(export.insurers) - 3}" if len(export.insurers) > 3 else "")
    parts = [f"leak-watcher incident #{export.incident_id}: {export.severity.upper()}", what]
    parts += [members_of(name, count) for name, count in export.watchlist_hits.items()]
    if insurers:
        parts.append(insurers)
    return clean_text(", ".join(parts)) or f"leak-watcher incident #{export.incident_id}"


def _tags(export: IncidentExport, tlp: str) -> list[str]:
    tags = [tlp, 'infoleak:submission="crawler"']
    kinds = sorted({SOURCE_TAGS.get(d.source_kind or "", "unknown") for d in export.documents})
    tags += [f'infoleak:source="{kind}"' for kind in kinds or ["unknown"]]
    tags += [f'infoleak:automatic-detection="{DETECTION_TAGS[kind]}"'
             for kind in sorted(export.counts) if kind in DETECTION_TAGS and export.counts[kind]]
    if export.state == "false-positive":
        tags.append('infoleak:confirmed="false-positive"')
    tags += [WATCHLIST_TAG.format(name=name) for name in export.watchlist_hits]
    return tags


def _attributes(event: MISPEvent, export: IncidentExport) -> None:
    seen = {"first_seen": export.first_seen, "last_seen": export.last_seen}

    def add(kind: str, value: str, comment: str, key: str) -> None:
        event.add_attribute(kind, value, uuid=export.uuid("misp", "attribute", key), comment=comment,
                            to_ids=False, disable_correlation=kind in ("counter", "text"), **seen)

    if export.counts.get("nir"):
        add("counter", str(export.counts["nir"]), "distinct NIRs (estimate)", "count/nir")
    others = counts_text((kind, count) for kind, count in export.counts.items() if kind != "nir")
    if others:         # one text: MISP refuses a second counter of the same value (12 NIRs, 12 e-mails)
        add("text", f"identifiers counted: {others}", "in one document (the largest)", "count/others")
    for insurer in export.insurers:
        add("target-org", insurer, "insurer named in the leaked data", f"insurer/{insurer}")
    add("text", f"severity {export.severity}", "leak-watcher severity", "severity")
    for index, reason in enumerate(export.reasons):
        add("text", reason, "leak-watcher reason", f"reason/{index}")


def _member_objects(event: MISPEvent, export: IncidentExport) -> None:
    """A `confidentiality-impact` object per watchlist with members (see the module doc)."""
    from pymisp import MISPObject

    for name, count in export.watchlist_hits.items():
        key = f"members/{name}"
        impact = MISPObject("confidentiality-impact", standalone=False, strict=True)
        impact.uuid = export.uuid("misp", "object", key)
        impact.comment = f"watchlist {name}"
        impact.first_seen, impact.last_seen = parse_time(export.first_seen), parse_time(export.last_seen)
        values = (("loss_type", "none" if export.state == "false-positive" else "suspected-loss"),
                  ("information_type", "pii"), ("record_count", str(count)),
                  ("description", f"{members_of(name, count)}: distinct over every document"))
        for relation, value in values:
            tags = [WATCHLIST_TAG.format(name=name)] if relation == "record_count" else []
            impact.add_attribute(relation, value=value, to_ids=False, Tag=tags,
                                 uuid=export.uuid("misp", "attribute", key, relation))
        event.add_object(impact)


def _document_objects(event: MISPEvent, export: IncidentExport, document: Document, files: dict[str, Any]) -> None:
    """A leaked-document object for the document, and the file object of its content."""
    from pymisp import MISPObject

    key = f"{document.source}/{document.url or document.title or document.sha256}"
    doc = MISPObject("leaked-document", standalone=False, strict=True)
    doc.uuid = export.uuid("misp", "object", "document", key)
    doc.comment = _comment(document)
    if document.first_seen:
        doc.first_seen = parse_time(document.first_seen)
    fallback = f"document {document.sha256[:16]}" if document.sha256 else f"document on {document.source}"
    name = document.title or fallback
    doc.add_attribute("document-name", value=name, to_ids=False, uuid=export.uuid("misp", "attribute", key, "name"))
    doc.add_attribute("origin", value=document.source, to_ids=False,
                      uuid=export.uuid("misp", "attribute", key, "origin"))
    if document.url:
        doc.add_attribute("url", value=document.url, to_ids=False, uuid=export.uuid("misp", "attribute", key, "url"))
    if document.first_seen:
        doc.add_attribute("first-seen", value=document.first_seen, to_ids=False,
                          uuid=export.uuid("misp", "attribute", key, "first-seen"))
    if document.sha256:
        file_object = files.get(document.sha256)
        if file_object is None:
            file_object = files[document.sha256] = _file_object(event, export, document)
        doc.add_reference(file_object.uuid, "characterized-by",
                          uuid=export.uuid("misp", "reference", key, document.sha256))
    event.add_object(doc)


def _file_object(event: MISPEvent, export: IncidentExport, document: Document) -> Any:
    from pymisp import MISPObject

    assert document.sha256 is not None
    file_object = MISPObject("file", standalone=False, strict=True)
    file_object.uuid = export.uuid("misp", "object", "file", document.sha256)
    file_object.add_attribute("sha256", value=document.sha256, to_ids=False,
                              uuid=export.uuid("misp", "attribute", "file", document.sha256, "sha256"))
    if document.size is not None:
        file_object.add_attribute("size-in-bytes", value=document.size, to_ids=False, disable_correlation=True,
                                  uuid=export.uuid("misp", "attribute", "file", document.sha256, "size"))
    event.add_object(file_object)
    return file_object


def _comment(document: Document) -> str:
    parts = [f"source {document.source}" + (f" ({document.source_kind})" if document.source_kind else "")]
    if document.tor is not None:
        parts.append("fetched through Tor" if document.tor else "fetched directly")
    if document.posted_at:
        parts.append(f"posted {document.posted_at}")
    if document.severity:
        parts.append(f"severity {document.severity}")
    parts += [members_of(name, count) for name, count in document.watchlist_hits.items()]
    return clean_text(", ".join(parts)) or ""
