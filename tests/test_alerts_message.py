"""Alert titles, bodies, digests and JSONL records: the contract and no cleartext identifier."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.receivers import nir

from watcher.alerts import digest_message, jsonl_record, render
from watcher.alerts.message import finding_title
from watcher.alerts.records import Alert

CLEAR = nir(4242)


def payload(**changes: Any) -> dict[str, Any]:
    base = {
        "source": "some-forum", "url": "https://forum.example/t/1", "item_id": "t1",
        "item_title": "fichier adherents 2024", "first_seen": "2026-11-28T16:40:00Z",
        "reasons": ["25 valid NIRs in a CSV extract", "insurer Viamedis named"],
        "counts": {"nir": 25, "email": 3}, "insurers": ["Viamedis"], "records": 30,
        "samples": ["nir 1 84 12 \u2022\u2022 \u2022\u2022\u2022 \u2022\u2022\u2022 \u2022\u2022"], "changes": [],
        "incident": {"id": 7, "nirs": 25, "sources": ["some-forum"], "findings": 1},
    }
    return {**base, **changes}


def alert(kind: str = "new", severity: str = "critical", **changes: Any) -> Alert:
    data = payload(**changes)
    return Alert(
        id=12, alert_id="0123456789abcdef0123456789abcdef", kind=kind, severity=severity, incident_id=7,
        finding_id=3, source=data["source"], title=finding_title(severity, kind, data),
        tags=(severity, "leak"), payload=data, state="pending", tries=0, next_try="2026-11-28T16:40:00Z",
        last_error=None, delivered_to=frozenset(), created_at="2026-11-28T16:40:00Z", emitted_at=None,
        sent_at=None, acked_at=None,
    )


def test_title_format() -> None:
    expected = "[CRITICAL] 25 NIRs, Viamedis - some-forum: fichier adherents 2024"
    assert finding_title("critical", "new", payload()) == expected
    assert finding_title("high", "new", payload(counts={"nir": 1})).startswith("[HIGH] 1 NIR, Viamedis - ")
    assert finding_title("high", "update", payload()).startswith("[HIGH] update: 25 NIRs")


def test_title_without_nirs_says_records_or_the_first_reason() -> None:
    assert finding_title("high", "new", payload(counts={}, records=120)).startswith("[HIGH] 120 records, ")
    title = finding_title("low", "new", payload(counts={}, records=None, insurers=[]))
    assert title == "[LOW] 25 valid NIRs in a CSV extract - some-forum: fichier adherents 2024"


def test_title_truncates_insurers_and_flattens_hostile_titles() -> None:
    many = ["Viamedis", "Almerys", "Harmonie Mutuelle", "MGEN", "Malakoff Humanis"]
    hostile = "dump\n[CRITICAL] fake line\u2028 " + CLEAR + " " + "x" * 300
    title = finding_title("critical", "new", payload(insurers=many, item_title=hostile))
    assert "Viamedis, Almerys, Harmonie Mutuelle +2" in title
    assert "\n" not in title and "\u2028" not in title and CLEAR not in title
    assert len(title) < 200 and title.endswith("\u2026")


def test_body_has_the_facts_and_no_cleartext_identifier() -> None:
    planted = alert(samples=[f"nir {CLEAR}"], item_title=f"leak {CLEAR}", reasons=[f"found {CLEAR}"])
    message = render(planted)
    for expected in ("Source: some-forum", "URL: https://forum.example/t/1", "First seen: 2026-11-28T16:40:00Z",
                     "Counts: nir 25, email 3", "Insurers: Viamedis", "Records: 30", "incident #7",
                     "Alert ID: 0123456789abcdef0123456789abcdef", "watcher alerts show 12"):
        assert expected in message.body
    assert CLEAR not in message.body + message.title
    assert not re.search(r"\d{13}", message.body)


def test_digest_lists_each_alert_with_its_ids() -> None:
    message = digest_message([alert(severity="medium"), alert(severity="low")])
    assert message.title == "[DIGEST] 2 alerts: 1 MEDIUM, 1 LOW"
    assert message.body.count("Alert ID: 0123456789abcdef0123456789abcdef") == 2


def test_jsonl_record_has_the_contract_keys() -> None:
    record = jsonl_record(alert(samples=[f"nir {CLEAR}"]))
    for key in ("alert_id", "incident_id", "severity", "source", "url", "title", "reasons", "counts",
                "insurers", "records", "samples", "first_seen", "first_posted", "kind"):
        assert key in record
    assert record["kind"] == "new" and record["first_seen"] == "2026-11-28T16:40:00Z"
    assert CLEAR not in json.dumps(record)


def test_first_posted_beside_first_seen_in_the_body_and_the_jsonl() -> None:
    dated = alert(first_posted="2026-11-20T08:00:00Z")
    assert ("First seen: 2026-11-28T16:40:00Z\nFirst posted: 2026-11-20T08:00:00Z (the post's own date)"
            in render(dated).body)
    assert jsonl_record(dated)["first_posted"] == "2026-11-20T08:00:00Z"
    assert "First posted" not in render(alert()).body and jsonl_record(alert())["first_posted"] is None
    tampered = alert(first_posted=f"2026 {CLEAR}\n[CRITICAL] fake")       # a payload not written by the store
    assert CLEAR not in render(tampered).body + json.dumps(jsonl_record(tampered))
    assert "\n[CRITICAL] fake" not in render(tampered).body
