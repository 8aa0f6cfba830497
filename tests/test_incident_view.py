"""`watcher incidents show` and `export`, `findings` text, `--since` on every list, plurals.

The state is a real StateDB recorded through the real incident policy with a settable clock
(so `--since` has something to cut); exports are written by the command and validated by
their own libraries (pymisp loads the event back, the STIX 2.1 validator passes the bundle).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymisp import MISPEvent
from stix2validator import validate_string
from tests.support.e2e import cli, json_lines
from tests.support.receivers import T0, Clock, leak

from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.privacy import load_or_create_secret
from watcher.store import ItemRecord, StateDB

POLICY = IncidentPolicy(AlertSettings())


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Incident 1: a dump on `paste` (day 0), the same bytes on `onion` (day 2, a Tor source),
    a bigger repost on `forum` (day 5, posted day 4). Incident 2: one low finding (day 6)."""
    path = tmp_path / "sources.toml"
    path.write_text('[watcher]\nstate_dir = "state"\n\n[tor]\nsocks = "127.0.0.1:9"\n\n'
                    '[[sources]]\nname = "onion"\nkind = "listing"\nurl = "http://abcdefgh.onion/archive"\n'
                    'item_links = "a"\ntor = true\n', encoding="utf-8")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    load_or_create_secret(state_dir / "secret.key")
    clock = Clock()
    with StateDB(state_dir / "watcher.db", clock=clock) as state:
        for source in ("paste", "onion", "forum", "board"):
            state.upsert_source(source, "listing")
        state.record_item("paste", "p1", "1", "https://paste.example/p1", "dump", leak(range(25)), alert=POLICY)
        clock.advance(days=2)
        state.record_item("onion", "o1", "1", "http://abcdefgh.onion/o1", "mirror", leak(range(25)), alert=POLICY)
        clock.advance(days=3)
        state.record_items([ItemRecord("forum", "t1", "1", "https://forum.example/t1", "full dump",
                                       leak(range(60), tag="full"), posted_at="2026-12-02T10:00:00Z")],
                           alert=POLICY)
        clock.advance(days=1)
        state.record_item("board", "b1", "1", "https://board.example/b1", "mention", leak([], tag="low"),
                          alert=POLICY)
    return path


def watcher(*args: str, config: Path, rc: int = 0) -> str:
    done = cli(*args, "--config", str(config))
    assert done.rc == rc, done.err
    return done.out if rc == 0 else done.err


def test_show_gives_the_incident_and_its_timeline(config: Path) -> None:
    out = watcher("incidents", "show", "1", config=config)
    lines = out.splitlines()
    assert lines[0] == "Incident #1: CRITICAL, open"
    assert "Documents: 3 documents (2 distinct contents) on 3 sources: paste, onion, forum" in out
    assert "NIRs: ~60 distinct" in out and "Insurers: Viamedis" in out
    assert "First seen: 2026-11-28T16:40:00Z" in out and "First posted: 2026-12-02T10:00:00Z" in out
    assert "Last seen: 2026-12-03T16:40:00Z" in out and "Alerts: 3 alerts, 0 sent or logged" in out
    timeline = [line for line in lines if line[:6].strip().rstrip(".").isdigit()]
    assert [line.split()[2] for line in timeline] == ["2026-11-28T16:40:00Z", "2026-11-30T16:40:00Z",
                                                      "2026-12-03T16:40:00Z"]
    assert [line.split()[4] for line in timeline] == ["-", "-", "2026-12-02T10:00:00Z"]      # post dates
    assert [line.split()[6] for line in timeline] == ["paste", "onion", "forum"]
    assert "alert 1 (new, pending)" in out and "alert 3 (update, pending)" in out
    assert "https://forum.example/t1" in out and "full dump" in out and "25 NIRs; sha256 " in out
    assert lines[-2:] == ["Triage log:", "  (none)"]

    [view] = json_lines(watcher("incidents", "show", "1", "--format", "json", config=config))
    assert [(d["source"], d["alert"] and d["alert"]["kind"]) for d in view["timeline"]] == [
        ("paste", "new"), ("onion", "update"), ("forum", "update")]
    assert view["timeline"][2]["counts"] == {"nir": 60} and view["state"] == "open"
    assert watcher("incidents", "show", "7", config=config, rc=2) == "watcher: error: no incident 7 (see `watcher incidents`)\n"


def test_an_update_alert_tells_its_own_document_and_what_changed(config: Path) -> None:
    _, onion, forum = json_lines(watcher("alerts", "list", "--format", "json", config=config))
    assert onion["payload"]["first_seen"] == "2026-11-30T16:40:00Z"        # the document's, not the incident's
    assert onion["payload"]["changes"] == ["+1 document on onion"]
    assert forum["payload"]["changes"] == ["+1 document on forum", "NIRs ~25 -> ~60"]
    out = watcher("alerts", "show", str(forum["id"]), config=config)
    assert "First seen: 2026-12-03T16:40:00Z (this document; the incident 2026-11-28T16:40:00Z)" in out
    assert "Posted: 2026-12-02T10:00:00Z" in out and "What changed: +1 document on forum; NIRs ~25 -> ~60" in out
    assert "Incident: #1, ~60 distinct NIRs, 3 sources (paste, onion, forum), 3 documents" in out


def test_findings_text_names_ids_incidents_and_mirrors(config: Path) -> None:
    out = watcher("findings", config=config)
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["CRITICAL", "finding", "#1", "incident", "#1", "(open)"]
    assert "25 NIRs" in lines[0] and "https://paste.example/p1" in lines[0]
    assert "also seen at 1 other place:" in out and "onion  http://abcdefgh.onion/o1" in out
    low = next(line for line in lines if line.startswith("LOW"))
    assert "finding #3  incident #2 (open)  0 NIRs" in low
    assert "1 NIRs" not in out and "other places" not in out


def test_since_filters_every_list(config: Path) -> None:
    def ids(*args: str) -> list[int]:
        return [row["id"] for row in json_lines(watcher(*args, "--format", "json", config=config))]

    assert ids("findings", "--since", "2026-12-01") == [2, 3]
    assert ids("findings", "--since", "2026-12-04T00:00:00Z") == [3]
    assert ids("alerts", "list", "--since", "2026-11-29") == [2, 3]
    assert ids("alerts", "list", "--since", "2026-12-01") == [3]
    assert ids("incidents", "--since", "2026-12-04") == [2]           # seen since: the low one only
    assert ids("incidents", "--since", "2026-12-03T16:40:00Z") == [1, 2]
    assert ids("incidents", "--since", "1d") == []                     # the state is from 2026
    assert "--since 'soon'" in watcher("alerts", "list", "--since", "soon", config=config, rc=2)


def test_plurals(config: Path) -> None:
    watcher("incidents", "ack", "2", "--by", "a", config=config)
    out = watcher("incidents", "show", "2", config=config)
    assert "Documents: 1 document (1 distinct content) on 1 source: board" in out
    assert "Alerts: 0 alerts" in out
    assert " 1 documents" not in out and "(s)" not in out
    assert "State: pending after 0 attempts, accepted by 0 targets" in watcher("alerts", "show", "1", config=config)


@pytest.mark.parametrize("fmt", ["misp", "stix", "json"])
def test_export_writes_a_valid_file_and_never_overwrites_without_force(config: Path, fmt: str) -> None:
    watcher("incidents", "close", "1", "--by", "a", config=config)
    out = config.parent / f"incident.{fmt}.json"
    err = cli("incidents", "export", "1", "--format", fmt, "--tlp", "tlp:green", "--out", str(out),
              "--config", str(config)).err
    assert err == f"incident 1 exported as {fmt} to {out}\n"
    text = out.read_text(encoding="utf-8")
    if fmt == "misp":
        event = MISPEvent()
        event.load(text)
        assert "tlp:green" in {tag.name for tag in event.tags}
        assert len([o for o in event.objects if o.name == "leaked-document"]) == 3
    elif fmt == "stix":
        results = validate_string(text)
        assert results.is_valid, [str(e) for e in results.errors]
        objects = json.loads(text)["objects"]
        assert any(o["type"] == "report" for o in objects)
    else:
        data = json.loads(text)
        assert (data["schema"], data["incident_id"], data["state"]) == ("leak-watcher/incident/1", 1, "closed")
        assert {d["source"]: d["tor"] for d in data["documents"]} == {"paste": False, "onion": True, "forum": False}

    out.write_text("kept", encoding="utf-8")
    refused = watcher("incidents", "export", "1", "--format", fmt, "--out", str(out), config=config, rc=2)
    assert "exists: give --force" in refused and out.read_text() == "kept"
    cli("incidents", "export", "1", "--format", fmt, "--out", str(out), "--force", "--config", str(config))
    assert out.read_text(encoding="utf-8") != "kept"


def test_export_needs_a_format_and_reads_only(config: Path) -> None:
    db = config.parent / "state" / "watcher.db"
    before = db.stat().st_mtime_ns
    assert "give --format misp|stix|json" in watcher("incidents", "export", "1", config=config, rc=2)
    assert "no incident 9" in watcher("incidents", "export", "9", "--format", "json", config=config, rc=2)
    assert json.loads(watcher("incidents", "export", "1", "--format", "json", config=config))
    assert "'tlp:purple'" in watcher("incidents", "export", "1", "--format", "stix", "--tlp", "tlp:purple",
                                     config=config, rc=2)
    assert db.stat().st_mtime_ns == before


def test_an_acked_incident_exports_as_acknowledged(config: Path) -> None:
    watcher("incidents", "ack", "1", "--by", "a", config=config)
    data = json.loads(watcher("incidents", "export", "1", "--format", "json", config=config))
    assert data["state"] == "acknowledged" and data["first_seen"] == T0.strftime("%Y-%m-%dT%H:%M:%SZ")
