"""The console's read model (watcher.web.views) on a real state database.

The state is recorded through the store and the real incident policy with a settable clock
(`tests.support.receivers`: `leak`, `Clock`), triaged with `records.triage_incident`, polled
with `record_poll`, and read back on a read-only connection, as the console reads it. The
no-cleartext test feeds the real analyzer a CSV of random NIRs (`tests.support.nirs`) with
NIRs in the title, the URL and a triage note too, and looks for every written form of each.
"""

from __future__ import annotations

import random
import shlex
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from tests.support.nirs import nir_forms, random_nir
from tests.support.receivers import T0, Clock, leak

from watcher.alerts import AlertSettings, IncidentPolicy, records
from watcher.analyze import Analyzer
from watcher.cli import build_parser
from watcher.detect import Scanner
from watcher.evidence import CustodyRecord
from watcher.privacy import Fingerprinter
from watcher.store import ItemRecord, PollHealth, StateDB, connect_read_only
from watcher.store.evidence import mark_expired, record_custody
from watcher.web import views
from watcher.web.charts import bar_chart
from watcher.web.views import IncidentFilter

POLICY = IncidentPolicy(AlertSettings())


@dataclass
class Console:
    db: sqlite3.Connection
    path: Path
    now: datetime           # when the views are asked (a day after the last recording)


def _custody(n: int, status: str = "sealed", file_name: str | None = "piece.age") -> CustodyRecord:
    return CustodyRecord(piece_id=f"piece-{n}", status=status, sha256="a" * 64, size=1000, kept_sha256="a" * 64,
                         kept_bytes=1000, truncated=False, fetched_at="2026-11-28T16:40:00Z",
                         sealed_at="2026-11-28T16:40:01Z", source="paste", url="https://paste.example/p1", tor=False,
                         finding_id=1, incident_id=1, recipients=("age1analyst",),
                         file_name=file_name and f"{n}-{file_name}", note="" if file_name else "vault full")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """Incident 1 (critical): `paste` day 0, the same bytes on `forum` day 2 (acked by alice at
    that second), a bigger repost on `forum` day 5 (posted day 4). Incident 2: a low mention of
    Almerys on `board`, day 6. Incidents 3-8: three NIRs each on `board`, an hour apart, day 7;
    incident 3 closed by bob. Sources: `dead` failing, `odd` degraded, `gone` disabled, `paste`
    polled and due later, the others never polled (stale)."""
    clock = Clock()
    path = tmp_path / "state" / "watcher.db"
    with StateDB(path, clock=clock) as state:
        for source in ("paste", "forum", "board", "dead", "odd", "gone"):
            state.upsert_source(source, "listing")
        state.record_item("paste", "p1", "1", "https://paste.example/p1", "<script>alert(1)</script> dump",
                          leak(range(25)), alert=POLICY)
        clock.advance(days=2)
        state.record_item("forum", "f1", "1", "https://forum.example/f1", "mirror", leak(range(25)), alert=POLICY)
        records.triage_incident(state, 1, "ack", "alice", "insurer called")
        clock.advance(days=3)
        state.record_items([ItemRecord("forum", "f2", "1", "https://forum.example/f2", "full dump",
                                       leak(range(60), tag="full"), posted_at="2026-12-02T10:00:00Z")], alert=POLICY)
        clock.advance(days=1)
        state.record_item("board", "b1", "1", "https://board.example/b1", "mention",
                          leak([], tag="low", insurers=("Almerys",)), alert=POLICY)
        clock.advance(days=1)
        for n in range(6):
            clock.advance(hours=1)
            state.record_item("board", f"k{n}", "1", f"https://board.example/k{n}", f"batch {n}",
                              leak(range(1000 * (n + 1), 1000 * (n + 1) + 3), tag=f"k{n}"), alert=POLICY)
        records.triage_incident(state, 3, "close", "bob", "duplicate")
        state.record_poll("dead", False, "connect timeout", clock.now + timedelta(minutes=5))
        state.record_poll("odd", True, None, clock.now + timedelta(days=3),
                          PollHealth(warning="the main page looks like a login page"))
        state.record_poll("paste", True, None, clock.now + timedelta(days=3))
        state.disable_source("gone")
        record_custody(state, _custody(1), "dump")
        record_custody(state, _custody(2), "dump")
        record_custody(state, _custody(3, "refused", None), "dump")
        mark_expired(state, ["2-piece.age"])
        first_alert = records.list_alerts(state)[0]
        records.record_attempt(state, first_alert.id, delivered_to=frozenset(), new_state="failed",
                               next_try=state.now(), error="HTTP 503 from the webhook", now=state.now())
        now = clock.now + timedelta(days=1)
    db = connect_read_only(path)
    yield Console(db, path, now)
    db.close()


def _ids(page: views.Page[views.IncidentRow]) -> list[int]:
    return [row.id for row in page.items]


# --------------------------------------------------------------------------- incidents list


def test_incidents_are_listed_most_recently_seen_first_with_their_figures(console: Console) -> None:
    page = views.incident_page(console.db, IncidentFilter(), 1)
    assert (page.total, page.pages, page.page) == (8, 1, 1)
    assert _ids(page) == [8, 7, 6, 5, 4, 3, 2, 1]
    first = page.items[-1]
    assert (first.severity, first.state, first.nirs, first.findings, first.documents, first.alerts) == (
        "critical", "acked", 60, 2, 3, 3)
    assert first.sources == ("paste", "forum") and first.sources_total == 2 and first.insurers == ("Viamedis",)
    assert first.title == "<script>alert(1)</script> dump"        # text: escaping is the template's job
    assert first.first_posted == "2026-12-02T10:00:00Z" and page.items[0].first_posted == ""


@pytest.mark.parametrize(("filters", "expected"), [
    (IncidentFilter(severity="critical"), [1]),
    (IncidentFilter(severity="low"), [2]),
    (IncidentFilter(state="closed"), [3]),
    (IncidentFilter(state="acked"), [1]),
    (IncidentFilter(state=views.ACTIVE), [8, 7, 6, 5, 4, 2, 1]),
    (IncidentFilter(insurer="Almerys"), [2]),
    (IncidentFilter(insurer="Viamedis", severity="high"), [8, 7, 6, 5, 4, 3]),
    (IncidentFilter(insurer="nobody"), []),
    (IncidentFilter(source="forum"), [1]),
    (IncidentFilter(source="board"), [8, 7, 6, 5, 4, 3, 2]),
    (IncidentFilter(source="paste", state="open"), []),
    (IncidentFilter(date_from=date(2026, 12, 4), date_to=date(2026, 12, 4)), [2]),
    (IncidentFilter(date_to=date(2026, 11, 28)), [1]),            # seen from day 0 to day 5: overlaps
    (IncidentFilter(date_from=date(2026, 11, 29), date_to=date(2026, 11, 29)), [1]),
    (IncidentFilter(date_from=date(2026, 12, 5)), [8, 7, 6, 5, 4, 3]),
])
def test_each_filter_keeps_only_the_incidents_it_names(console: Console, filters: IncidentFilter,
                                                       expected: list[int]) -> None:
    page = views.incident_page(console.db, filters, 1)
    assert _ids(page) == expected and page.total == len(expected) and page.pages == max(1, -(-len(expected) // 50))


def test_paging_counts_pages_and_keeps_the_page_in_range(console: Console) -> None:
    pages = [views.incident_page(console.db, IncidentFilter(), n, per_page=3) for n in (1, 2, 3)]
    assert [_ids(page) for page in pages] == [[8, 7, 6], [5, 4, 3], [2, 1]]
    assert all((page.total, page.pages) == (8, 3) for page in pages)
    assert (pages[0].has_previous, pages[0].has_next, pages[2].has_next) == (False, True, False)
    assert views.incident_page(console.db, IncidentFilter(), 99, per_page=3).page == 3
    assert views.incident_page(console.db, IncidentFilter(), 0, per_page=3).page == 1
    empty = views.incident_page(console.db, IncidentFilter(insurer="nobody"), 5)
    assert (empty.items, empty.total, empty.pages, empty.page) == ((), 0, 1, 1)


def test_filters_read_from_a_query_string_and_back(console: Console) -> None:
    query = {"severity": "high", "state": "active", "insurer": " Viamedis ", "source": "board", "from": "2026-12-01",
             "to": "not a date"}
    filters = IncidentFilter.from_query(query)
    assert filters == IncidentFilter(severity="high", state="active", insurer="Viamedis", source="board",
                                     date_from=date(2026, 12, 1))
    assert IncidentFilter.from_query(filters.to_query()) == filters
    assert IncidentFilter.from_query({"severity": "<b>", "state": "' OR 1=1 --"}) == IncidentFilter()
    assert _ids(views.incident_page(console.db, filters, 1)) == [8, 7, 6, 5, 4]


def test_the_filter_form_offers_what_is_present(console: Console) -> None:
    choices = views.filter_choices(console.db)
    assert choices.severities == ("critical", "high", "low")
    assert choices.states == ("open", "acked", "closed")
    assert choices.insurers == ("Almerys", "Viamedis")
    assert choices.sources == ("board", "forum", "paste")


# --------------------------------------------------------------------------- one incident


def test_the_timeline_merges_documents_and_triage_in_time_order(console: Console) -> None:
    detail = views.incident_detail(console.db, 1)
    assert detail is not None
    kinds = [(entry.kind, entry.at) for entry in detail.timeline]
    assert kinds == [("document", "2026-11-28T16:40:00Z"), ("document", "2026-11-30T16:40:00Z"),
                     ("triage", "2026-11-30T16:40:00Z"), ("document", "2026-12-03T16:40:00Z")]
    ack = detail.timeline[2].triage
    assert ack is not None and (ack.action, ack.who, ack.note, ack.severity) == ("ack", "alice", "insurer called",
                                                                                 "critical")
    documents = [entry.document for entry in detail.timeline if entry.document is not None]
    assert [(d.source, d.posted_at, d.alert) for d in documents] == [
        ("paste", "", "alert 1 (new, failed)"), ("forum", "", "alert 2 (update, pending)"),
        ("forum", "2026-12-02T10:00:00Z", "alert 3 (update, pending)")]
    assert documents[2].counts == (("nir", 60),) and documents[2].counts_text == "60 NIRs"
    assert documents[0].samples[0].startswith("nir 1 84 12 ") and documents[0].insurers == ("Viamedis",)
    assert (detail.severity, detail.state, detail.nirs, detail.findings, detail.documents) == (
        "critical", "acked", 60, 2, 3)
    assert (detail.first_seen, detail.last_seen, detail.first_posted) == (
        "2026-11-28T16:40:00Z", "2026-12-03T16:40:00Z", "2026-12-02T10:00:00Z")
    assert detail.counts_text == "60 NIRs" and detail.reasons == ("25 valid NIRs in a CSV extract",)
    assert (detail.alerts, detail.alerts_sent) == (3, 0)


def test_the_same_documents_as_incidents_show(console: Console) -> None:
    """The console, `watcher incidents show` and the exports read one query of an incident's
    documents (records.incident_documents)."""
    state = StateDB.read_only(console.path)
    try:
        shown = records.incident_timeline(state, 1)
    finally:
        state.close()
    detail = views.incident_detail(console.db, 1)
    assert detail is not None
    documents = [e.document for e in detail.timeline if e.document is not None]
    assert [(d["source"], d["item_id"], d["first_seen"], d["sha256"]) for d in shown] == [
        (d.source, d.item_id, d.first_seen, d.sha256) for d in documents]


def test_a_long_timeline_is_cut_and_says_so(console: Console) -> None:
    detail = views.incident_detail(console.db, 1, timeline_limit=2)
    assert detail is not None
    assert (detail.documents, detail.documents_shown) == (3, 2)
    assert [entry.kind for entry in detail.timeline] == ["document", "document", "triage"]


def test_a_closed_incident_keeps_who_closed_it_and_why(console: Console) -> None:
    detail = views.incident_detail(console.db, 3)
    assert detail is not None and (detail.state, detail.closed_severity) == ("closed", "high")
    assert [(t.action, t.who, t.note) for t in detail.triage] == [("close", "bob", "duplicate")]
    assert detail.timeline[-1].triage == detail.triage[0]


def test_custody_records_come_with_the_export_command(console: Console) -> None:
    detail = views.incident_detail(console.db, 1)
    assert detail is not None and detail.evidence_total == 3
    by_status = {row.status: row for row in detail.evidence}
    assert set(by_status) == {"sealed", "expired", "refused"}
    sealed = by_status["sealed"]
    assert sealed.export_command == f"watcher evidence export {sealed.id} --identity KEYFILE --out evidence-{sealed.id}.bin"
    args = build_parser().parse_args(shlex.split(sealed.export_command)[1:])
    assert (args.action, args.id, args.identity, args.out) == ("export", sealed.id, "KEYFILE", f"evidence-{sealed.id}.bin")
    assert by_status["expired"].export_command == "" and "deleted by retention" in by_status["expired"].why_no_export
    assert by_status["refused"].export_command == "" and "vault full" in by_status["refused"].why_no_export


def test_an_unknown_incident_is_none(console: Console) -> None:
    assert views.incident_detail(console.db, 999) is None


# --------------------------------------------------------------------------- dashboard


def test_the_dashboard_counts_open_incidents_by_severity(console: Console) -> None:
    board = views.dashboard(console.db, console.now)
    assert board.open_by_severity == (("critical", 1), ("high", 5), ("medium", 0), ("low", 1))
    assert board.open_total == 7


def test_findings_per_day_has_thirty_days_with_the_empty_ones(console: Console) -> None:
    board = views.dashboard(console.db, console.now)
    days = board.findings_per_day
    assert len(days) == 30 and days[-1][0] == console.now.date().isoformat()
    assert [date.fromisoformat(day) for day, _ in days] == [console.now.date() - timedelta(days=29 - n)
                                                            for n in range(30)]
    per_day = dict(days)
    assert (per_day["2026-11-28"], per_day["2026-11-29"], per_day["2026-12-03"], per_day["2026-12-04"],
            per_day["2026-12-05"]) == (1, 0, 1, 1, 6)
    assert sum(count == 0 for _, count in days) == 26 and board.findings_total == 9
    later = views.dashboard(console.db, T0 + timedelta(days=32))   # 12-01 to 12-30: day 0 has left
    assert later.findings_total == 8 and "2026-11-28" not in dict(later.findings_per_day)


def test_findings_per_source_most_first(console: Console) -> None:
    board = views.dashboard(console.db, console.now)
    assert board.findings_per_source == (("board", 7), ("forum", 2), ("paste", 1))


def test_sources_needing_attention(console: Console) -> None:
    board = views.dashboard(console.db, console.now)
    attention = board.attention
    assert board.attention_total == 4
    assert [(s.name, s.state) for s in attention] == [("dead", "failing"), ("odd", "degraded"), ("board", "ok"),
                                                      ("forum", "ok")]
    assert attention[0].attention.startswith("failing: 1 failed poll since ")
    assert attention[1].attention == "degraded: the main page looks like a login page"
    assert attention[2].attention.startswith("stale: never polled since it was added at 2026-11-28T16:40:00Z")


# --------------------------------------------------------------------------- sources and alerts


def test_the_sources_page(console: Console) -> None:
    rows = {row.name: row for row in views.sources(console.db, console.now)}
    assert list(rows) == ["board", "dead", "forum", "gone", "odd", "paste"]
    assert (rows["board"].items, rows["board"].findings, rows["forum"].items, rows["forum"].findings) == (7, 7, 2, 2)
    assert (rows["dead"].state, rows["dead"].failures, rows["dead"].last_error) == ("failing", 1, "connect timeout")
    assert rows["odd"].state == "degraded" and rows["odd"].warning.startswith("the main page")
    assert rows["gone"].state == "disabled" and rows["gone"].attention == ""
    assert rows["paste"].attention == "" and rows["paste"].last_poll == "2026-12-05T22:40:00Z"
    assert views.sources(console.db, T0 + timedelta(days=30))[-1].attention.startswith("stale: its next poll was due")


def test_the_alerts_page(console: Console) -> None:
    every = views.alerts(console.db)
    assert [a.id for a in every] == sorted((a.id for a in every), reverse=True) and len(every) >= 3
    failed = views.alerts(console.db, "failed")
    assert [(a.id, a.state, a.tries, a.last_error, a.retryable, a.incident_id) for a in failed] == [
        (1, "failed", 1, "HTTP 503 from the webhook", True, 1)]
    assert all(not a.retryable for a in views.alerts(console.db, "pending"))
    assert views.alert_counts(console.db)["failed"] == 1
    with pytest.raises(ValueError, match="unknown alert status"):
        views.alerts(console.db, "pending' OR 1=1")


# --------------------------------------------------------------------------- no identifier in clear


def _document(nirs: list[str], rng: random.Random) -> bytes:
    rows = ["nom;prenom;nir;organisme"] + [f"Nom{i};Prenom{i};{value};Viamedis" for i, value in enumerate(nirs)]
    return ("\n".join(rows) + f"\n#{rng.random()}").encode()


def test_no_view_holds_a_nir_in_clear(tmp_path: Path, scanner: Scanner) -> None:
    """NIRs in a document, its title and URL, a triage note: every view, rendered, and the
    charts of the dashboard hold none of them in any written form."""
    rng = random.Random(1717)
    nirs = list(dict.fromkeys(random_nir(rng, strict=True) for _ in range(40)))
    analyzer = Analyzer(scanner, fingerprinter=Fingerprinter(b"v" * 32))
    clock = Clock()
    path = tmp_path / "watcher.db"
    with StateDB(path, clock=clock) as state:
        state.upsert_source("paste", "listing")
        report = analyzer.analyze_bytes(_document(nirs, rng), "leak.csv")
        assert report.severity == "critical"
        state.record_items([ItemRecord("paste", f"id-{nirs[0]}", "1", f"https://paste.example/raw?nir={nirs[1]}",
                                       f"fichier {nir_forms(nirs[2])['spaced']}", report, author=nirs[3])],
                           alert=POLICY)
        records.triage_incident(state, 1, "ack", "alice", f"NIR {nirs[4]} confirmed")
        db = connect_read_only(path)
        try:
            board = views.dashboard(db, clock.now)
            detail = views.incident_detail(db, 1)
            shown = [board, views.incident_page(db, IncidentFilter(), 1), views.filter_choices(db), detail,
                     views.sources(db, clock.now), views.alerts(db),
                     bar_chart(board.findings_per_day, title="per day"),
                     bar_chart(board.findings_per_source, title="per source", horizontal=True)]
        finally:
            db.close()
    text = "\n".join(map(str, shown))
    assert detail is not None and detail.nirs == 40 and "[NIR]" in text
    for value in nirs:
        for form, written in nir_forms(value).items():
            assert written not in text, f"a NIR ({form} form) in a view"


def test_the_first_sources_needing_attention_are_listed_and_all_counted(tmp_path: Path) -> None:
    """With the daemon stopped every source is stale: the dashboard lists the first ones, the
    failing before the stale, and counts them all. A leak on many sources names the first
    ones in its list row and counts the rest."""
    clock = Clock()
    path = tmp_path / "watcher.db"
    names = [f"s{n:03d}" for n in range(views.ATTENTION_LIMIT + 7)]
    with StateDB(path, clock=clock) as state:
        for name in [*names, "zz-failing"]:
            state.upsert_source(name, "listing")
        for name in names[:views.ROW_SOURCES + 2]:
            state.record_item(name, "x", "1", None, "same dump", leak(range(12)), alert=POLICY)
        state.record_poll("zz-failing", False, "refused", clock.now)
    db = connect_read_only(path)
    try:
        board = views.dashboard(db, clock.now + timedelta(hours=1))
        row = views.incident_page(db, IncidentFilter(), 1).items[0]
    finally:
        db.close()
    assert board.attention_total == len(names) + 1 and len(board.attention) == views.ATTENTION_LIMIT
    assert [s.name for s in board.attention[:3]] == ["zz-failing", "s000", "s001"]
    assert row.sources == tuple(names[:views.ROW_SOURCES]) and row.sources_total == views.ROW_SOURCES + 2
