"""What an alert says: its title, its body, the digest of several, and its JSONL record.

Everything is rendered from the alert's stored payload, which holds counts, reasons, masked
samples and names only (the store never holds a cleartext identifier). Every text leaving this
module still goes through `watcher.redact` (NIR-, IBAN-, e-mail-shaped runs masked) as a
second line of defence, and untrusted text (item titles, URLs, errors copied from hostile
pages) is flattened to one line and truncated.

    [CRITICAL] 25 NIRs, Viamedis - some-forum: fichier adherents 2024
    [HIGH] update: 40 NIRs, Harmonie Mutuelle - mirror-site: dump complet
    [HIGH] 3 NIRs, 2 of our members (watchlist adherents) - some-paste: liste
    [HEALTH] source some-forum failing for 6h 12m
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apprise import NotifyType

from ..wording import members_text, plural
from ..redact import one_line, redact, redact_tree
from .records import ALERT_LEVELS, Alert

__all__ = ["ALERT_SCHEMA", "Message", "digest_message", "finding_title", "health_title", "jsonl_record",
           "probe_message", "render"]

TITLE_ITEM_CHARS = 80
INSURERS_SHOWN = 3
SAMPLES_SHOWN = 5
#: The version of the JSONL/webhook record (README "Webhook and MISP"): a new key keeps it,
#: a key removed or changing meaning makes it "leak-watcher/alert/2".
ALERT_SCHEMA = "leak-watcher/alert/1"
_NOTIFY_TYPES = {"critical": NotifyType.FAILURE, "high": NotifyType.FAILURE,
                 "medium": NotifyType.WARNING, "low": NotifyType.INFO}


@dataclass(frozen=True)
class Message:
    """One notification as apprise sends it."""

    title: str
    body: str
    notify_type: NotifyType = NotifyType.INFO


# --------------------------------------------------------------------------- helpers






def _insurers(names: Sequence[str]) -> str:
    """`A, B, C +2`: the first few names, and how many more."""
    shown = ", ".join(names[:INSURERS_SHOWN])
    more = len(names) - INSURERS_SHOWN
    return f"{shown} +{more}" if more > 0 else shown


def _what(payload: dict[str, Any]) -> str:
    """`25 NIRs`, else `120 records`, else the first reason."""
    nirs = int(payload.get("counts", {}).get("nir", 0) or 0)
    if nirs:
        return plural(nirs, "NIR")
    if payload.get("records"):
        return plural(int(payload["records"]), "record")
    reasons = payload.get("reasons") or ["finding"]
    return str(reasons[0])


def _incident_members(payload: dict[str, Any]) -> dict[str, int]:
    """Distinct members per watchlist over the incident (the document's own in an older payload)."""
    return (payload.get("incident") or {}).get("watchlist_hits") or payload.get("watchlist_hits") or {}


def _duration(seconds: float) -> str:
    """`6h 12m`, `2d 3h`, `45m`."""
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def _counts(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), item[0]))
    return ", ".join(f"{name} {value:,}" for name, value in ordered if value)


# --------------------------------------------------------------------------- titles


def finding_title(severity: str, kind: str, payload: dict[str, Any]) -> str:
    """`[CRITICAL] 25 NIRs, Viamedis - some-forum: <item title>` (`update:` after the severity)."""
    head = f"[{severity.upper()}]" + (" update:" if kind == "update" else "")
    what = _what(payload)
    if members_text(_incident_members(payload)):
        what = f"{what}, {members_text(_incident_members(payload))}"
    insurers = payload.get("insurers") or []
    if insurers:
        what = f"{what}, {_insurers(insurers)}"
    item = payload.get("item_title") or payload.get("url") or payload.get("item_id") or ""
    where = one_line(payload.get("source") or "?", TITLE_ITEM_CHARS)
    if item:
        where = f"{where}: {one_line(item, TITLE_ITEM_CHARS)}"
    return one_line(f"{head} {what} - {where}")


def health_title(payload: dict[str, Any]) -> str:
    """`[HEALTH] source X failing for 6h 12m` / `[HEALTH] source X recovered`."""
    source = payload.get("source")
    if payload.get("state") == "recovered":
        return one_line(f"[HEALTH] source {source} recovered after {_duration(payload.get('seconds', 0))}")
    return one_line(f"[HEALTH] source {source} failing for {_duration(payload.get('seconds', 0))}")


# --------------------------------------------------------------------------- bodies


def _finding_body(alert: Alert) -> list[str]:
    payload = alert.payload
    incident = payload.get("incident", {})
    lines = [
        f"Severity: {alert.severity.upper()} ({'update of' if alert.kind == 'update' else 'new'} "
        f"incident #{alert.incident_id})",
        f"Source: {one_line(payload.get('source'))}",
        f"URL: {one_line(payload.get('url') or '-')}",
        f"Item: {one_line(payload.get('item_title') or payload.get('item_id') or '-', 200)}",
        _first_seen(alert),
    ]
    if payload.get("first_posted"):
        whose = "the incident's earliest post date" if alert.kind == "update" else "the post's own date"
        lines.append(f"First posted: {one_line(payload['first_posted'], 40)} ({whose})")
    if payload.get("posted_at") or payload.get("author"):
        posted = one_line(payload.get("posted_at") or "date unknown")
        lines.append(f"Posted: {posted}" + (f" by {one_line(payload['author'], 80)}" if payload.get("author") else ""))
    if payload.get("changes"):
        lines.append("What changed: " + "; ".join(one_line(c) for c in payload["changes"]))
    lines.append("Reasons: " + "; ".join(one_line(r) for r in payload.get("reasons", [])))
    lines.append(f"Counts: {_counts(payload.get('counts', {})) or '-'}")
    if _incident_members(payload):
        lines.append(f"Members: {members_text(payload.get('watchlist_hits') or {}) or 'none'} in this document; "
                     f"{members_text(_incident_members(payload))} over the incident")
    lines.append(f"Insurers: {', '.join(payload.get('insurers', [])) or '-'}")
    lines.append(f"Records: {payload.get('records') if payload.get('records') is not None else '-'}")
    if payload.get("sha256"):
        lines.append(f"SHA-256: {one_line(payload['sha256'], 64)}")
    samples = payload.get("samples", [])[:SAMPLES_SHOWN]
    if samples:
        lines.append("Samples (masked):")
        lines.extend(f"  {one_line(sample, 120)}" for sample in samples)
    lines.append(
        f"Incident: #{alert.incident_id}{_state(incident)}, ~{incident.get('nirs', 0):,} distinct NIRs, "
        f"{plural(len(incident.get('sources', [])), 'source')} ({', '.join(incident.get('sources', []))}), "
        f"{plural(_documents(incident), 'document')}"
    )
    return lines


def _first_seen(alert: Alert) -> str:
    """`First seen: T`; on an update, T is the new document's own, beside the incident's."""
    payload = alert.payload
    incident_seen = (payload.get("incident") or {}).get("first_seen")
    if alert.kind == "update" and incident_seen and incident_seen != payload.get("first_seen"):
        return f"First seen: {payload.get('first_seen')} (this document; the incident {incident_seen})"
    return f"First seen: {payload.get('first_seen')}"


def _state(incident: dict[str, Any]) -> str:
    """` (acked)` when the incident is triaged; nothing for an open one (or an older payload)."""
    state = incident.get("state")
    return f" ({one_line(state, 20)})" if state and state != "open" else ""


def _documents(incident: dict[str, Any]) -> int:
    """The incident's documents: per source when the payload counts them, else its findings."""
    per_source = incident.get("documents")
    if isinstance(per_source, dict) and per_source:
        return sum(int(count) for count in per_source.values())
    return int(incident.get("findings", 1))


def _health_body(alert: Alert) -> list[str]:
    payload = alert.payload
    if payload.get("state") == "recovered":
        return [f"Source: {one_line(payload.get('source'))}",
                f"Recovered after failing since {payload.get('failing_since')}."]
    return [
        f"Source: {one_line(payload.get('source'))}",
        f"Failing since: {payload.get('failing_since')} ({_duration(payload.get('seconds', 0))})",
        f"Consecutive failed polls: {payload.get('failures', 0)}",
        f"Last error: {one_line(payload.get('last_error') or '-', 300)}",
        "Findings from this source are not being collected while it fails.",
    ]


def _footer(alert: Alert) -> list[str]:
    footer = ["", f"Alert ID: {alert.alert_id}", f"More: watcher alerts show {alert.id}"]
    if alert.incident_id is not None:
        footer.append(f"Incident: watcher incidents show {alert.incident_id}")
    return footer


def render(alert: Alert) -> Message:
    """The notification of one alert."""
    if alert.kind == "health":
        recovered = alert.payload.get("state") == "recovered"
        body = _health_body(alert)
        notify_type = NotifyType.SUCCESS if recovered else NotifyType.WARNING
    else:
        body = _finding_body(alert)
        notify_type = _NOTIFY_TYPES.get(alert.severity, NotifyType.INFO)
    text = "\n".join(body + _footer(alert))
    return Message(title=one_line(alert.title), body=redact(text), notify_type=notify_type)


def digest_message(alerts: Sequence[Alert]) -> Message:
    """One notification for several alerts: one line each, with its ids to look it up."""
    by_severity = Counter(alert.severity for alert in alerts)
    ordered = sorted(by_severity.items(), key=lambda item: -ALERT_LEVELS.index(item[0]))
    summary = ", ".join(f"{count} {severity.upper()}" for severity, count in ordered)
    title = f"[DIGEST] {plural(len(alerts), 'alert')}: {summary}"
    lines = [f"{len(alerts)} alert(s) below the immediate-delivery threshold:", ""]
    for alert in alerts:
        lines.append(f"- {one_line(alert.title, 200)}")
        lines.append(f"  alert {alert.id}, Alert ID: {alert.alert_id}, incident #{alert.incident_id}")
    lines += ["", "More: watcher alerts show ID"]
    worst = ordered[0][0] if ordered else "low"
    return Message(title=one_line(title), body=redact("\n".join(lines)),
                   notify_type=_NOTIFY_TYPES.get(worst, NotifyType.INFO))


def probe_message(now: str, tag: str | None) -> Message:
    """A harmless test notification (no finding, no identifier)."""
    routed = f" (targets tagged {tag!r} or untagged)" if tag else ""
    body = (f"This is a test alert from leak-watcher, sent at {now}{routed}.\n"
            "It carries no finding and no data. If you read it, this target works.")
    return Message(title="[TEST] leak-watcher test alert", body=body, notify_type=NotifyType.INFO)


# --------------------------------------------------------------------------- JSONL


def jsonl_record(alert: Alert) -> dict[str, Any]:
    """The SIEM record of one alert: the same keys for every kind, so parsers stay simple."""
    payload = alert.payload
    health = alert.kind == "health"
    record = {
        "schema": ALERT_SCHEMA,
        "alert_id": alert.alert_id,
        "id": alert.id,
        "incident_id": alert.incident_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "source": alert.source,
        "url": None if health else payload.get("url"),
        "title": one_line(alert.title),
        "item_title": None if health else payload.get("item_title"),
        "posted_at": None if health else payload.get("posted_at"),
        "author": None if health else payload.get("author"),
        "reasons": [health_title(payload)] if health else payload.get("reasons", []),
        "counts": payload.get("counts", {}),
        "insurers": payload.get("insurers", []),
        "records": payload.get("records"),
        "samples": payload.get("samples", []),
        "watchlist_hits": {} if health else payload.get("watchlist_hits", {}),
        "first_seen": payload.get("failing_since") if health else payload.get("first_seen"),
        "first_posted": None if health else payload.get("first_posted"),
        "created_at": alert.created_at,
        "tags": list(alert.tags),
        "changes": payload.get("changes", []),
        "sha256": None if health else payload.get("sha256"),
        "incident_state": None if health else (payload.get("incident") or {}).get("state", "open"),
        "incident": payload.get("incident"),
        "health": {key: payload.get(key) for key in ("state", "failing_since", "failures", "last_error")}
        if health else None,
    }
    return redact_tree(record)
