"""An incident as a STIX 2.1 bundle (`stix2`).

    identity        leak-watcher (the bundle's `created_by_ref`), and one per insurer named in
                    the leak (identity_class "organization", sectors healthcare and insurance)
    observed-data   one per document: first/last observed at the document's first sighting,
                    referring to its `file` (SHA-256 and size) and `url` (masked, then
                    percent-encoded: STIX wants an RFC 3986 URI, and `[NIR]` is not one)
    report          "leak-watcher incident #7: ..." (report_types observed-data, labels
                    leak-watcher, severity:..., state:...), published at the incident's last
                    sighting, its description the reasons and counts, object_refs everything
    marking         the TLP marking definition (TLP:AMBER unless told) on every object

Observed data rather than indicators: a leaked document's hash or paste URL is evidence, not
a pattern to detect in traffic (the MISP export sets to_ids false for the same reason).

`created` is the incident's first sighting and `modified` its last one, so exporting an
unchanged incident gives the same bytes, and a grown one the next version of the same objects
(ids are deterministic, see `model.py`). Insurer identities are one object per installation
(their id does not depend on the incident), as is the leak-watcher identity, and never change: they carry a fixed date,
`IDENTITY_DATE`, so every export holds the identical object. File and URL observables get the
ids STIX 2.1 defines from their content (the library computes them).

One property of our own on the report, `leak_watcher_incident`: the incident's id, severity,
triage state, counts per identifier kind, first post date and member counts per watchlist
(`watchlist_hits`, distinct over every document), which STIX has no property for; and one on
an observed-data whose document holds members, `leak_watcher_watchlist_hits` (watchlist
name -> distinct members of that document). Both are declared the STIX 2.1 way, by one
`extension-definition` (a toplevel-property-extension whose schema is the plain text
`EXTENSION_SCHEMA`; STIX requires its creator, so each installation has its own), rather than
as `x_` properties, which the 2.1 validator flags as deprecated; the description says the same
in words for tools that ignore extensions (`Members: 12 of our members (watchlist NAME)`). A
watchlist is named and counted, never listed: no member and no fingerprint is exported.

The validator's one remark (a warning, not an error): the SDO ids are UUIDv5, where STIX 2.1
recommends UUIDv4. That is the price of deterministic ids, chosen on purpose (`model.py`). The NIR
fingerprints and the masked samples are not exported (see `misp.py`).

stix2 costs about 0.2 s to import: only these functions import it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ..wording import members_of
from .model import Document, IncidentExport, clean_text

if TYPE_CHECKING:
    from stix2 import Bundle

__all__ = ["DEFAULT_TLP", "IDENTITY_DATE", "stix_bundle", "stix_json"]

DEFAULT_TLP = "tlp:amber"
IDENTITY_DATE = "2024-01-01T00:00:00Z"
#: The extension definition's version and its date: 1.1.0 added the member counts.
EXTENSION_VERSION = "1.1.0"
EXTENSION_MODIFIED = "2026-12-07T00:00:00Z"
EXTENSION_SCHEMA = ("leak_watcher_incident (object, on the report): id (integer, the incident id in leak-watcher), "
                    "severity (low|medium|high|critical), state (open|acknowledged|closed|false-positive), counts "
                    "(object: identifier kind -> count; nir is the incident's distinct-NIR estimate, other kinds the "
                    "largest count in one document), first_posted (ISO 8601 UTC or null: earliest post date), "
                    "watchlist_hits (object: member watchlist name -> distinct member NIRs over every document; "
                    "empty when none matched). leak_watcher_watchlist_hits (object, on an observed-data whose "
                    "document holds members): member watchlist name -> distinct member NIRs in that document")
_TLP = {"tlp:white": "TLP_WHITE", "tlp:clear": "TLP_WHITE", "tlp:green": "TLP_GREEN",
        "tlp:amber": "TLP_AMBER", "tlp:red": "TLP_RED"}


def stix_bundle(export: IncidentExport, *, tlp: str = DEFAULT_TLP) -> Bundle:
    """The STIX 2.1 bundle of `export`."""
    import stix2

    if tlp not in _TLP:
        raise ValueError(f"{tlp!r}: STIX 2.1 marks {', '.join(sorted(_TLP))}")
    marking = getattr(stix2, _TLP[tlp])
    common: dict[str, Any] = {"object_marking_refs": [marking]}
    creator = stix2.Identity(id=f"identity--{_shared_uuid(export, 'leak-watcher')}",
                             created=IDENTITY_DATE, modified=IDENTITY_DATE, name="leak-watcher",
                             identity_class="system", **common)
    extension = stix2.ExtensionDefinition(
        id=f"extension-definition--{_shared_uuid(export, 'stix', 'extension', 'leak_watcher_incident', '1')}",
        created=IDENTITY_DATE, modified=EXTENSION_MODIFIED, created_by_ref=creator.id, name="leak-watcher incident",
        description="The leak-watcher incident a report describes: triage state, counts per identifier kind and "
                    "members of the organisation's watchlists",
        schema=EXTENSION_SCHEMA, version=EXTENSION_VERSION, extension_types=["toplevel-property-extension"],
        extension_properties=["leak_watcher_incident", "leak_watcher_watchlist_hits"], **common)
    uses = {extension.id: {"extension_type": "toplevel-property-extension"}}
    sdo = {**common, "created_by_ref": creator.id, "created": export.first_seen, "modified": export.last_seen}
    insurers = [
        stix2.Identity(id=f"identity--{_shared_uuid(export, 'insurer', name)}", created=IDENTITY_DATE,
                       modified=IDENTITY_DATE, name=name, identity_class="organization",
                       sectors=["healthcare", "insurance"], created_by_ref=creator.id, **common)
        for name in export.insurers
    ]
    observables: dict[str, Any] = {}
    observations = [_observed(stix2, export, document, observables, sdo, uses) for document in export.documents]
    observations = [o for o in observations if o is not None]
    report = stix2.Report(
        id=f"report--{export.uuid('stix', 'report')}",
        name=clean_text(f"leak-watcher incident #{export.incident_id}: {export.severity.upper()}"
                        + (f", ~{export.nirs:,} NIRs" if export.nirs else "")),
        description=_description(export),
        report_types=["observed-data"],
        published=export.last_seen,
        labels=["leak-watcher", f"severity:{export.severity}", f"state:{export.state}"],
        object_refs=[creator.id, *(i.id for i in insurers), *(o.id for o in observations)],
        extensions=uses,
        leak_watcher_incident={"id": export.incident_id, "severity": export.severity, "state": export.state,
                               "counts": dict(export.counts), "first_posted": export.first_posted,
                               "watchlist_hits": dict(export.watchlist_hits)},
        allow_custom=True, **sdo,
    )
    objects = [marking, creator, extension, *insurers, *observables.values(), *observations, report]
    return stix2.Bundle(id=f"bundle--{export.uuid('stix', 'bundle')}", objects=objects, allow_custom=True)


def stix_json(export: IncidentExport, **options: Any) -> str:
    """The bundle as STIX 2.1 JSON text."""
    return stix_bundle(export, **options).serialize(pretty=True, ensure_ascii=False)


def _shared_uuid(export: IncidentExport, *parts: str) -> str:
    """An id of this installation that does not depend on the incident (insurer identities)."""
    return str(uuid.uuid5(export.namespace, "/".join(parts)))


def _observed(stix2: Any, export: IncidentExport, document: Document, observables: dict[str, Any],
              sdo: dict[str, Any], uses: dict[str, Any]) -> Any:
    """The observed-data of one document (None when it has neither a hash nor a URL), with
    its member counts when it has any (`uses`: the extension that declares them)."""
    refs = []
    if document.sha256:
        file_ = stix2.File(hashes={"SHA-256": document.sha256}, size=document.size)
        refs.append(observables.setdefault(file_.id, file_).id)
    uri = _uri(document.url)
    if uri:
        url = stix2.URL(value=uri)
        refs.append(observables.setdefault(url.id, url).id)
    if not refs:
        return None
    seen = document.first_seen or export.first_seen
    key = f"{document.source}/{document.url or document.sha256}"
    members: dict[str, Any] = {}
    if document.watchlist_hits:
        members = {"extensions": uses, "leak_watcher_watchlist_hits": dict(document.watchlist_hits),
                   "allow_custom": True}
    return stix2.ObservedData(id=f"observed-data--{export.uuid('stix', 'observed-data', key)}",
                              first_observed=seen, last_observed=seen, number_observed=1, object_refs=refs,
                              **{**sdo, **members, "created": min(seen, sdo["modified"])})


def _uri(url: str | None) -> str | None:
    """A masked URL as the RFC 3986 URI a STIX url observable must hold (`[NIR]` becomes
    `%5BNIR%5D`); None for text that is no absolute URL."""
    if not url:
        return None
    uri = quote(url, safe="%:/?#@!$&'()*+,;=-._~")
    parts = urlsplit(uri)
    return uri if parts.scheme and parts.netloc else None


def _description(export: IncidentExport) -> str:
    lines = [f"Severity {export.severity}, state {export.state}; first seen {export.first_seen}, "
             f"last seen {export.last_seen}" + (f", first posted {export.first_posted}" if export.first_posted else "")]
    if export.counts:
        lines.append("Counts: " + ", ".join(f"{kind} {count:,}" for kind, count in export.counts.items()))
    if export.watchlist_hits:
        lines.append("Members: " + "; ".join(members_of(name, count) for name, count in export.watchlist_hits.items()))
    if export.insurers:
        lines.append("Insurers: " + ", ".join(export.insurers))
    if export.sources:
        lines.append("Sources: " + ", ".join(export.sources))
    lines += [f"Reason: {reason}" for reason in export.reasons]
    lines.append(f"Documents: {len(export.documents)}")
    return "\n".join(clean_text(line, 2000) or "" for line in lines)
