"""Member counts where an analyst looks (issues 16 and 17): `watcher incidents` and `incidents
show` (text and JSON), the console's read model and pages (incident list, its members filter,
incident page, dashboard), and the MISP, STIX and JSON exports.

One real state: two watchlists imported with `watcher watchlist import`, documents analysed
with them (the installation's key) and recorded by the store with the daemon's incident
policy: a leak and its bigger repost (one incident, distinct members over both), and an
unrelated leak without members. Random NIRs only; none may reach any output in clear, nor
any member fingerprint.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import jsonschema
import pymisp
import pytest
from pymisp import MISPEvent
from stix2validator import validate_string

from tests.support.nirs import nir_forms, random_nir
from tests.support.web import PASSWORD, USER, sign_in, write_config
from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.alerts.records import list_alerts, triage_incident
from watcher.analyze import Analyzer
from watcher.cli import main
from watcher.config import DB_NAME, Config, load_config
from watcher.detect import Scanner
from watcher.exports import export_from_payload, incident_payload, installation_namespace, render
from watcher.privacy import Fingerprinter, read_secret
from watcher.store import ItemRecord, StateDB, Store
from watcher.watchlist.members import open_watchlists
from watcher.web import auth, views


@dataclass
class Members:
    """The filled state: the incident with members, the one without, every NIR in clear."""

    config_path: Path
    config: Config
    secret: bytes
    leak: int                   # two documents: adherents 12, then 18 and retraites 6
    other: int                  # no member
    nirs: list[str]
    fingerprints: list[int]     # the member fingerprints the incident matched (never in an output)

    def state(self) -> StateDB:
        return StateDB.read_only(self.config.watcher.state_dir / DB_NAME)


def _csv(nirs: list[str], rng: random.Random) -> bytes:
    rows = ["nom;prenom;num_secu;email;organisme"]
    rows += [f"Nom{i};Prenom{i};{nir_forms(n)['spaced' if i % 2 else 'compact']};u{rng.randrange(10**6)}@example.org;"
             "Viamedis" for i, n in enumerate(nirs)]
    return "\n".join(rows).encode()


def _import(config: Path, name: str, nirs: list[str]) -> None:
    path = config.parent / f"{name}.txt"
    path.write_text("".join(nir_forms(n)["dotted"] + "\n" for n in nirs), encoding="utf-8")
    assert main(["watchlist", "import", name, str(path), "--config", str(config)]) == 0
    path.unlink()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, scanner: Scanner) -> Iterator[Members]:
    folder = tmp_path_factory.mktemp("members")
    rng = random.Random(1617)
    ours = list(dict.fromkeys(random_nir(rng, strict=True) for _ in range(40)))
    strangers = [n for n in dict.fromkeys(random_nir(rng, strict=True) for _ in range(80)) if n not in ours]
    config_path = write_config(folder)
    _import(config_path, "adherents", ours[:30])
    _import(config_path, "retraites", ours[20:])            # ours[20:30] are in both lists
    config = load_config(config_path)
    state_dir = config.watcher.state_dir
    secret = read_secret(state_dir / "secret.key")
    assert secret is not None
    analyzer = Analyzer(scanner, fingerprinter=Fingerprinter(secret),
                        watchlists=open_watchlists(state_dir / DB_NAME, secret)[0])
    policy = IncidentPolicy(AlertSettings())
    with StateDB(state_dir / DB_NAME) as state:
        for name, kind in (("paste-site", "listing"), ("board", "forum"), ("feed", "feed")):
            state.upsert_source(name, kind)
        first = analyzer.analyze_bytes(_csv(ours[:12] + strangers[:20], rng), "a.csv")
        assert first.watchlist_hits == {"adherents": 12}
        state.record_items([ItemRecord("paste-site", "p1", "1", f"https://paste.example/{ours[0]}",
                                       f"adherents {nir_forms(ours[1])['spaced']}", first)], alert=policy)
        repost = analyzer.analyze_bytes(_csv(ours[:12] + ours[24:30] + strangers[:30], rng), "b.csv")
        assert repost.watchlist_hits == {"adherents": 18, "retraites": 6}
        state.record_items([ItemRecord("board", "t1", "1", "https://board.example/t/1", "dump", repost)],
                           alert=policy)
        unrelated = analyzer.analyze_bytes(_csv(strangers[40:], rng), "c.csv")
        assert unrelated.watchlist_hits == {}
        state.record_items([ItemRecord("feed", "f1", "1", "https://feed.example/1", "other", unrelated)],
                           alert=policy)
        incidents = [row[0] for row in state.db.execute("SELECT id FROM incidents ORDER BY id")]
        assert len(incidents) == 2
        fingerprints = [row[0] for row in state.db.execute("SELECT member FROM incident_watchlist_members")]
        auth.add_user(state, USER, auth.hash_password(PASSWORD))
    yield Members(config_path, config, secret, incidents[0], incidents[1], ours + strangers, fingerprints)


def assert_nothing_in_clear(text: str, filled: Members) -> None:
    """No NIR in any written form, no 13-character NIR, no member fingerprint (as SQLite keeps
    it, or as 16 hex digits)."""
    for nir in filled.nirs:
        for form, written in nir_forms(nir).items():
            assert written not in text, f"a NIR in clear ({form})"
        assert nir[:13] not in text
    for member in filled.fingerprints:
        assert str(member) not in text and f"{member & (2**64 - 1):016x}" not in text.lower()


def cli(capsys: pytest.CaptureFixture[str], filled: Members, *argv: str) -> str:
    code = main([*argv, "--config", str(filled.config_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert_nothing_in_clear(out + err, filled)
    return out


# --------------------------------------------------------------------------- the command line


def test_incidents_lists_the_distinct_members_of_each_incident(filled: Members,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, filled, "incidents")
    header, *rows = out.splitlines()
    assert header.split()[-2:] == ["MEMBERS", "SOURCES"]
    by_id = {int(row.split()[0]): row.split() for row in rows}       # no post date: FIRST POSTED is one "-"
    assert by_id[filled.leak][9:] == ["18", "paste-site,", "board"]  # ours[:12] + ours[24:30]: in both lists, once
    assert by_id[filled.other][9:] == ["-", "feed"]
    records = {row["id"]: row for row in map(json.loads, cli(capsys, filled, "incidents", "--format", "json")
                                             .splitlines())}
    assert records[filled.leak]["watchlist_hits"] == {"adherents": 18, "retraites": 6}
    assert records[filled.leak]["members"] == 18
    assert records[filled.other]["watchlist_hits"] == {} and records[filled.other]["members"] == 0


def test_incidents_show_says_the_members_per_watchlist_and_per_document(filled: Members,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    lines = cli(capsys, filled, "incidents", "show", str(filled.leak)).splitlines()
    assert "Members: 18 of our members (watchlist adherents) over every document" in lines
    assert "Members: 6 of our members (watchlist retraites) over every document" in lines
    assert "Members: 18 distinct members in all" in lines
    documents = [line.strip() for line in lines if line.startswith("       Members:")]
    assert documents == ["Members: 12 of our members (watchlist adherents)",
                         "Members: 18 of our members (watchlist adherents); 6 of our members (watchlist retraites)"]
    (view,) = map(json.loads, cli(capsys, filled, "incidents", "show", str(filled.leak), "--format", "json")
                  .splitlines())
    assert view["watchlist_hits"] == {"adherents": 18, "retraites": 6} and view["members"] == 18
    assert [doc["watchlist_hits"] for doc in view["timeline"]] == [{"adherents": 12},
                                                                   {"adherents": 18, "retraites": 6}]
    other = cli(capsys, filled, "incidents", "show", str(filled.other)).splitlines()
    assert "Members: -" in other and not any(line.startswith("       Members:") for line in other)


# --------------------------------------------------------------------------- the read model


def test_the_console_read_model_counts_and_filters_members(filled: Members) -> None:
    with filled.state() as state:
        db = state.db
        page = views.incident_page(db, views.IncidentFilter(), 1)
        assert {row.id: row.members for row in page.items} == {
            filled.leak: (("adherents", 18), ("retraites", 6)), filled.other: ()}
        for members, expected in (("*", [filled.leak]), ("retraites", [filled.leak]), ("nobody", [])):
            found = views.incident_page(db, views.IncidentFilter.from_query({"members": members}), 1)
            assert [row.id for row in found.items] == expected, members
        assert views.IncidentFilter.from_query({"members": "x' OR 1"}).members is None   # not a name: ignored
        assert views.IncidentFilter.from_query({"members": "*", "state": "active"}).to_query() == {
            "members": "*", "state": "active"}
        assert views.filter_choices(db).watchlists == ("adherents", "retraites")

        detail = views.incident_detail(db, filled.leak)
        assert detail is not None and detail.members == (("adherents", 18), ("retraites", 6))
        documents = [entry.document for entry in detail.timeline if entry.document]
        assert [d.members_text for d in documents] == [
            "12 of our members (watchlist adherents)",
            "18 of our members (watchlist adherents); 6 of our members (watchlist retraites)"]
        other = views.incident_detail(db, filled.other)
        assert other is not None and other.members == () and all(
            not e.document.members for e in other.timeline if e.document)

        board = views.dashboard(db, datetime.now(UTC))
        assert (board.watchlists, board.open_with_members) == (2, 1)
        assert board.open_members == (("adherents", 1, 18), ("retraites", 1, 6))


def test_a_closed_incident_leaves_the_dashboards_member_count(tmp_path: Path, filled: Members) -> None:
    """Triage on a copy of the state: the dashboard counts open (or acked) incidents only."""
    copy = tmp_path / DB_NAME
    with filled.state() as state:
        state.db.execute("VACUUM INTO ?", (str(copy),))
    with StateDB(copy) as state:
        triage_incident(state, filled.leak, "ack", "alice", None)
        assert views.dashboard(state.db, datetime.now(UTC)).open_with_members == 1
        triage_incident(state, filled.leak, "close", "alice", None)
        board = views.dashboard(state.db, datetime.now(UTC))
        assert (board.open_with_members, board.open_members) == (0, ())


# --------------------------------------------------------------------------- the pages


@pytest.fixture
async def console(filled: Members) -> AsyncIterator[str]:
    from watcher.web.app import start, stop

    async with await Store.open(filled.config.watcher.state_dir / DB_NAME) as store:
        runner, served = await start(filled.config, store)
        try:
            assert filled.config.web is not None
            yield filled.config.web.url.rstrip("/")
        finally:
            await stop(runner, served)


async def test_the_pages_show_the_members(filled: Members, console: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        assert (await sign_in(client, console)).status == 303
        texts = {}
        for path in ("/", "/incidents", "/incidents?members=%2A", "/incidents?members=retraites&state=active",
                     f"/incidents/{filled.leak}", f"/incidents/{filled.other}",
                     f"/incidents/{filled.leak}/export/misp", f"/incidents/{filled.leak}/export/stix"):
            async with client.get(f"{console}{path}") as answer:
                assert answer.status == 200, path
                texts[path] = await answer.text()
    for text in texts.values():
        assert_nothing_in_clear(text, filled)
    assert "open with our members" in texts["/"]
    assert 'href="/incidents?state=active&amp;members=retraites">watchlist retraites: 1 incident, 6 members' in texts["/"]
    listed = texts["/incidents"]
    assert "<th>Our members</th>" in listed and '<option value="*">with our members</option>' in listed
    assert ">18 adherents</span>" in listed and ">6 retraites</span>" in listed
    for path in ("/incidents?members=%2A", "/incidents?members=retraites&state=active"):
        assert "1 incident." in texts[path] and f'href="/incidents/{filled.leak}"' in texts[path]
        assert f'href="/incidents/{filled.other}"' not in texts[path]
    page = texts[f"/incidents/{filled.leak}"]
    assert "<strong>18</strong> of our members (watchlist adherents), distinct over every document" in page
    assert "Members: <strong>12 of our members (watchlist adherents)</strong>" in page
    assert "no member of a watchlist" in texts[f"/incidents/{filled.other}"]
    event = json.loads(texts[f"/incidents/{filled.leak}/export/misp"])["Event"]
    assert {'leak-watcher:watchlist="adherents"', 'leak-watcher:watchlist="retraites"'} <= {
        tag["name"] for tag in event["Tag"]}
    report = next(o for o in json.loads(texts[f"/incidents/{filled.leak}/export/stix"])["objects"]
                  if o["type"] == "report")
    assert report["leak_watcher_incident"]["watchlist_hits"] == {"adherents": 18, "retraites": 6}


# --------------------------------------------------------------------------- the exports


def _export(filled: Members, payload: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    if payload is None:
        with filled.state() as state:
            payload = incident_payload(state, filled.leak)
    assert payload is not None
    return export_from_payload(payload, installation=installation_namespace(filled.secret))


def test_the_misp_event_carries_a_tag_and_a_confidentiality_impact_per_watchlist(filled: Members) -> None:
    export = _export(filled)
    assert export.watchlist_hits == {"adherents": 18, "retraites": 6}
    assert [d.watchlist_hits for d in export.documents] == [{"adherents": 12}, {"adherents": 18, "retraites": 6}]
    text = render(export, "misp")
    assert_nothing_in_clear(text, filled)
    schema = json.loads((Path(pymisp.__file__).parent / "data" / "schema-lax.json").read_text())
    assert list(jsonschema.Draft4Validator(schema).iter_errors(json.loads(text))) == []
    event = MISPEvent()
    event.load(text)
    assert "18 of our members (watchlist adherents), 6 of our members (watchlist retraites)" in event.info
    tags = {tag.name for tag in event.tags}
    assert {'leak-watcher:watchlist="adherents"', 'leak-watcher:watchlist="retraites"'} <= tags
    impacts = {o.comment: {a.object_relation: a for a in o.attributes}
               for o in event.objects if o.name == "confidentiality-impact"}
    assert set(impacts) == {"watchlist adherents", "watchlist retraites"}
    adherents = impacts["watchlist adherents"]
    assert (adherents["record_count"].type, adherents["record_count"].value) == ("counter", "18")
    assert adherents["description"].value == "18 of our members (watchlist adherents): distinct over every document"
    assert (adherents["loss_type"].value, adherents["information_type"].value) == ("suspected-loss", "pii")
    assert [t.name for t in impacts["watchlist retraites"]["record_count"].tags] == [
        'leak-watcher:watchlist="retraites"']
    assert impacts["watchlist retraites"]["record_count"].value == "6"
    assert not any(a.to_ids for a in event.attributes) and not any(a.to_ids for o in event.objects for a in o.attributes)
    false_positive = MISPEvent()
    false_positive.load(render(replace(export, state="false-positive"), "misp"))
    assert {a.value for o in false_positive.objects if o.name == "confidentiality-impact" for a in o.attributes
            if a.object_relation == "loss_type"} == {"none"}
    comments = [o.comment for o in event.objects if o.name == "leaked-document"]
    assert comments[0].endswith("12 of our members (watchlist adherents)")
    assert comments[1].endswith("18 of our members (watchlist adherents), 6 of our members (watchlist retraites)")


def test_the_stix_bundle_declares_the_member_counts_and_stays_valid(filled: Members) -> None:
    export = _export(filled)
    text = render(export, "stix")
    assert_nothing_in_clear(text, filled)
    results = validate_string(text)
    assert results.is_valid and results.errors == [], text
    assert all("{103}" in str(w) for w in results.warnings), results.warnings      # uuid5 ids only
    objects = json.loads(text)["objects"]
    (extension,) = [o for o in objects if o["type"] == "extension-definition"]
    assert extension["version"] == "1.1.0" and "leak_watcher_watchlist_hits" in extension["extension_properties"]
    (report,) = [o for o in objects if o["type"] == "report"]
    assert report["leak_watcher_incident"]["watchlist_hits"] == {"adherents": 18, "retraites": 6}
    assert "Members: 18 of our members (watchlist adherents); 6 of our members (watchlist retraites)" \
        in report["description"]
    observed = [o for o in objects if o["type"] == "observed-data"]
    assert sorted(json.dumps(o["leak_watcher_watchlist_hits"]) for o in observed) == [
        '{"adherents": 12}', '{"adherents": 18, "retraites": 6}']
    assert all(o["extensions"] == {extension["id"]: {"extension_type": "toplevel-property-extension"}}
               for o in observed)


def test_the_json_export_and_an_alert_payload_alone(filled: Members) -> None:
    record = json.loads(render(_export(filled), "json"))
    assert record["watchlist_hits"] == {"adherents": 18, "retraites": 6}
    assert [d["watchlist_hits"] for d in record["documents"]] == [{"adherents": 12},
                                                                  {"adherents": 18, "retraites": 6}]
    with filled.state() as state:
        alert = [a for a in list_alerts(state) if a.incident_id == filled.leak][-1]
    assert alert.kind == "update"
    export = _export(filled, alert.payload)          # what the daemon's MISP push renders
    assert export.watchlist_hits == {"adherents": 18, "retraites": 6}
    assert [d.watchlist_hits for d in export.documents] == [{"adherents": 18, "retraites": 6}]
    for fmt in ("misp", "stix", "json"):
        assert_nothing_in_clear(render(export, fmt), filled)
    named = random_nir(random.Random(3), strict=True)          # a list an operator named after a NIR
    payload = {**alert.payload, "incident": {**alert.payload["incident"], "watchlist_hits": {named: 3, "empty": 0}}}
    for fmt in ("misp", "stix", "json"):
        text = render(_export(filled, payload), fmt)
        assert named not in text and "[NIR]" in text, fmt
    assert list(json.loads(render(_export(filled, payload), "json"))["watchlist_hits"].values()) == [3]
