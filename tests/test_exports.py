"""Incident exports (MISP, STIX 2.1, JSON) of an incident made by the real alerts code path,
checked by the formats' own libraries: no cleartext NIR anywhere, the same ids at every export."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pymisp
import pytest
from pymisp import MISPEvent
from stix2validator import validate_string

from tests.support.nirs import nir_forms, random_nir
from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.alerts.records import list_alerts
from watcher.analyze import Analyzer
from watcher.detect import Scanner
from watcher.exports import (
    FORMATS,
    export_from_payload,
    incident_payload,
    installation_namespace,
    render,
)
from watcher.exports.jsonexport import SCHEMA, incident_record
from watcher.exports.misp import misp_event
from watcher.privacy import Fingerprinter
from watcher.store import ItemRecord, StateDB

SECRET = b"s" * 32
INSTALLATION = installation_namespace(SECRET)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 16, 40, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Incident:
    state: StateDB
    incident_id: int
    nirs: list[str]             # every NIR of the documents, in clear: none may leak


def _document(nirs: list[str], rng: random.Random) -> bytes:
    rows = ["nom;prenom;nir;email;organisme"]
    rows += [f"Nom{i};Prenom{i};{value};user{rng.randrange(10**6)}@example.org;Viamedis"
             for i, value in enumerate(nirs)]
    return "\n".join(rows).encode()


@pytest.fixture
def incident(tmp_path: Path, scanner: Scanner) -> Incident:
    """An incident of two documents: a leak on a paste site whose URL and title carry a NIR and
    markup, and a bigger repost on a forum (it joins the incident and raises an update)."""
    rng = random.Random(1414)
    nirs = list(dict.fromkeys(random_nir(rng, strict=True) for _ in range(70)))
    analyzer = Analyzer(scanner, fingerprinter=Fingerprinter(SECRET))
    clock = Clock()
    state = StateDB(tmp_path / "watcher.db", clock=clock)
    state.upsert_source("pastes", "listing")
    state.upsert_source("board", "forum")
    policy = IncidentPolicy(AlertSettings())
    first = analyzer.analyze_bytes(_document(nirs[:40], rng), "leak.csv")
    hostile = ItemRecord("pastes", "p1", "1", f"https://paste.example/raw?nir={nirs[0]}&x=1",
                         f"<script>alert(1)</script> NIR {nir_forms(nirs[1])['spaced']} fichier", first,
                         posted_at="2026-11-27T08:00:00Z")
    assert state.record_items([hostile], alert=policy)[0].alert is not None
    clock.now += timedelta(hours=3)
    repost = analyzer.analyze_bytes(_document(nirs, rng), "dump.csv")
    state.record_items([ItemRecord("board", "t9", "1", "https://board.example/t/9", "dump complet", repost,
                                   posted_at="2026-11-28T12:00:00Z")], alert=policy)
    (incident_id,) = state.db.execute("SELECT DISTINCT incident_id FROM incident_findings").fetchone()
    yield Incident(state, incident_id, nirs)
    state.close()


def _export(incident: Incident, installation: uuid.UUID = INSTALLATION):
    payload = incident_payload(incident.state, incident.incident_id, tor_sources={"board"})
    assert payload is not None
    return export_from_payload(payload, installation=installation)


def _assert_no_nir(text: str, nirs: list[str]) -> None:
    for value in nirs:
        for form, written in nir_forms(value).items():
            assert written not in text, f"a NIR ({form} form) in the export"


# --------------------------------------------------------------------------- the model


def test_the_export_holds_the_incident_and_both_documents(incident: Incident) -> None:
    export = _export(incident)
    assert export.incident_id == incident.incident_id
    assert export.severity == "critical" and export.state == "open"
    assert export.nirs == 70 and export.counts["nir"] == 70
    assert export.insurers == ("Viamedis",)
    assert export.first_posted == "2026-11-27T08:00:00Z"
    assert export.first_seen == "2026-11-28T16:40:00Z" and export.last_seen == "2026-11-28T19:40:00Z"
    assert [(d.source, d.source_kind, d.tor) for d in export.documents] == [
        ("pastes", "listing", False), ("board", "forum", True)]
    hashes = {row[0] for row in incident.state.db.execute("SELECT sha256 FROM findings")}
    assert {d.sha256 for d in export.documents} == hashes and len(hashes) == 2
    hostile = export.documents[0]
    assert "[NIR]" in (hostile.url or "") and "[NIR]" in (hostile.title or "")
    assert (hostile.title or "").startswith("<script>")     # markup is text: escaping is the viewer's job


def test_an_alert_payload_alone_is_enough(incident: Incident) -> None:
    """The latest alert's payload (what the outbox holds) exports without the database."""
    alert = list_alerts(incident.state)[-1]
    assert alert.kind == "update"
    export = export_from_payload(alert.payload, installation=INSTALLATION)
    assert export.incident_id == incident.incident_id and export.nirs == 70
    assert [d.source for d in export.documents] == ["board"]
    for fmt in FORMATS:
        _assert_no_nir(render(export, fmt), incident.nirs)


def test_an_unknown_incident_and_a_payload_without_one(incident: Incident) -> None:
    assert incident_payload(incident.state, 999) is None
    with pytest.raises(ValueError, match="no incident"):
        export_from_payload({"counts": {"nir": 3}}, installation=INSTALLATION)


# --------------------------------------------------------------------------- the formats


def test_misp_event_loads_back_and_matches_the_schema(incident: Incident) -> None:
    export = _export(incident)
    text = render(export, "misp")
    _assert_no_nir(text, incident.nirs)
    schema = json.loads((Path(pymisp.__file__).parent / "data" / "schema-lax.json").read_text())
    assert list(jsonschema.Draft4Validator(schema).iter_errors(json.loads(text))) == []

    event = MISPEvent()
    event.load(text)
    assert event.uuid == export.uuid("misp", "event")
    assert event.info.startswith(f"leak-watcher incident #{incident.incident_id}: CRITICAL, ~70 NIRs, Viamedis")
    assert int(event.threat_level_id) == 1 and int(event.analysis) == 0 and not event.published
    tags = {tag.name for tag in event.tags}
    assert tags == {"tlp:amber", 'infoleak:submission="crawler"', 'infoleak:source="pastie-website"',
                    'infoleak:source="electronic-forum"', 'infoleak:automatic-detection="mail"'}
    values = {(a.type, a.value) for a in event.attributes}
    assert ("counter", "70") in values and ("target-org", "Viamedis") in values
    assert [a.type for a in event.attributes].count("counter") == 1     # MISP refuses two of one value
    others = [a.value for a in event.attributes if a.value.startswith("identifiers counted: ")]
    assert len(others) == (1 if any(n for k, n in export.counts.items() if k != "nir") else 0), others
    assert not any(a.to_ids for a in event.attributes)
    files = [o for o in event.objects if o.name == "file"]
    documents = [o for o in event.objects if o.name == "leaked-document"]
    assert {o.get_attributes_by_relation("sha256")[0].value for o in files} == {d.sha256 for d in export.documents}
    assert len(documents) == 2 and all(not a.to_ids for o in event.objects for a in o.attributes)
    urls = [o.get_attributes_by_relation("url")[0].value for o in documents]
    assert urls[1] == "https://board.example/t/9" and "[NIR]" in urls[0]
    assert {ref.referenced_uuid for o in documents for ref in o.references} == {o.uuid for o in files}


def test_stix_bundle_is_valid_stix_2_1(incident: Incident) -> None:
    export = _export(incident)
    text = render(export, "stix")
    _assert_no_nir(text, incident.nirs)
    results = validate_string(text)
    assert results.is_valid, text
    assert results.errors == []
    warnings = [str(warning) for warning in results.warnings]
    assert warnings and all("{103}" in w and "UUIDv4" in w for w in warnings), warnings  # uuid5 ids, on purpose

    objects = {o["id"]: o for o in json.loads(text)["objects"]}
    report = objects[f"report--{export.uuid('stix', 'report')}"]
    assert report["published"] == "2026-11-28T19:40:00Z"
    assert report["labels"] == ["leak-watcher", "severity:critical", "state:open"]
    assert report["leak_watcher_incident"]["counts"]["nir"] == 70
    assert set(report["object_refs"]) <= set(objects)
    insurers = [o for o in objects.values() if o["type"] == "identity" and o["identity_class"] == "organization"]
    assert [(o["name"], o["sectors"]) for o in insurers] == [("Viamedis", ["healthcare", "insurance"])]
    files = [o for o in objects.values() if o["type"] == "file"]
    assert {o["hashes"]["SHA-256"] for o in files} == {d.sha256 for d in export.documents}
    observed = [o for o in objects.values() if o["type"] == "observed-data"]
    assert len(observed) == 2 and all(o["id"] in report["object_refs"] for o in observed)
    urls = sorted(o["value"] for o in objects.values() if o["type"] == "url")
    assert urls == ["https://board.example/t/9", "https://paste.example/raw?nir=%5BNIR%5D&x=1"]
    assert all(o["object_marking_refs"] == ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]
               for o in objects.values() if o["type"] in ("report", "observed-data", "identity"))


def test_json_export_is_versioned_and_keeps_masked_samples(incident: Incident) -> None:
    export = _export(incident)
    text = render(export, "json")
    _assert_no_nir(text, incident.nirs)
    record = json.loads(text)
    assert record["schema"] == SCHEMA == "leak-watcher/incident/1"
    assert record == incident_record(export)
    assert record["incident_id"] == incident.incident_id and record["nirs"] == 70
    assert record["samples"] and all("\u2022" in sample for sample in record["samples"])
    assert [d["source"] for d in record["documents"]] == ["pastes", "board"]
    assert set(record["documents"][0]) == {"source", "source_kind", "url", "title", "sha256", "size",
                                           "posted_at", "first_seen", "severity", "tor", "watchlist_hits"}
    assert record["watchlist_hits"] == {} and record["documents"][0]["watchlist_hits"] == {}   # no list here


# --------------------------------------------------------------------------- ids, options


def test_exports_are_deterministic_per_installation(incident: Incident) -> None:
    for fmt in FORMATS:
        assert render(_export(incident), fmt) == render(_export(incident), fmt), fmt
    other = _export(incident, installation_namespace(b"t" * 32))
    assert misp_event(other).uuid != misp_event(_export(incident)).uuid
    assert json.loads(render(other, "json"))["id"] != json.loads(render(_export(incident), "json"))["id"]


def test_tlp_and_triage_state(incident: Incident) -> None:
    export = replace(_export(incident), state="false-positive")
    event = MISPEvent()
    event.load(render(export, "misp", tlp="tlp:red"))
    tags = {tag.name for tag in event.tags}
    assert "tlp:red" in tags and "tlp:amber" not in tags and 'infoleak:confirmed="false-positive"' in tags
    assert int(event.analysis) == 2
    bundle = json.loads(render(export, "stix", tlp="tlp:red"))
    assert any(o["type"] == "marking-definition" and o.get("name") == "TLP:RED" for o in bundle["objects"])
    with pytest.raises(ValueError):
        render(export, "misp", tlp="amber")
    with pytest.raises(ValueError, match="not a TLP tag"):
        render(export, "misp", tlp="tlp:purple")
    with pytest.raises(ValueError):
        render(export, "stix", tlp="tlp:amber+strict")
    with pytest.raises(ValueError, match="unknown export format"):
        render(export, "thehive")


def test_an_acknowledged_incident_exports_as_acknowledged_whoever_renders_it(incident: Incident) -> None:
    """The store records `acked`; every export (the CLI's, the console's, the MISP push's,
    which all build from the stored payload) says `acknowledged`: MISP analysis ongoing (1)."""
    from watcher.alerts.misp_push import misp_body

    payload = incident_payload(incident.state, incident.incident_id, tor_sources={"board"})
    assert payload is not None
    payload["state"] = "acked"
    assert export_from_payload(payload, installation=INSTALLATION).state == "acknowledged"
    _, body = misp_body(payload, b"k" * 32, tlp="tlp:amber", distribution=0)
    assert int(json.loads(body)["Event"]["analysis"]) == 1


def test_importing_the_exports_does_not_import_pymisp_or_stix2() -> None:
    code = ("import sys, watcher.exports, watcher.exports.misp, watcher.exports.stix, watcher.exports.jsonexport; "
            "print(sorted(m for m in ('pymisp', 'stix2', 'stix2validator') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.stdout.strip() == "[]"
