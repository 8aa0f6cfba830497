"""The console's read model: what each page shows, read from the state database.

Pure synchronous functions of a `sqlite3.Connection` (the `db` of `StateDB.read_only(path)`,
or of the writer), each returning frozen dataclasses of plain `str` / `int` fields (tuples
for lists) that a template renders as they are: a missing date or text is `""`, never None.

    dashboard(db, now)                      open incidents by severity, findings per day (30 days,
                                            zero days included), findings per source (top 15),
                                            sources needing attention
    incident_page(db, filters, page)        incidents, filtered and paged (`Page[IncidentRow]`)
    filter_choices(db)                      what the filter form offers (values present)
    incident_detail(db, incident_id)        one incident, its timeline (documents and triage
                                            log merged in time order), its evidence records
    sources(db, now)                        every source with its health, counts, why it needs a look
    alerts(db, status), alert_counts(db)    the alert outbox (pending, failed, sent, logged)

Member watchlists: an incident's `watchlist_hits` (watchlist name -> distinct member NIRs over
all its documents) and each document's (its finding's) are shown as counts per list
(`members`, `members_text`: "12 of our members (watchlist adherents)"); the list can be
filtered to the incidents with members (of any list, or of one), and the dashboard counts the
open ones. Names and counts only: no member and no fingerprint is ever read here.

Nothing here adds an identifier: every text comes from the database, where the store, the
alert tables and the evidence records keep texts masked (`watcher.redact`; a watchlist's
name, the operator's, is masked here all the same). Texts chosen by
attackers (titles, authors, URLs, source errors) are returned as text: escaping them is the
template's job (autoescape), and `watcher.web.charts` escapes its labels.

Speed: every query is an index search (migration 12 added the console's) or a scan of the
small tables (sources, incidents, alerts). At 100,000 findings, 1,000 sources and 8,000
incidents (bench/bench_web.py) each function takes 0.2-60 ms and each page over HTTP 1-65 ms.
What can grow without bound is cut and counted: an incident's timeline and custody records
(`timeline_limit`), the sources needing attention (ATTENTION_LIMIT: a stopped daemon makes
them all stale), the sources named in a list row (ROW_SOURCES).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from ..alerts import records
from ..redact import redact
from ..score import SEVERITIES
from ..timestamps import format_time
from ..store.connection import dict_rows
from ..watchlist.store import stored_hits
from ..wording import counts_text, members_text, plural

__all__ = [
    "ALERT_STATUSES",
    "ACTIVE",
    "ANY_LIST",
    "INCIDENT_STATES",
    "AlertRow",
    "Dashboard",
    "DocumentEntry",
    "EvidenceRow",
    "FilterChoices",
    "IncidentDetail",
    "IncidentFilter",
    "IncidentRow",
    "Page",
    "SourceRow",
    "TimelineEntry",
    "TriageEntry",
    "alert_counts",
    "alerts",
    "dashboard",
    "filter_choices",
    "incident_detail",
    "incident_page",
    "merge_timeline",
    "sources",
]

T = TypeVar("T")

#: Finding and incident severities, most severe first.
SEVERITY_ORDER = tuple(reversed(SEVERITIES[1:]))
#: An incident's triage states (watcher.alerts.records.INCIDENT_STATES).
INCIDENT_STATES = ("open", "acked", "closed", "false-positive")
#: The filter value that means "not resolved": open or acked (what the dashboard counts).
ACTIVE = "active"
#: The members filter's value for "members of any watchlist" (not a watchlist name).
ANY_LIST = "*"
_WATCHLIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")      # watcher.watchlist.store.NAME
_ACTIVE_STATES = ("open", "acked")
ALERT_STATUSES = ("pending", "failed", "sent", "logged")
DAYS = 30                   # the dashboard's findings-per-day series
TOP_SOURCES = 15            # the dashboard's findings-per-source chart
STALE_AFTER = timedelta(minutes=15)     # a source whose next poll is this late: the daemon is not polling it
ATTENTION_LIMIT = 50        # sources needing attention listed on the dashboard (the rest counted)
ROW_SOURCES = 10            # sources named in a row of the incident list (the rest counted)
TIMELINE_LIMIT = 200        # documents shown on an incident page (the rest counted)
MAX_PER_PAGE = 200


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _utc(now: datetime | None) -> datetime:
    return now.astimezone(UTC) if now is not None else datetime.now(UTC)


def _json_list(text: str | None) -> tuple[str, ...]:
    try:
        return _strings(json.loads(text or "[]"))
    except ValueError:
        return ()


def _strings(values: object) -> tuple[str, ...]:
    """A decoded JSON list as texts (anything else: none)."""
    return tuple(str(value) for value in values) if isinstance(values, list) else ()


Hits = tuple[tuple[str, int], ...]


def _hits(text: str | None) -> Hits:
    """A stored `watchlist_hits` as (name, count) pairs (`watchlist.store.stored_hits`)."""
    return tuple(stored_hits(text).items())


def _counts_of(values: object) -> tuple[tuple[str, int], ...]:
    """A decoded JSON count map as (kind, count) pairs, most first, zeros left out."""
    if not isinstance(values, dict):
        return ()
    return tuple(sorted(((str(kind), int(n)) for kind, n in values.items() if isinstance(n, int) and n),
                        key=lambda item: (-item[1], item[0])))


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceRow:
    """One source as the sources page shows it. `state`: ok, degraded, failing or disabled;
    `attention`: why it needs a look ("" when it does not): failing, degraded or stale."""

    name: str
    kind: str
    state: str
    last_poll: str
    last_success: str
    next_poll: str
    failures: int               # consecutive failed polls
    failing_since: str
    last_error: str             # one redacted line
    last_error_at: str
    warning: str                # why it is degraded
    items: int
    findings: int               # distinct findings seen on it
    failed_items: int
    parked_items: int
    last_notice: str
    attention: str


_SOURCE_SQL = """SELECT s.name, s.kind,
    CASE WHEN s.state = 'ok' AND s.warning IS NOT NULL THEN 'degraded' ELSE s.state END AS state,
    s.last_poll, s.last_success, s.next_poll, s.consecutive_failures, s.failing_since, s.last_error,
    s.last_error_at, s.warning, s.last_notice, s.created_at
FROM sources AS s"""


def _attention(row: Mapping[str, Any], stale_before: str) -> str:
    """Why a source needs a look, or ""."""
    if row["state"] == "failing":
        return f"failing: {plural(int(row['consecutive_failures']), 'failed poll')} since {row['failing_since']}"
    if row["state"] == "degraded":
        return f"degraded: {row['warning']}"
    if row["state"] == "disabled":
        return ""
    if row["next_poll"] is None:
        added = row["created_at"]
        return f"stale: never polled since it was added at {added}" if added < stale_before else ""
    return f"stale: its next poll was due at {row['next_poll']}" if row["next_poll"] < stale_before else ""


_Counts = Mapping[str, tuple[int, int, int, int]]


def _source_row(row: Mapping[str, Any], stale_before: str, counts: _Counts) -> SourceRow:
    items, findings, failed, parked = counts.get(row["name"], (0, 0, 0, 0))
    return SourceRow(
        name=row["name"], kind=row["kind"], state=row["state"], last_poll=_text(row["last_poll"]),
        last_success=_text(row["last_success"]), next_poll=_text(row["next_poll"]),
        failures=int(row["consecutive_failures"]), failing_since=_text(row["failing_since"]),
        last_error=_text(row["last_error"]), last_error_at=_text(row["last_error_at"]),
        warning=_text(row["warning"]), items=items, findings=findings, failed_items=failed, parked_items=parked,
        last_notice=_text(row["last_notice"]), attention=_attention(row, stale_before),
    )


def _source_counts(db: sqlite3.Connection) -> dict[str, tuple[int, int, int, int]]:
    """source -> (items, distinct findings, failed items, parked items): one grouped scan of
    each table's source index, not four subqueries per source."""
    counts: dict[str, list[int]] = {}
    queries = (
        "SELECT source, count(*) FROM items GROUP BY source",
        "SELECT source, count(DISTINCT finding_id) FROM item_findings GROUP BY source",
        "SELECT source, count(*) FROM failed_items WHERE NOT parked GROUP BY source",
        "SELECT source, count(*) FROM failed_items WHERE parked GROUP BY source",
    )
    for position, sql in enumerate(queries):
        for name, count in db.execute(sql):
            counts.setdefault(name, [0, 0, 0, 0])[position] = int(count)
    return {name: (a, b, c, d) for name, (a, b, c, d) in counts.items()}


def sources(db: sqlite3.Connection, now: datetime | None = None) -> list[SourceRow]:
    """Every source, by name, with its health (`watcher sources`) and why it needs a look."""
    stale_before = format_time(_utc(now) - STALE_AFTER)
    counts = _source_counts(db)
    return [_source_row(row, stale_before, counts) for row in dict_rows(db, _SOURCE_SQL + " ORDER BY s.name")]


def _attention_sources(db: sqlite3.Connection, now: datetime) -> tuple[tuple[SourceRow, ...], int]:
    """The first ATTENTION_LIMIT sources that need a look (failing first, then degraded, then
    stale; by name), and how many need one in all (every source is stale when the daemon is
    not running: the dashboard shows the first ones and the count)."""
    stale_before = format_time(now - STALE_AFTER)
    needing = """s.state = 'failing' OR (s.state = 'ok' AND (s.warning IS NOT NULL
        OR coalesce(s.next_poll, s.created_at) < ?))"""
    total = int(db.execute(f"SELECT count(*) FROM sources AS s WHERE {needing}", (stale_before,)).fetchone()[0])
    rows = dict_rows(db, f"""{_SOURCE_SQL} WHERE {needing}
        ORDER BY CASE WHEN s.state = 'failing' THEN 0 WHEN s.warning IS NOT NULL THEN 1 ELSE 2 END, s.name
        LIMIT ?""", [stale_before, ATTENTION_LIMIT])
    counts: dict[str, tuple[int, int, int, int]] = {}
    for name, items, findings, failed, parked in db.execute(
        """SELECT n.value,
            (SELECT count(*) FROM items WHERE source = n.value),
            (SELECT count(DISTINCT finding_id) FROM item_findings WHERE source = n.value),
            (SELECT count(*) FROM failed_items WHERE source = n.value AND NOT parked),
            (SELECT count(*) FROM failed_items WHERE source = n.value AND parked)
        FROM json_each(?) AS n""", (json.dumps([row["name"] for row in rows]),)):
        counts[name] = (int(items), int(findings), int(failed), int(parked))
    return tuple(_source_row(row, stale_before, counts) for row in rows), total


# --------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Dashboard:
    """The dashboard. Series are (label, value) pairs, ready for `charts.bar_chart`."""

    now: str
    open_by_severity: tuple[tuple[str, int], ...]   # every severity, most severe first (zeros kept)
    open_total: int
    findings_per_day: tuple[tuple[str, int], ...]   # DAYS points, oldest first, `YYYY-MM-DD`
    findings_per_source: tuple[tuple[str, int], ...]  # top TOP_SOURCES over DAYS days, most first
    findings_total: int                              # over the DAYS days
    attention: tuple[SourceRow, ...]                 # failing, degraded, stale sources (the first ATTENTION_LIMIT)
    attention_total: int                             # how many need attention in all
    watchlists: int = 0                              # member watchlists stored
    open_with_members: int = 0                       # open incidents holding members of a watchlist
    open_members: tuple[tuple[str, int, int], ...] = ()  # per watchlist: (name, open incidents, their members)


def dashboard(db: sqlite3.Connection, now: datetime) -> Dashboard:
    """The dashboard at `now`: open (not closed, not false-positive) incidents per severity,
    findings first seen on each of the last DAYS days (UTC, today included, days without any
    included as 0), findings per source over those days, sources needing attention."""
    now = _utc(now)
    today = now.date()
    first_day = today - timedelta(days=DAYS - 1)
    since = f"{first_day.isoformat()}T00:00:00Z"
    per_state = dict(db.execute(
        f"SELECT severity, count(*) FROM incidents WHERE state IN {_ACTIVE_STATES!r} GROUP BY severity").fetchall())
    by_severity = tuple((severity, int(per_state.get(severity, 0))) for severity in SEVERITY_ORDER)
    per_day = dict(db.execute(
        "SELECT substr(first_seen, 1, 10), count(*) FROM findings WHERE first_seen >= ? GROUP BY 1",
        (since,)).fetchall())
    days = tuple(((first_day + timedelta(days=n)).isoformat(), int(per_day.get((first_day + timedelta(days=n))
                                                                                 .isoformat(), 0)))
                 for n in range(DAYS))
    per_source = tuple((str(name), int(count)) for name, count in db.execute(
        """SELECT source, count(DISTINCT finding_id) AS n FROM item_findings WHERE linked_at >= ?
        GROUP BY +source ORDER BY n DESC, source LIMIT ?""", (since, TOP_SOURCES)))   # +: by item_findings_linked
    attention, attention_total = _attention_sources(db, now)
    with_members, per_list = _open_members(db)
    return Dashboard(
        now=format_time(now), open_by_severity=by_severity, open_total=sum(n for _, n in by_severity),
        findings_per_day=days, findings_per_source=per_source, findings_total=sum(n for _, n in days),
        attention=attention, attention_total=attention_total, open_with_members=with_members,
        open_members=per_list, watchlists=int(db.execute("SELECT count(*) FROM watchlists").fetchone()[0]),
    )


def _open_members(db: sqlite3.Connection) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    """How many open incidents hold members of a watchlist, and per watchlist (by name) how many
    open incidents hold its members and how many members (summed over the incidents: one
    member in two incidents counts twice)."""
    active = f"state IN {_ACTIVE_STATES!r} AND watchlist_hits != '{{}}'"
    total = int(db.execute(f"SELECT count(*) FROM incidents WHERE {active}").fetchone()[0])
    per_list = tuple((redact(str(name)), int(incidents), int(found)) for name, incidents, found in db.execute(
        f"""SELECT j.key, count(*), sum(j.value) FROM incidents, json_each(watchlist_hits) AS j
        WHERE {active} AND j.type = 'integer' AND j.value > 0 GROUP BY j.key ORDER BY j.key""")) if total else ()
    return total, per_list


# --------------------------------------------------------------------------- incidents


#: The distinct insurer lists of findings (a few hundred at most): scanned from the covering
#: index findings_insurers, so matching an insurer never parses every finding's JSON.
_INSURER_LISTS = "SELECT DISTINCT insurers AS v FROM findings WHERE insurers != '[]'"


@dataclass(frozen=True)
class IncidentFilter:
    """The incident list's filters; None (or "") means any. `state` is one of INCIDENT_STATES
    or ACTIVE (open or acked). Dates are UTC days, both included: an incident matches when it
    was seen (first to last sighting) on one of them."""

    severity: str | None = None
    state: str | None = None
    insurer: str | None = None
    source: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    members: str | None = None          # ANY_LIST: members of any watchlist; else a watchlist's name

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> IncidentFilter:
        """The filters of a query string (`?severity=high&from=2026-11-01`); a value that is not
        one the form offers (an unknown severity or state, a malformed date) is ignored."""
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(query.get(name, "").strip())
            except ValueError:
                return None

        severity = query.get("severity") or None
        state = query.get("state") or None
        members = (query.get("members") or "").strip()
        return cls(
            severity=severity if severity in SEVERITY_ORDER else None,
            state=state if state in (*INCIDENT_STATES, ACTIVE) else None,
            insurer=(query.get("insurer") or "").strip() or None,
            source=(query.get("source") or "").strip() or None,
            date_from=day("from"), date_to=day("to"),
            members=members if members == ANY_LIST or _WATCHLIST_NAME.fullmatch(members) else None,
        )

    def to_query(self) -> dict[str, str]:
        """The filters as query parameters (for paging links): the inverse of `from_query`."""
        values = {"severity": self.severity, "state": self.state, "insurer": self.insurer,
                  "source": self.source, "from": self.date_from.isoformat() if self.date_from else None,
                  "to": self.date_to.isoformat() if self.date_to else None, "members": self.members}
        return {key: value for key, value in values.items() if value}

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `incidents AS i` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.severity:
            clauses.append("i.severity = ?")
            params.append(self.severity)
        if self.state == ACTIVE:
            clauses.append(f"i.state IN {_ACTIVE_STATES!r}")
        elif self.state:
            clauses.append("i.state = ?")
            params.append(self.state)
        if self.source:         # the incidents of the documents seen there (index item_findings_source)
            clauses.append("""i.id IN (SELECT m.incident_id FROM item_findings AS l
                JOIN incident_findings AS m ON m.finding_id = l.finding_id WHERE l.source = ?)""")
            params.append(self.source)
        if self.insurer:        # the few distinct insurer lists naming it, then their findings (findings_insurers)
            clauses.append(f"""i.id IN (SELECT m.incident_id FROM findings AS f
                JOIN incident_findings AS m ON m.finding_id = f.id
                WHERE f.insurers != '[]' AND f.insurers IN (SELECT v FROM ({_INSURER_LISTS})
                    WHERE EXISTS (SELECT 1 FROM json_each(v) WHERE value = ?)))""")
            params.append(self.insurer)
        if self.members:        # a scan of the incidents' own column (a few thousand rows)
            clauses.append("i.watchlist_hits != '{}'")
        if self.members and self.members != ANY_LIST:
            clauses.append("EXISTS (SELECT 1 FROM json_each(i.watchlist_hits) WHERE key = ? AND value > 0)")
            params.append(self.members)
        if self.date_from:
            clauses.append("i.last_seen >= ?")
            params.append(f"{self.date_from.isoformat()}T00:00:00Z")
        if self.date_to:
            clauses.append("i.first_seen < ?")
            params.append(f"{(self.date_to + timedelta(days=1)).isoformat()}T00:00:00Z")
        return (" AND ".join(clauses) or "1"), params


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `items`, the page number (from 1), how many match in all."""

    items: tuple[T, ...]
    page: int
    per_page: int
    total: int
    pages: int                  # at least 1

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass(frozen=True)
class IncidentRow:
    """One incident in the list."""

    id: int
    severity: str
    state: str
    nirs: int                   # estimated distinct NIRs
    findings: int               # distinct contents
    documents: int              # item versions they were seen in
    alerts: int
    sources: tuple[str, ...]    # the first ROW_SOURCES (a leak reposted everywhere has hundreds)
    sources_total: int
    insurers: tuple[str, ...]
    title: str                  # the (masked) title of the document that opened it, "" if none
    first_seen: str
    last_seen: str
    first_posted: str
    members: Hits = ()          # distinct members per watchlist over its documents, by name


def _page_number(page: int, pages: int) -> int:
    return min(max(int(page), 1), pages)


def incident_page(db: sqlite3.Connection, filters: IncidentFilter, page: int,
                  per_page: int = 50) -> Page[IncidentRow]:
    """The incidents matching `filters`, most recently seen first, page `page` (from 1; a page
    past the last gives the last) of `per_page` (1 to MAX_PER_PAGE)."""
    per_page = min(max(int(per_page), 1), MAX_PER_PAGE)
    where, params = filters.where()
    total = int(db.execute(f"SELECT count(*) FROM incidents AS i WHERE {where}", params).fetchone()[0])
    pages = max(math.ceil(total / per_page), 1)
    page = _page_number(page, pages)
    rows = dict_rows(db, f"""WITH shown AS (SELECT i.id FROM incidents AS i WHERE {where}
            ORDER BY i.last_seen DESC, i.id DESC LIMIT ? OFFSET ?)
        SELECT i.id, i.severity, i.state, i.nirs, i.sources, i.first_seen, i.last_seen, i.first_posted,
            i.watchlist_hits,
            (SELECT count(*) FROM incident_findings AS m WHERE m.incident_id = i.id) AS findings,
            (SELECT count(*) FROM alerts AS a WHERE a.incident_id = i.id) AS alerts
        FROM shown JOIN incidents AS i ON i.id = shown.id ORDER BY i.last_seen DESC, i.id DESC""",
                 [*params, per_page, (page - 1) * per_page])   # the page's rows only get their counts
    items = tuple(_incident_row(db, row) for row in rows)
    return Page(items=items, page=page, per_page=per_page, total=total, pages=pages)


def _incident_row(db: sqlite3.Connection, row: Mapping[str, Any]) -> IncidentRow:
    documents, title = db.execute(      # its title: the first link of its first finding (the one that opened it)
        """SELECT count(*), (SELECT l2.title FROM item_findings AS l2 WHERE l2.finding_id =
                (SELECT min(finding_id) FROM incident_findings WHERE incident_id = ?1) ORDER BY l2.linked_at, l2.rowid
                LIMIT 1)
        FROM incident_findings AS m JOIN item_findings AS l ON l.finding_id = m.finding_id
        WHERE m.incident_id = ?1""", (row["id"],)).fetchone()
    insurers = tuple(value for value, in db.execute(
        """SELECT DISTINCT j.value FROM incident_findings AS m JOIN findings AS f ON f.id = m.finding_id,
            json_each(f.insurers) AS j WHERE m.incident_id = ? ORDER BY j.value""", (row["id"],)))
    sources = _json_list(row["sources"])
    return IncidentRow(
        id=int(row["id"]), severity=row["severity"], state=row["state"] or "open", nirs=int(row["nirs"]),
        findings=int(row["findings"]), documents=int(documents), alerts=int(row["alerts"]),
        sources=sources[:ROW_SOURCES], sources_total=len(sources), insurers=tuple(map(str, insurers)),
        title=_text(title),
        first_seen=row["first_seen"], last_seen=row["last_seen"], first_posted=_text(row["first_posted"]),
        members=_hits(row["watchlist_hits"]),
    )


@dataclass(frozen=True)
class FilterChoices:
    """What the incident filter form offers: the values present in the database."""

    severities: tuple[str, ...]         # most severe first
    states: tuple[str, ...]             # INCIDENT_STATES order (ACTIVE is always offered besides)
    insurers: tuple[str, ...]
    sources: tuple[str, ...]
    watchlists: tuple[str, ...] = ()    # the watchlists incidents hold members of (ANY_LIST always offered)


def filter_choices(db: sqlite3.Connection) -> FilterChoices:
    """The severities, states, insurers and sources that incidents have."""
    severities = {value for value, in db.execute("SELECT DISTINCT severity FROM incidents")}
    states = {value for value, in db.execute("SELECT DISTINCT state FROM incidents")}
    insurers = [value for value, in db.execute(
        f"SELECT DISTINCT j.value FROM ({_INSURER_LISTS}), json_each(v) AS j ORDER BY j.value")]
    names = [value for value, in db.execute(
        "SELECT name FROM sources WHERE EXISTS (SELECT 1 FROM item_findings WHERE source = name) ORDER BY name")]
    watchlists = [str(value) for value, in db.execute(
        """SELECT DISTINCT j.key FROM incidents, json_each(watchlist_hits) AS j WHERE watchlist_hits != '{}'
        ORDER BY j.key""")]
    return FilterChoices(
        severities=tuple(s for s in SEVERITY_ORDER if s in severities),
        states=tuple(s for s in INCIDENT_STATES if s in states),
        insurers=tuple(map(str, insurers)), sources=tuple(map(str, names)),
        watchlists=tuple(name for name in watchlists if _WATCHLIST_NAME.fullmatch(name) and redact(name) == name),
    )


# --------------------------------------------------------------------------- one incident


@dataclass(frozen=True)
class DocumentEntry:
    """One document of an incident: an item version one of its findings was seen in."""

    finding_id: int
    source: str
    source_kind: str
    item_id: str
    url: str                    # masked
    title: str                  # masked
    author: str                 # masked
    posted_at: str              # the post's own date ("" when its source gives none)
    first_seen: str             # when leak-watcher saw it
    severity: str
    sha256: str
    records: int
    counts: tuple[tuple[str, int], ...]     # per identifier kind, most first
    counts_text: str                        # `25 NIRs, 3 emails`
    insurers: tuple[str, ...]
    reasons: tuple[str, ...]
    samples: tuple[str, ...]                # masked
    alert: str                              # `alert 3 (update, pending)`, "" when it raised none
    members: Hits = ()                      # its members per watchlist (its finding's), by name
    members_text: str = ""                  # `12 of our members (watchlist adherents)`


@dataclass(frozen=True)
class TriageEntry:
    """One entry of the triage log: who did what, when, and why."""

    action: str
    who: str
    note: str                   # masked when it was stored
    severity: str               # the incident's severity then ("" for suppressions)
    at: str


@dataclass(frozen=True)
class TimelineEntry:
    """A document or a triage entry, at its time: exactly one of the two is set."""

    at: str
    document: DocumentEntry | None = None
    triage: TriageEntry | None = None

    @property
    def kind(self) -> str:
        return "document" if self.document is not None else "triage"


@dataclass(frozen=True)
class EvidenceRow:
    """A custody record of the sealed vault for one of the incident's documents, and the
    command that decrypts its piece on the analyst's machine ("" when no piece is left)."""

    id: int
    status: str                 # sealed, reused, refused, or expired (deleted by retention)
    sealed_at: str
    fetched_at: str
    source: str
    url: str
    title: str
    finding_id: int
    size: int
    kept_bytes: int
    truncated: bool
    sha256: str
    kept_sha256: str
    recipients: tuple[str, ...]
    note: str
    expired_at: str
    export_command: str
    why_no_export: str


@dataclass(frozen=True)
class IncidentDetail:
    """One incident: its summary, its timeline and its evidence."""

    id: int
    severity: str
    state: str
    closed_severity: str
    suppressed: bool
    nirs: int
    counts: tuple[tuple[str, int], ...]     # NIRs: the incident's estimate; other kinds: the largest document's
    counts_text: str
    findings: int
    documents: int                          # every document (the timeline may show fewer)
    documents_shown: int
    alerts: int
    alerts_sent: int
    sources: tuple[str, ...]
    insurers: tuple[str, ...]
    reasons: tuple[str, ...]                # of its most severe finding
    samples: tuple[str, ...]                # masked, of its most severe finding
    first_posted: str
    first_seen: str
    last_seen: str
    timeline: tuple[TimelineEntry, ...]     # documents and triage entries, oldest first
    triage: tuple[TriageEntry, ...]
    evidence: tuple[EvidenceRow, ...]       # the latest ones (at most the timeline's limit)
    evidence_total: int
    export_commands: tuple[str, ...] = field(default=())   # `watcher incidents export ID --format ...`
    members: Hits = ()                      # distinct members per watchlist over every document, by name


def incident_detail(db: sqlite3.Connection, incident_id: int,
                    timeline_limit: int = TIMELINE_LIMIT) -> IncidentDetail | None:
    """Incident `incident_id` (None if unknown), with its first `timeline_limit` documents and
    its whole triage log merged in time order, and its latest `timeline_limit` custody records."""
    rows = dict_rows(db, """SELECT i.*,
            (SELECT count(*) FROM incident_findings AS m WHERE m.incident_id = i.id) AS findings,
            (SELECT count(*) FROM alerts AS a WHERE a.incident_id = i.id) AS alerts,
            (SELECT count(*) FROM alerts AS a WHERE a.incident_id = i.id AND a.state IN ('sent', 'logged')) AS sent,
            EXISTS (SELECT 1 FROM suppressions WHERE kind = 'incident' AND value = CAST(i.id AS TEXT)) AS suppressed
        FROM incidents AS i WHERE i.id = ?""", [incident_id])
    if not rows:
        return None
    row = rows[0]
    documents = _documents(db, incident_id, timeline_limit)
    total = int(db.execute("""SELECT count(*) FROM incident_findings AS m JOIN item_findings AS l
        ON l.finding_id = m.finding_id WHERE m.incident_id = ?""", (incident_id,)).fetchone()[0])
    triage = tuple(TriageEntry(action=r["action"], who=r["who"], note=_text(r["note"]), severity=_text(r["severity"]),
                               at=r["at"]) for r in dict_rows(db, "SELECT action, who, note, severity, at FROM triage "
                                                              "WHERE incident_id = ? ORDER BY id", [incident_id]))
    counts = _incident_counts(db, incident_id, int(row["nirs"]))
    worst = db.execute("""SELECT f.reasons, f.samples
        FROM incident_findings AS m JOIN findings AS f ON f.id = m.finding_id WHERE m.incident_id = ?
        ORDER BY CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, f.id
        LIMIT 1""", (incident_id,)).fetchone()
    insurers = tuple(str(v) for v, in db.execute(
        """SELECT DISTINCT j.value FROM incident_findings AS m JOIN findings AS f ON f.id = m.finding_id,
            json_each(f.insurers) AS j WHERE m.incident_id = ?""", (incident_id,)))
    return IncidentDetail(
        id=int(row["id"]), severity=row["severity"], state=row["state"] or "open",
        closed_severity=_text(row["closed_severity"]), suppressed=bool(row["suppressed"]), nirs=int(row["nirs"]),
        counts=counts, counts_text=counts_text(counts), findings=int(row["findings"]), documents=total,
        documents_shown=len(documents), alerts=int(row["alerts"]), alerts_sent=int(row["sent"]),
        sources=_json_list(row["sources"]), insurers=insurers,
        reasons=_json_list(worst[0]) if worst else (), samples=_json_list(worst[1])[:5] if worst else (),
        first_posted=_text(row["first_posted"]), first_seen=row["first_seen"], last_seen=row["last_seen"],
        timeline=merge_timeline(documents, triage), triage=triage, evidence=_evidence(db, incident_id, timeline_limit),
        evidence_total=int(db.execute("SELECT count(*) FROM evidence WHERE incident_id = ?",
                                      (incident_id,)).fetchone()[0]),
        export_commands=export_commands(incident_id),
        members=_hits(row["watchlist_hits"]),
    )


def export_commands(incident_id: int) -> tuple[str, ...]:
    """The `watcher incidents export` lines an analyst runs for this incident (MISP, STIX, JSON)."""
    return tuple(f"watcher incidents export {incident_id} --format {fmt} --out incident-{incident_id}.{name}"
                 for fmt, name in (("misp", "misp.json"), ("stix", "stix.json"), ("json", "json")))


def merge_timeline(documents: Sequence[DocumentEntry], triage: Sequence[TriageEntry]) -> tuple[TimelineEntry, ...]:
    """Documents (at their first sighting) and triage entries (at their time), oldest first; at
    the same second a document comes before the triage entry that reacted to it."""
    entries = [(d.first_seen, 0, n, TimelineEntry(at=d.first_seen, document=d)) for n, d in enumerate(documents)]
    entries += [(t.at, 1, n, TimelineEntry(at=t.at, triage=t)) for n, t in enumerate(triage)]
    return tuple(entry for *_, entry in sorted(entries, key=lambda e: e[:3]))


def _incident_counts(db: sqlite3.Connection, incident_id: int, nirs: int) -> tuple[tuple[str, int], ...]:
    """Per kind, the largest count of one document (reposts would be counted twice by a sum);
    NIRs: the incident's estimate of distinct ones (what exports and alerts say)."""
    counts = {str(kind): int(value) for kind, value in db.execute(
        """SELECT j.key, max(j.value) FROM incident_findings AS m JOIN findings AS f ON f.id = m.finding_id,
            json_each(f.counts) AS j WHERE m.incident_id = ? AND j.type = 'integer' GROUP BY j.key""",
        (incident_id,)) if value}
    if nirs or counts.get("nir"):
        counts["nir"] = max(nirs, counts.get("nir", 0))
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _documents(db: sqlite3.Connection, incident_id: int, limit: int) -> list[DocumentEntry]:
    """The first `limit` documents (`records.incident_documents`, the query `watcher incidents
    show` and the exports read), each with the alert it raised and its finding's members."""
    raised = records.document_alerts(db, incident_id)
    rows = records.incident_documents(db, incident_id, limit)
    hits = {int(finding_id): _hits(text) for finding_id, text in db.execute(
        """SELECT id, watchlist_hits FROM findings WHERE id IN (SELECT value FROM json_each(?))
        AND watchlist_hits != '{}'""",
        (json.dumps(sorted({row["finding_id"] for row in rows})),))}
    documents = []
    for row in rows:
        counts = _counts_of(row["counts"])
        alert = raised.get((row["finding_id"], row["source"], row["item_id"]))
        members = hits.get(int(row["finding_id"]), ())
        documents.append(DocumentEntry(
            finding_id=int(row["finding_id"]), source=row["source"], source_kind=_text(row["source_kind"]),
            item_id=row["item_id"], url=_text(row["url"]), title=_text(row["title"]), author=_text(row["author"]),
            posted_at=_text(row["posted_at"]), first_seen=row["first_seen"], severity=row["severity"],
            sha256=row["sha256"], records=int(row["records"] or 0), counts=counts, counts_text=counts_text(counts),
            insurers=_strings(row["insurers"]), reasons=_strings(row["reasons"]), samples=_strings(row["samples"]),
            alert=f"alert {alert['id']} ({alert['kind']}, {alert['state']})" if alert else "",
            members=members, members_text=members_text(dict(members)),
        ))
    return documents


def _evidence(db: sqlite3.Connection, incident_id: int, limit: int) -> tuple[EvidenceRow, ...]:
    """The latest `limit` custody records of the incident's documents (`watcher evidence list
    --incident ID`), each with the `watcher evidence export` command that decrypts its piece."""
    found = []
    for row in dict_rows(db, "SELECT * FROM evidence WHERE incident_id = ? ORDER BY id DESC LIMIT ?",
                     [incident_id, max(int(limit), 0)]):
        status = "expired" if row["expired_at"] else row["status"]
        if row["expired_at"]:
            command, why = "", f"its piece was deleted by retention at {row['expired_at']}"
        elif not row["file_name"]:
            command, why = "", f"no piece was kept ({row['note'] or row['status']})"
        else:
            command = f"watcher evidence export {row['id']} --identity KEYFILE --out evidence-{row['id']}.bin"
            why = ""
        found.append(EvidenceRow(
            id=int(row["id"]), status=status, sealed_at=row["sealed_at"], fetched_at=row["fetched_at"],
            source=row["source"], url=_text(row["url"]), title=_text(row["title"]),
            finding_id=int(row["finding_id"] or 0), size=int(row["size"]), kept_bytes=int(row["kept_bytes"]),
            truncated=bool(row["truncated"]), sha256=row["sha256"], kept_sha256=row["kept_sha256"],
            recipients=_json_list(row["recipients"]), note=_text(row["note"]), expired_at=_text(row["expired_at"]),
            export_command=command, why_no_export=why,
        ))
    return tuple(found)


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlertRow:
    """One alert of the outbox."""

    id: int
    alert_id: str
    kind: str                   # new, update, health
    severity: str
    state: str                  # pending, failed, sent, logged
    tries: int
    next_try: str
    last_error: str             # one redacted line
    delivered_to: tuple[str, ...]   # the targets that accepted it
    incident_id: int            # 0: none (a health notice)
    source: str
    title: str                  # masked
    created_at: str
    sent_at: str
    acked_at: str
    retryable: bool             # failed: `retry` puts it back in the outbox


def alerts(db: sqlite3.Connection, status: str | None = None, limit: int = 200) -> list[AlertRow]:
    """The latest `limit` alerts (in state `status`, one of ALERT_STATUSES, when given), the
    latest first."""
    if status is not None and status not in ALERT_STATUSES:
        raise ValueError(f"unknown alert status {status!r} (one of {', '.join(ALERT_STATUSES)})")
    rows = dict_rows(db, """SELECT id, alert_id, kind, severity, state, tries, next_try, last_error, delivered_to,
            incident_id, source, title, created_at, sent_at, acked_at FROM alerts
        WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2""", [status, max(int(limit), 0)])
    return [AlertRow(
        id=int(row["id"]), alert_id=row["alert_id"], kind=row["kind"], severity=row["severity"], state=row["state"],
        tries=int(row["tries"]), next_try=_text(row["next_try"]), last_error=_text(row["last_error"]),
        delivered_to=_json_list(row["delivered_to"]), incident_id=int(row["incident_id"] or 0),
        source=_text(row["source"]), title=_text(row["title"]), created_at=row["created_at"],
        sent_at=_text(row["sent_at"]), acked_at=_text(row["acked_at"]), retryable=row["state"] == "failed",
    ) for row in rows]


def alert_counts(db: sqlite3.Connection) -> dict[str, int]:
    """How many alerts are in each state (every one of ALERT_STATUSES, zeros included)."""
    found = dict(db.execute("SELECT state, count(*) FROM alerts GROUP BY state").fetchall())
    return {status: int(found.get(status, 0)) for status in ALERT_STATUSES}
