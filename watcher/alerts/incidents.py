"""Incidents: one leak, one alert. Groups findings and decides when an incident alerts.

A finding (one distinct content) joins an incident when

- it is the same content as a finding already in an incident (same sha256: the store already
  made it one finding; a second source only adds a source), or
- its NIR fingerprints overlap an incident's enough: a repost, a bigger or smaller sample, a
  mirror on another site.

`IncidentPolicy` is the store's `AlertHook`: it runs inside the transaction that records the
item, so the incident, its alert and the finding commit together.

An incident alerts once (`kind = "new"`) when it first reaches `min_severity`, and again
(`kind = "update"`) only when it grows materially since its last alert: a new source, many more
distinct NIRs (at least +50% and +10), or a higher severity. Below `min_severity` it is grouped
but silent. An update says what changed since the last alert (`+1 document on forum-x`,
`NIRs ~12 -> ~40`, `severity high -> critical`) and carries the new document's own first-seen.

Triage and suppression (`watcher incidents ack|close|false-positive|reopen`, `watcher
suppress`) silence an incident; documents keep joining it (grouping never stops, the timeline
stays whole) and every alert withheld is logged with the reason:

- `acked`: alerts as an open incident does (someone is on it; growth is still news).
- `closed`: silent while its severity stays at or below the severity it had when it was
  closed (an analyst closing a known old leak wants silence unless it gets worse). A
  document that makes it more severe reopens it (the triage log says so, by `watcher`) and
  alerts, as an update when it had alerted before.
- `false-positive`: silent, whatever joins it: the analyst judged what it holds not a leak.
- suppressed (`watcher suppress sha256 HEX`, `watcher suppress incident ID`): a document with
  that content hash, on any source, never alerts; a suppressed incident never alerts, whatever
  its state or growth. Suppression is checked before the state.

A withheld alert leaves the incident's alerted_* state as it was: an incident reopened by
hand alerts at its next material growth, described against its last alert.

An incident's `first_posted` is the earliest post date (the post's own, as the source dates it)
among its documents, lowered as documents join; NULL while none is known. Beside `first_seen`
(when leak-watcher found it) it tells how long the leak was out before anyone looked. Only a
date as `watcher.dates` writes it is taken, so no other text can pass through it.

Overlap measure: a bottom-k sample, cheap at any size
-----------------------------------------------------

Looking up every fingerprint of a million-NIR dump against millions of stored fingerprints
would cost a million index searches per document. Instead only a bounded sample is looked up:
the k = 256 numerically smallest HMACs of the new finding (its "bottom-k sketch").

Why this is a fair sample: HMAC-SHA256 values are uniformly distributed and independent of the
NIR, so the k smallest of a set are a uniform random sample of it. They are also *consistent*
across documents (the same NIR always has the same HMAC), the property MinHash relies on: two
documents sharing most of their NIRs share most of their small HMACs too.

With B the new finding (n = |B| fingerprints, sample S of m = min(k, n)) and I an incident
(with ~|I| distinct NIRs), one indexed query counts s = |S ∩ I| for every incident at once
(at most m index searches, whatever n is). Then

    |I ∩ B| ≈ s / m * n                      (the sample's hit rate, scaled to B)
    overlap  = |I ∩ B| / min(|I|, |B|)       (1.0 when one contains the other)

and B joins the incident with the largest overlap if overlap >= 0.5 and s >= 3 (or s = m
when B has fewer than 3 NIRs). The overlap coefficient rather than Jaccard: a bigger sample
of an old leak (B ⊃ I, |B| = 2 |I|) has Jaccard 0.5 but overlap 1.0, and it is the same leak.
The incident's NIR count becomes the union estimate |I| + |B| - |I ∩ B|.

Limits, by design: with k = 256 an old finding smaller than about 1% of a new dump is
usually not seen (the sample holds ~2.5 of its NIRs); the dump then opens its own incident and
alerts as new - an extra alert, never a lost one. Findings without NIR fingerprints group by
content hash only. The standard error of s/m is at most 1/(2 sqrt(m)) ~ 3% at k = 256.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..dates import is_normalised
from ..redact import redact_tree
from ..score import severity_rank
from ..store import FindingEvent, StateDB
from .message import finding_title
from .records import insert_alert, log_triage, suppressed
from .settings import AlertSettings
from ..watchlist.store import alerted_watchlist_hits, record_incident_hits

__all__ = ["IncidentPolicy", "Match", "bottom_k", "find_overlapping_incident"]

log = logging.getLogger(__name__)

SAMPLE_SIZE = 256         # k of the bottom-k sample looked up for a new finding
MIN_SHARED = 3            # sampled NIRs an incident must share (fewer if B is smaller)
MIN_OVERLAP = 0.5         # overlap coefficient that makes the same leak
GROWTH_RATIO = 0.5        # NIR growth that is material: +50%...
GROWTH_MIN = 10           # ...and at least +10 NIRs
SAMPLES_KEPT = 5          # masked samples carried by an alert


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def bottom_k(hmacs: Sequence[str], k: int = SAMPLE_SIZE) -> tuple[list[str], int]:
    """(the k smallest distinct HMACs, how many distinct HMACs there are).

    Lowercase hex digests of one length sort like the numbers they encode. A report's
    fingerprints come sorted and distinct: then this is a slice after an order check, about
    a third of the time of building a set and selecting from it (measured on 1M digests).
    """
    if all(map(operator.lt, hmacs, itertools.islice(hmacs, 1, None))):
        return list(hmacs[:k]), len(hmacs)
    distinct = set(hmacs)
    return heapq.nsmallest(k, distinct), len(distinct)


@dataclass(frozen=True)
class Match:
    """An incident a new finding overlaps: shared sampled NIRs and the overlap coefficient."""

    incident_id: int
    shared: int
    common: float       # estimated |I ∩ B|
    overlap: float      # common / min(|I|, |B|), at most 1


def find_overlapping_incident(state: StateDB, hmacs: Sequence[str], k: int = SAMPLE_SIZE) -> Match | None:
    """The incident whose NIRs overlap `hmacs` most, if it is the same leak (see module doc)."""
    sample, n = bottom_k(hmacs, k)
    m = len(sample)
    if not m:
        return None
    rows = state.db.execute(
        """SELECT m.incident_id, count(DISTINCT f.hmac) AS shared, i.nirs
        FROM fingerprints AS f
        JOIN incident_findings AS m ON m.finding_id = f.finding_id
        JOIN incidents AS i ON i.id = m.incident_id
        WHERE f.kind = 'nir' AND f.hmac IN (SELECT value FROM json_each(?))
        GROUP BY m.incident_id""",
        (_json(sample),),
    ).fetchall()
    best: Match | None = None
    for incident_id, shared, incident_nirs in rows:
        smaller = min(max(int(incident_nirs), 1), n)
        common = shared / m * n
        match = Match(int(incident_id), int(shared), common, min(common / smaller, 1.0))
        if shared < min(MIN_SHARED, m) or match.overlap < MIN_OVERLAP:
            continue
        if best is None or _rank(match) > _rank(best):
            best = match
    return best


def _rank(match: Match) -> tuple[float, int, int]:
    """Best match first: the largest overlap, then the most shared NIRs, then the oldest incident."""
    return match.overlap, match.shared, -match.incident_id


@dataclass
class _Incident:
    """The incidents row being updated in the recording transaction."""

    id: int
    severity: str
    nirs: int
    sources: list[str]
    first_seen: str
    alerted_severity: str | None
    alerted_nirs: int | None
    alerted_sources: list[str] | None
    first_posted: str | None
    state: str = "open"
    closed_severity: str | None = None
    watchlist_hits: dict[str, int] = field(default_factory=dict)          # distinct members per watchlist
    alerted_watchlist_hits: dict[str, int] = field(default_factory=dict)  # as the last alert said

    @classmethod
    def load(cls, state: StateDB, incident_id: int) -> _Incident:
        row = state.db.execute(
            """SELECT id, severity, nirs, sources, first_seen, alerted_severity, alerted_nirs,
                alerted_sources, first_posted, state, closed_severity FROM incidents WHERE id = ?""",
            (incident_id,),
        ).fetchone()
        alerted_sources = json.loads(row[7]) if row[7] is not None else None
        return cls(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], alerted_sources, row[8],
                   row[9], row[10])

    def save(self, state: StateDB, now: str) -> None:
        state.db.execute(
            """UPDATE incidents SET severity = ?, nirs = ?, sources = ?, last_seen = ?, first_posted = ?
            WHERE id = ?""",
            (self.severity, self.nirs, _json(self.sources), now, self.first_posted, self.id),
        )

    def posted(self, posted_at: str | None) -> None:
        """A document of this incident was posted at `posted_at`: keep the earliest such date."""
        if is_normalised(posted_at) and (self.first_posted is None or posted_at < self.first_posted):
            self.first_posted = posted_at

    def changes(self) -> list[str]:
        """What grew materially since the last alert (empty: nothing worth an update); the
        alert itself describes the change with `_what_changed`."""
        changes = []
        new_sources = [s for s in self.sources if s not in (self.alerted_sources or [])]
        if new_sources:
            changes.append(f"new source{'s' if len(new_sources) > 1 else ''}: {', '.join(new_sources)}")
        before = self.alerted_nirs or 0
        if self.nirs >= before * (1 + GROWTH_RATIO) and self.nirs >= before + GROWTH_MIN:
            changes.append(f"distinct NIRs ~{before:,} -> ~{self.nirs:,}")
        if self.alerted_severity and severity_rank(self.severity) > severity_rank(self.alerted_severity):
            changes.append(f"severity {self.alerted_severity} -> {self.severity}")
        return changes + self.member_changes(material=True)

    def member_changes(self, material: bool = False) -> list[str]:
        """Watchlists whose members in the incident grew since the last alert (`material`: the
        first ones, or by half: news for the insurer even when the NIR count hardly moves)."""
        changes = []
        for name, count in self.watchlist_hits.items():
            before = self.alerted_watchlist_hits.get(name, 0)
            if count > before and (not material or count >= before * (1 + GROWTH_RATIO)):
                changes.append(f"our members (watchlist {name}) {before:,} -> {count:,}")
        return changes


class IncidentPolicy:
    """The `AlertHook` given to `Store.record_item(..., alert=policy)`.

    Called for every recorded item with a finding, inside the recording transaction: puts the
    finding in an incident, updates the incident, and writes an alert row when the incident
    is news. Holds only immutable settings: one instance serves the whole daemon.
    """

    def __init__(self, settings: AlertSettings, sample_size: int = SAMPLE_SIZE) -> None:
        self.settings = settings
        self.sample_size = sample_size

    def __call__(self, state: StateDB, event: FindingEvent) -> int | None:
        finding = _load_finding(state, event.finding_id)
        nir_hmacs = event.report.fingerprints.get("nir", [])
        nirs = max(len(nir_hmacs), int(finding["counts"].get("nir", 0) or 0))
        incident = self._incident_of(state, event, nir_hmacs, nirs, finding)
        incident.watchlist_hits = record_incident_hits(state, incident.id, event.report.watchlist_members)
        if incident.watchlist_hits:
            incident.alerted_watchlist_hits = alerted_watchlist_hits(state, incident.id)
        if severity_rank(finding["severity"]) > severity_rank(incident.severity):
            incident.severity = finding["severity"]
        if event.source not in incident.sources:
            incident.sources.append(event.source)
        incident.posted(event.posted_at)
        incident.save(state, event.now)
        return self._maybe_alert(state, event, incident, finding)

    # -- grouping ----------------------------------------------------------------------

    def _incident_of(self, state: StateDB, event: FindingEvent, nir_hmacs: Sequence[str], nirs: int,
                     finding: dict[str, Any]) -> _Incident:
        """The finding's incident: its own, an overlapping one it joins, or a new one."""
        row = state.db.execute(
            "SELECT incident_id FROM incident_findings WHERE finding_id = ?", (event.finding_id,)
        ).fetchone()
        if row is not None:
            incident = _Incident.load(state, int(row[0]))
            incident.nirs = max(incident.nirs, nirs)
            return incident
        match = find_overlapping_incident(state, nir_hmacs, self.sample_size) if nir_hmacs else None
        if match is None:
            incident_id = _create_incident(state, finding, nirs, event.now)
            _link(state, event.finding_id, incident_id, None, event.now)
            return _Incident.load(state, incident_id)
        incident = _Incident.load(state, match.incident_id)
        common = min(match.common, incident.nirs, nirs)
        incident.nirs = round(incident.nirs + nirs - common)
        _link(state, event.finding_id, incident.id, round(match.overlap, 3), event.now)
        log.info("finding %d joins incident %d (overlap %.2f, %d of %d sampled NIRs shared)",
                 event.finding_id, incident.id, match.overlap, match.shared, min(len(nir_hmacs), self.sample_size))
        return incident

    # -- alerting ----------------------------------------------------------------------

    def _maybe_alert(self, state: StateDB, event: FindingEvent, incident: _Incident,
                     finding: dict[str, Any]) -> int | None:
        """Write the incident's alert if it is news; returns the alert row id."""
        if not self.settings.alerts_on(incident.severity):
            return None
        alerted_before = state.db.execute(
            "SELECT 1 FROM alerts WHERE incident_id = ? LIMIT 1", (incident.id,)
        ).fetchone() is not None
        changes: list[str] = []
        if incident.alerted_severity is not None:  # alerted before (or backfilled): only growth is news
            changes = incident.changes()
            if not changes:
                return None
        reason = self._withheld(state, event, incident, finding)
        if reason is not None:
            log.info("incident %d: no alert for finding %d on %s: %s", incident.id, event.finding_id,
                     event.source, reason)
            return None
        kind = "update" if alerted_before else "new"
        described = _what_changed(state, event, incident) if kind == "update" else []
        payload = _payload(state, event, incident, finding, described, kind)
        alert = insert_alert(
            state, kind=kind, severity=incident.severity, title=finding_title(incident.severity, kind, payload),
            tags=[incident.severity, "leak"], payload=payload, now=event.now, incident_id=incident.id,
            finding_id=event.finding_id, source=event.source,
        )
        state.db.execute(
            """UPDATE incidents SET alerted_severity = severity, alerted_nirs = nirs,
                alerted_sources = sources, alerted_at = ? WHERE id = ?""",
            (event.now, incident.id),
        )
        return alert

    def _withheld(self, state: StateDB, event: FindingEvent, incident: _Incident,
                  finding: dict[str, Any]) -> str | None:
        """Why the incident's triage or a suppression silences this alert (see the module
        doc), or None. A closed incident grown more severe is reopened here."""
        why = suppressed(state, finding["sha256"], incident.id)
        if why is not None:
            return why
        if incident.state == "false-positive":
            return "incident marked false-positive"
        if incident.state != "closed":
            return None
        closed_at = incident.closed_severity or incident.severity
        if severity_rank(incident.severity) <= severity_rank(closed_at):
            return f"incident closed (at severity {closed_at}; it alerts again only above it)"
        incident.state = "open"
        state.db.execute("UPDATE incidents SET state = 'open', closed_severity = NULL WHERE id = ?", (incident.id,))
        log_triage(state, incident.id, "reopen", "watcher",
                   f"closed at severity {closed_at}, now {incident.severity} (finding {event.finding_id} on "
                   f"{event.source})", incident.severity, event.now)
        log.warning("incident %d reopened: closed at severity %s, now %s", incident.id, closed_at, incident.severity)
        return None


def _documents_by_source(state: StateDB, incident_id: int) -> dict[str, int]:
    """How many documents (item versions) of the incident each source holds."""
    rows = state.db.execute(
        """SELECT l.source, count(*) FROM incident_findings AS m
        JOIN item_findings AS l ON l.finding_id = m.finding_id
        WHERE m.incident_id = ? GROUP BY l.source ORDER BY l.source""",
        (incident_id,),
    ).fetchall()
    return {str(source): int(count) for source, count in rows}


def _what_changed(state: StateDB, event: FindingEvent, incident: _Incident) -> list[str]:
    """What an update reports: the documents added per source since the last alert, the
    NIR estimate and the severity before and after (`+1 document on forum-x`,
    `NIRs ~12 -> ~40`, `severity high -> critical`)."""
    row = state.db.execute(
        """SELECT json_extract(payload, '$.incident.documents') FROM alerts
        WHERE incident_id = ? AND kind != 'health' ORDER BY id DESC LIMIT 1""",
        (incident.id,),
    ).fetchone()
    before = json.loads(row[0]) if row and row[0] else None
    changes = []
    if isinstance(before, dict):
        for source, count in _documents_by_source(state, incident.id).items():
            added = count - int(before.get(source, 0))
            if added > 0:
                changes.append(f"+{added} document{'' if added == 1 else 's'} on {source}")
    else:                               # the last alert predates the per-source counts
        changes.append(f"+1 document on {event.source}")
    if incident.alerted_nirs is not None and incident.nirs != incident.alerted_nirs:
        changes.append(f"NIRs ~{incident.alerted_nirs:,} -> ~{incident.nirs:,}")
    if incident.alerted_severity and incident.severity != incident.alerted_severity:
        changes.append(f"severity {incident.alerted_severity} -> {incident.severity}")
    return changes + incident.member_changes()


def _load_finding(state: StateDB, finding_id: int) -> dict[str, Any]:
    """The stored analysis of a finding (samples already re-redacted by the store)."""
    row = state.db.execute(
        "SELECT severity, reasons, counts, insurers, records, samples, first_seen, sha256 FROM findings WHERE id = ?",
        (finding_id,),
    ).fetchone()
    return {"severity": row[0], "reasons": json.loads(row[1]), "counts": json.loads(row[2]),
            "insurers": json.loads(row[3]), "records": row[4], "samples": json.loads(row[5]),
            "first_seen": row[6], "sha256": row[7]}


def _create_incident(state: StateDB, finding: dict[str, Any], nirs: int, now: str) -> int:
    cursor = state.db.execute(
        """INSERT INTO incidents (severity, nirs, sources, first_seen, last_seen)
        VALUES (?, ?, '[]', ?, ?)""",
        (finding["severity"], nirs, finding["first_seen"], now),
    )
    return int(cursor.lastrowid)  # type: ignore[arg-type]


def _link(state: StateDB, finding_id: int, incident_id: int, overlap: float | None, now: str) -> None:
    state.db.execute(
        "INSERT INTO incident_findings (finding_id, incident_id, overlap, joined_at) VALUES (?, ?, ?, ?)",
        (finding_id, incident_id, overlap, now),
    )


def _payload(state: StateDB, event: FindingEvent, incident: _Incident, finding: dict[str, Any],
             changes: list[str], kind: str) -> dict[str, Any]:
    """Everything the alert's title, body and JSONL record are rendered from (no identifier).

    `first_seen` is when this alert's document was first seen: the incident's first sighting
    for a new incident, the document's own (this recording) for an update; the incident's
    stays in `incident.first_seen`. `incident.documents` counts documents per source, so the
    next update can say what was added since."""
    documents = state.db.execute(
        "SELECT count(*) FROM incident_findings WHERE incident_id = ?", (incident.id,)
    ).fetchone()[0]
    return redact_tree({        # the store redacted the item's texts already: a second line of defence
        "source": event.source,
        "url": event.url,
        "item_id": event.item_id,
        "item_title": event.title,
        "posted_at": event.posted_at,
        "author": event.author,
        "finding_id": event.finding_id,
        "sha256": finding["sha256"],
        "first_seen": event.now if kind == "update" else incident.first_seen,
        "first_posted": incident.first_posted,
        "reasons": finding["reasons"],
        "counts": finding["counts"],
        "insurers": finding["insurers"],
        "records": finding["records"],
        "samples": finding["samples"][:SAMPLES_KEPT],
        "watchlist_hits": event.report.watchlist_hits,
        "changes": changes,
        "incident": {"id": incident.id, "nirs": incident.nirs, "sources": list(incident.sources),
                     "findings": int(documents), "first_seen": incident.first_seen,
                     "first_posted": incident.first_posted, "state": incident.state,
                     "documents": _documents_by_source(state, incident.id),
                     "watchlist_hits": incident.watchlist_hits},
    })
