"""The MISP push: an incident's event sent through the outbox to a MISP stand-in over real TLS,
which loads every event with pymisp; added once, edited on updates, never duplicated."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from tests.support.configs import line_of, write
from tests.support.receivers import MISP_KEY, NIR_RUN, Clock, MispReceiver, leak, nir, settings

from watcher.alerts import AlertSender, AlertSettings, alert_settings, load_targets, probe_message, send
from watcher.alerts.records import list_alerts
from watcher.alerts.settings import MispSettings
from watcher.config import ConfigError, load_config
from watcher.privacy import load_or_create_secret
from watcher.report import Report
from watcher.store import StateDB, Store



def with_misp(tmp_path: Path, receiver: MispReceiver, **values: object) -> AlertSettings:
    key_file = tmp_path / "state" / "secret.key"
    load_or_create_secret(key_file)
    misp = MispSettings(url=receiver.url(), key=MISP_KEY, ca_file=receiver.ca.ca_file, secret_file=key_file,
                        timeout=10.0)
    return replace(settings(tmp_path), misp=replace(misp, **values))  # type: ignore[arg-type]


async def found(store: Store, sender: AlertSender, source: str, item: str, report: Report) -> int:
    result = await store.call(StateDB.record_item, source, item, "1", f"https://{source}.example/{item}",
                              f"dump {item}", report, alert=sender.policy)
    assert result.alert is not None
    return result.alert


async def test_an_incident_is_added_then_edited_as_one_event(
        tmp_path: Path, store: Store, clock: Clock, misp_receiver: MispReceiver) -> None:
    sender = AlertSender(store, with_misp(tmp_path, misp_receiver), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()
    [event] = misp_receiver.events.values()
    tags = {tag.name for tag in event.tags}
    assert {"tlp:amber", 'infoleak:submission="crawler"', 'infoleak:source="pastie-website"'} <= tags
    counters = {a.comment: a.value for a in event.attributes if a.type == "counter"}
    assert counters == {"distinct NIRs (estimate)": "25"}
    assert [a.value for a in event.attributes if a.type == "target-org"] == ["Viamedis"]
    assert event.distribution == 0 and not event.published
    [(method, path, body)] = misp_receiver.requests
    assert (method, path) == ("POST", "/events/add")
    assert not NIR_RUN.search(body.decode()) and all(nir(s) not in body.decode() for s in range(25))

    clock.advance(minutes=5)
    await found(store, sender, "forum", "t1", leak(range(25), tag="repost"))   # the same NIRs: an update
    await sender.run_once()
    assert [p for _, p, _ in misp_receiver.requests] == ["/events/add", f"/events/edit/{event.uuid}"]
    [edited] = misp_receiver.events.values()
    assert edited.uuid == event.uuid and len(edited.objects) > len(event.objects)
    assert [(a.kind, a.state) for a in await store.call(list_alerts)] == [("new", "sent"), ("update", "sent")]


async def test_a_lost_answer_is_retried_as_an_edit_not_a_second_event(
        tmp_path: Path, store: Store, clock: Clock, misp_receiver: MispReceiver) -> None:
    sender = AlertSender(store, with_misp(tmp_path, misp_receiver), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    misp_receiver.lose_answers = 1
    await sender.run_once()
    [alert] = await store.call(list_alerts)
    assert (alert.state, alert.tries) == ("pending", 1) and "HTTP 500" in (alert.last_error or "")
    clock.advance(hours=1)
    await sender.run_once()
    [uuid] = misp_receiver.events
    assert [p for _, p, _ in misp_receiver.requests] == ["/events/add", "/events/add", f"/events/edit/{uuid}"]
    assert [(a.state, a.tries) for a in await store.call(list_alerts)] == [("sent", 2)]


async def test_min_severity_and_tags_route_the_push(
        tmp_path: Path, store: Store, misp_receiver: MispReceiver) -> None:
    sender = AlertSender(store, with_misp(tmp_path, misp_receiver, min_severity="high", tags=("leak",)))
    await found(store, sender, "paste", "p1", leak(range(3), severity="medium", insurers=()))
    await sender.run_once()
    assert misp_receiver.requests == []
    assert [a.state for a in await store.call(list_alerts)] == ["logged"]       # no target wanted it
    await found(store, sender, "forum", "t1", leak(range(100, 125)))
    await sender.run_once()
    assert [p for _, p, _ in misp_receiver.requests] == ["/events/add"]


async def test_a_refused_key_is_a_failed_attempt(tmp_path: Path, store: Store, misp_receiver: MispReceiver) -> None:
    config = with_misp(tmp_path, misp_receiver, key="not-the-key")
    sender = AlertSender(store, config)
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()
    [alert] = await store.call(list_alerts)
    assert alert.state == "pending" and "HTTP 403" in (alert.last_error or "") and misp_receiver.events == {}
    assert "not-the-key" not in json.dumps(alert.to_json()) and "not-the-key" not in repr(config)


async def test_test_alert_asks_misp_its_version(tmp_path: Path, misp_receiver: MispReceiver) -> None:
    [target] = load_targets(with_misp(tmp_path, misp_receiver))
    result = await send(target, probe_message("2026-11-28T16:40:00Z", None), 5.0)
    assert result.ok, result.error
    assert misp_receiver.requests == [("GET", "/servers/getVersion", b"")] and misp_receiver.events == {}


# --------------------------------------------------------------------------- configuration

TABLE = """\
[watcher]
state_dir = "./state"

[[sources]]
name = "hidden"
kind = "listing"
url = "http://examplepaste.onion/archive"
tor = true
item_links = "a"

[tor]
socks = "127.0.0.1:9050"

[alerts]
min_severity = "medium"

[alerts.misp]
url = "https://misp.example"
key = "cred:misp-key"
tlp = "tlp:green"
distribution = 1
"""


def test_the_misp_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "misp-key").write_text("k" * 40 + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    misp = alert_settings(load_config(write(tmp_path, TABLE), environ=env), env).misp
    assert misp is not None
    assert (misp.url, misp.key, misp.tlp, misp.distribution, misp.min_severity) == (
        "https://misp.example", "k" * 40, "tlp:green", 1, "high")
    assert misp.secret_file == tmp_path / "state" / "secret.key" and misp.tor_sources == ("hidden",)
    assert "k" * 40 not in repr(misp)


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('key = "cred:misp-key"', 'key = "abcdef0123456789"', "key", "keep secrets out of this file"),
    ('tlp = "tlp:green"', 'tlp = "green"', "tlp", "must be one of: tlp:clear"),
    ("distribution = 1", "distribution = 4", "distribution", "a sharing group, is not supported"),
    ('url = "https://misp.example"', 'url = "http://misp.example"', "url", "must be https://"),
])
def test_misp_errors_name_the_file_line_and_key(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    text = TABLE.replace(old, new)
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "misp-key").write_text("k" * 40)
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    with pytest.raises(ConfigError) as caught:
        alert_settings(load_config(write(tmp_path, text), environ=env), env)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'sources.toml'}:{line_of(text, new)}: "
                              f'[alerts.misp]: key "{key}"'), message
    assert words in message and "abcdef0123456789" not in message
