"""Triage and suppression with a real daemon: what an analyst decides silences the next documents.

Each test runs the daemon in-process (`Daemon(..., once=True)`) over real fake sites on
127.0.0.1 (a paste site and a mirror), triages with the `watcher` command, publishes more
documents and runs the daemon again; the alerts table, the daemon's log and the incident's
triage log say what happened. Rules (watcher.alerts.incidents): closed = silent unless it
grows more severe than when it was closed (then reopened by `watcher`); false-positive =
silent; a suppressed content hash never alerts, on any source.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.e2e import Leaks, assert_no_clear_nir, cli, json_lines, listing_block, state_files, write_config
from tests.support.fakesites import PasteSite, serve
from tests.support.nirs import nir_forms

from watcher.config import load_config
from watcher.daemon import Daemon


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "analyst-a")


@pytest.fixture
async def mirror_site() -> AsyncIterator[PasteSite]:
    async with serve(PasteSite()) as site:
        yield site


@pytest.fixture
def config(tmp_path: Path, paste_site: PasteSite, mirror_site: PasteSite) -> Path:
    return write_config(
        tmp_path,
        listing_block("paste", paste_site.url("/archive"), paste_site.url("/raw/{id}")),
        listing_block("mirror", mirror_site.url("/archive"), mirror_site.url("/raw/{id}")),
    )


async def run_daemon(config: Path) -> None:
    assert await Daemon(load_config(config), once=True, workers=1).run() == 0


def watcher(*args: str, config: Path) -> str:
    done = cli(*args, "--config", str(config))
    assert done.rc == 0, done.err
    return done.out


def alerts(config: Path) -> list[dict]:
    return json_lines(watcher("alerts", "list", "--format", "json", config=config))


def incident(config: Path, number: int = 1) -> dict:
    [view] = json_lines(watcher("incidents", "show", str(number), "--format", "json", config=config))
    return view


def leak_text(nirs: list[str], extra: str = "") -> str:
    """A members' extract holding exactly `nirs` (one per line, spaced form), insurer MGEN."""
    lines = ["nom;nir;mutuelle"] + [f"NOM{i};{nir_forms(nir)['spaced']};MGEN" for i, nir in enumerate(nirs)]
    return "\n".join(lines) + f"\n{extra}\n"


def high_text(nirs: list[str], tag: str) -> str:
    """Fewer than 10 NIRs with an insurer named: a high finding."""
    return (f"Compte adhérent Harmonie Mutuelle récupéré ({tag}). Numéros de sécurité sociale (NIR) : "
            f"{', '.join(nirs)}. Garanties et tiers payant actifs.")


async def test_closing_silences_new_documents_until_the_incident_gets_worse(
        config: Path, paste_site: PasteSite, mirror_site: PasteSite, caplog: pytest.LogCaptureFixture) -> None:
    leaks = Leaks(seed=31)
    nirs = [leaks.nir() for _ in range(3)]
    paste_site.add_paste("p1", high_text(nirs, "first"), "compte adherent")
    await run_daemon(config)
    assert [(a["kind"], a["severity"]) for a in alerts(config)] == [("new", "high")]

    out = watcher("incidents", "close", "1", "--note", "known old leak, already notified", config=config)
    assert out.startswith("incident 1 closed by analyst-a at ") and "at severity high" in out
    assert incident(config)["state"] == "closed"

    # The same bytes on a new source (material: it would be an update): silent, logged.
    mirror_site.add_paste("m1", high_text(nirs, "first"), "repost")
    caplog.set_level(logging.INFO, logger="watcher.alerts.incidents")
    await run_daemon(config)
    assert len(alerts(config)) == 1
    assert "incident closed (at severity high" in caplog.text
    view = incident(config)
    assert [(d["source"], d["alert"]) for d in view["timeline"]][1] == ("mirror", None)

    # Worse than when it was closed: 12 NIRs holding the 3 makes it critical. It reopens, alerts.
    mirror_site.add_paste("m2", leak_text(nirs + [leaks.nir() for _ in range(9)]), "full dump")
    await run_daemon(config)
    listed = alerts(config)
    assert [(a["kind"], a["severity"], a["incident_state"]) for a in listed] == [
        ("new", "high", "open"), ("update", "critical", "open")]
    assert listed[1]["payload"]["incident"]["state"] == "open"
    assert "severity high -> critical" in listed[1]["payload"]["changes"]
    view = incident(config)
    assert view["state"] == "open"
    assert [(t["action"], t["who"]) for t in view["triage"]] == [("close", "analyst-a"), ("reopen", "watcher")]
    assert "closed at severity high, now critical" in view["triage"][1]["note"]
    assert "reopened: closed at severity high, now critical" in caplog.text


async def test_a_false_positive_stays_silent_even_when_it_grows(
        config: Path, paste_site: PasteSite, mirror_site: PasteSite, caplog: pytest.LogCaptureFixture) -> None:
    leaks = Leaks(seed=32)
    nirs = [leaks.nir() for _ in range(3)]
    paste_site.add_paste("p1", high_text(nirs, "test data"), "fixtures")
    await run_daemon(config)
    watcher("incidents", "false-positive", "1", "--by", "analyst-b", "--note", "our own test data", config=config)

    mirror_site.add_paste("m1", leak_text(nirs + [leaks.nir() for _ in range(9)]), "more test data")
    caplog.set_level(logging.INFO, logger="watcher.alerts.incidents")
    await run_daemon(config)
    assert [a["kind"] for a in alerts(config)] == ["new"]
    assert "incident marked false-positive" in caplog.text
    view = incident(config)
    assert (view["state"], view["severity"], len(view["timeline"])) == ("false-positive", "critical", 2)
    assert [(t["action"], t["who"], t["note"]) for t in view["triage"]] == [
        ("false-positive", "analyst-b", "our own test data")]
    findings = json_lines(watcher("findings", "--format", "json", config=config))
    assert {(f["incident_id"], f["incident_state"]) for f in findings} == {(1, "false-positive")}
    assert "incident #1 (false-positive)" in watcher("findings", config=config)


async def test_a_suppressed_document_never_alerts_again_on_any_source(
        config: Path, paste_site: PasteSite, mirror_site: PasteSite, caplog: pytest.LogCaptureFixture) -> None:
    leaks = Leaks(seed=33)
    benign = leak_text([leaks.nir() for _ in range(12)], "published sample")
    paste_site.add_paste("p1", benign, "sample")
    await run_daemon(config)
    [alert] = alerts(config)
    sha256 = alert["payload"]["sha256"]
    out = watcher("suppress", "sha256", sha256.upper(), "--note", "vendor's published sample", config=config)
    assert out == f"sha256 {sha256} suppressed (incident 1): it never alerts again\n"

    # The same bytes on another source (an update otherwise), and a bigger repost: only the
    # repost (other bytes, not suppressed) alerts.
    mirror_site.add_paste("m1", benign, "sample again")
    caplog.set_level(logging.INFO, logger="watcher.alerts.incidents")
    await run_daemon(config)
    assert len(alerts(config)) == 1
    assert f"document sha256 {sha256[:12]} suppressed" in caplog.text
    assert [t["action"] for t in incident(config)["triage"]] == ["suppress"]

    [listed] = json_lines(watcher("suppress", "list", "--format", "json", config=config))
    assert (listed["kind"], listed["value"], listed["incident_id"], listed["who"]) == ("sha256", sha256, 1, "analyst-a")
    assert watcher("suppress", "remove", "sha256", sha256, config=config) == f"sha256 {sha256}: suppression removed\n"
    assert json_lines(watcher("suppress", "list", "--format", "json", config=config)) == []


async def test_a_suppressed_incident_never_alerts_whatever_joins_it(
        config: Path, paste_site: PasteSite, mirror_site: PasteSite) -> None:
    leaks = Leaks(seed=34)
    nirs = [leaks.nir() for _ in range(12)]
    paste_site.add_paste("p1", leak_text(nirs), "dump")
    await run_daemon(config)
    watcher("suppress", "incident", "1", config=config)
    mirror_site.add_paste("m1", leak_text(nirs + [leaks.nir() for _ in range(30)], "bigger"), "bigger dump")
    await run_daemon(config)
    assert len(alerts(config)) == 1
    view = incident(config)
    assert view["nirs"] == 42 and view["suppressed"] == [{"kind": "incident", "value": "1"}]
    assert "Incident #1: CRITICAL, open, suppressed" in watcher("incidents", "show", "1", config=config)


async def test_an_acked_incident_still_alerts_when_it_grows(
        config: Path, paste_site: PasteSite, mirror_site: PasteSite) -> None:
    leaks = Leaks(seed=35)
    nirs = [leaks.nir() for _ in range(12)]
    paste_site.add_paste("p1", leak_text(nirs), "dump")
    await run_daemon(config)
    watcher("incidents", "ack", "1", config=config)
    mirror_site.add_paste("m1", leak_text(nirs, "mirror"), "mirror")
    await run_daemon(config)
    listed = alerts(config)
    assert [(a["kind"], a["incident_state"]) for a in listed] == [("new", "acked"), ("update", "acked")]
    assert listed[1]["payload"]["incident"]["state"] == "acked"
    assert listed[1]["payload"]["changes"] == ["+1 document on mirror"]
    record = json.loads((config.parent / "state" / "alerts.jsonl").read_text().splitlines()[-1])
    assert record["incident_state"] == "acked" and record["sha256"] == listed[1]["payload"]["sha256"]


async def test_the_triage_note_is_masked(config: Path, paste_site: PasteSite) -> None:
    leaks = Leaks(seed=36)
    paste_site.add_paste("p1", leak_text([leaks.nir() for _ in range(12)]), "dump")
    await run_daemon(config)
    pasted = leaks.nir()
    for form in ("spaced", "compact"):
        watcher("incidents", "ack", "1", "--note", f"victim {nir_forms(pasted)[form]} called", config=config)
    watcher("suppress", "incident", "1", "--note", f"see {pasted}", config=config)
    shown = watcher("incidents", "show", "1", "--format", "json", config=config)
    notes = [t["note"] for t in json.loads(shown)["triage"]]
    assert len(notes) == 3 and all(pasted[:5] not in note for note in notes)
    assert all("victim" in note or "see" in note for note in notes)
    with sqlite3.connect(config.parent / "state" / "watcher.db") as db:
        stored = db.execute("SELECT note FROM triage UNION ALL SELECT note FROM suppressions").fetchall()
    assert len(stored) == 4
    assert_no_clear_nir(leaks.nirs, {"show": shown.encode(), **state_files(config.parent / "state")})


async def test_triage_errors(config: Path, paste_site: PasteSite) -> None:
    paste_site.add_paste("p1", leak_text([random_nir_for(37)]), "dump")
    await run_daemon(config)
    for args, message in [
        (("incidents", "close", "9"), "no incident 9"),
        (("incidents", "close"), "give an incident number"),
        (("incidents", "ack", "x1"), "is not an incident number"),
        (("suppress", "sha256", "abc"), "is not a sha256"),
        (("suppress", "incident", "9"), "no incident 9"),
        (("suppress", "remove", "sha256"), "give sha256 HEX or incident ID"),
    ]:
        done = cli(*args, "--config", str(config))
        assert done.rc == 2 and message in done.err, (args, done.err)


def random_nir_for(seed: int) -> str:
    return Leaks(seed).nir()

