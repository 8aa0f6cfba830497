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
but silent.

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
from dataclasses import dataclass
from typing import Any

from ..dates import is_normalised
from ..redact import redact_tree
from ..score import severity_rank
from ..store import FindingEvent, StateDB
from .message import finding_title
from .records import insert_alert
from .settings import AlertSettings

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

    @classmethod
    def load(cls, state: StateDB, incident_id: int) -> _Incident:
        row = state.db.execute(
            """SELECT id, severity, nirs, sources, first_seen, alerted_severity, alerted_nirs,
                alerted_sources, first_posted FROM incidents WHERE id = ?""",
            (incident_id,),
        ).fetchone()
        alerted_sources = json.loads(row[7]) if row[7] is not None else None
        return cls(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], alerted_sources, row[8])

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
        """What grew materially since the last alert (empty: nothing worth an update)."""
        changes = []
        new_sources = [s for s in self.sources if s not in (self.alerted_sources or [])]
        if new_sources:
            changes.append(f"new source{'s' if len(new_sources) > 1 else ''}: {', '.join(new_sources)}")
        before = self.alerted_nirs or 0
        if self.nirs >= before * (1 + GROWTH_RATIO) and self.nirs >= before + GROWTH_MIN:
            changes.append(f"distinct NIRs ~{before:,} -> ~{self.nirs:,}")
        if self.alerted_severity and severity_rank(self.severity) > severity_rank(self.alerted_severity):
            changes.append(f"severity {self.alerted_severity} -> {self.severity}")
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
        kind = "update" if alerted_before else "new"
        payload = _payload(state, event, incident, finding, changes if kind == "update" else [])
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


def _load_finding(state: StateDB, finding_id: int) -> dict[str, Any]:
    """The stored analysis of a finding (samples already re-redacted by the store)."""
    row = state.db.execute(
        "SELECT severity, reasons, counts, insurers, records, samples, first_seen FROM findings WHERE id = ?",
        (finding_id,),
    ).fetchone()
    return {"severity": row[0], "reasons": json.loads(row[1]), "counts": json.loads(row[2]),
            "insurers": json.loads(row[3]), "records": row[4], "samples": json.loads(row[5]),
            "first_seen": row[6]}


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
             changes: list[str]) -> dict[str, Any]:
    """Everything the alert's title, body and JSONL record are rendered from (no identifier)."""
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
        "first_seen": incident.first_seen,
        "first_posted": incident.first_posted,
        "reasons": finding["reasons"],
        "counts": finding["counts"],
        "insurers": finding["insurers"],
        "records": finding["records"],
        "samples": finding["samples"][:SAMPLES_KEPT],
        "changes": changes,
        "incident": {"id": incident.id, "nirs": incident.nirs, "sources": list(incident.sources),
                     "findings": int(documents), "first_seen": incident.first_seen,
                     "first_posted": incident.first_posted},
    })
