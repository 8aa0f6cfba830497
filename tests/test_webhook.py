"""JSON webhooks: the alert's record over real TLS (a CA made for the run), signed, retried
through the outbox with one idempotency key, routed by tags, with no cleartext identifier.

The receiver (tests/support/receivers.py) checks the HMAC signature as the README tells a
receiver to, and refuses (401) a request whose signature does not check out.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from tests.support.configs import line_of, write
from tests.support.receivers import (
    WEBHOOK_SECRET,
    NIR_RUN,
    Clock,
    LoopbackCA,
    WebhookReceiver,
    leak,
    nir,
    settings,
)

from watcher.alerts import AlertSender, AlertSettings, alert_settings, load_targets, probe_message, send
from watcher.alerts.records import list_alerts
from watcher.alerts.settings import WebhookSettings
from watcher.alerts.webhook import sign
from watcher.config import ConfigError, load_config
from watcher.report import Report
from watcher.store import StateDB, Store

HEAD = '[watcher]\nstate_dir = "./state"\n\n[alerts]\nmin_severity = "medium"\n'


def hook(receiver: WebhookReceiver, path: str, *tags: str, secret: bytes | None = WEBHOOK_SECRET,
         ca: bool = True) -> WebhookSettings:
    return WebhookSettings(url=receiver.url(path), tags=tags, secret=secret, timeout=5.0,
                           ca_file=receiver.ca.ca_file if ca else None)


def with_hooks(tmp_path: Path, *hooks: WebhookSettings, **values: object) -> AlertSettings:
    return replace(settings(tmp_path), webhooks=hooks, **values)  # type: ignore[arg-type]


async def found(store: Store, sender: AlertSender, source: str, item: str, report: Report) -> int:
    result = await store.call(StateDB.record_item, source, item, "1", f"https://{source}.example/{item}",
                              f"dump {item}", report, alert=sender.policy)
    assert result.alert is not None
    return result.alert


async def states(store: Store) -> list[tuple[str, int]]:
    return [(a.state, a.tries) for a in await store.call(list_alerts)]


# --------------------------------------------------------------------------- delivery


async def test_the_record_is_posted_signed_and_equal_to_the_jsonl_line(
        tmp_path: Path, store: Store, webhook_receiver: WebhookReceiver) -> None:
    config = with_hooks(tmp_path, hook(webhook_receiver, "siem"))
    sender = AlertSender(store, config)
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()

    [posted] = webhook_receiver.at("siem")
    [alert] = await store.call(list_alerts)
    line = json.loads((tmp_path / "state" / "alerts.jsonl").read_text().splitlines()[0])
    assert posted.record == line and line["schema"] == "leak-watcher/alert/1"
    assert posted.signed is True
    assert posted.headers["X-Leak-Watcher-Signature"] == sign(
        WEBHOOK_SECRET, posted.headers["X-Leak-Watcher-Timestamp"], posted.body)
    assert posted.headers["Content-Type"] == "application/json"
    assert posted.key == posted.headers["X-Leak-Watcher-Delivery"] == alert.alert_id
    assert posted.record["counts"] == {"nir": 25} and posted.record["severity"] == "critical"
    text = posted.body.decode()
    assert not NIR_RUN.search(text) and all(nir(serial) not in text for serial in range(25))
    assert "\u2022\u2022 \u2022\u2022\u2022 \u2022\u2022\u2022" in text      # the masked samples are there
    assert await states(store) == [("sent", 1)]
    await sender.run_once()
    assert len(webhook_receiver.hooks) == 1                              # delivered once, never again


async def test_a_wrong_secret_is_refused_by_the_receiver_and_retried(
        tmp_path: Path, store: Store, webhook_receiver: WebhookReceiver) -> None:
    sender = AlertSender(store, with_hooks(tmp_path, hook(webhook_receiver, "siem", secret=b"w" * 32)))
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()
    [refused] = webhook_receiver.hooks
    assert refused.signed is False and refused.status == 401
    [alert] = await store.call(list_alerts)
    assert (alert.state, alert.tries) == ("pending", 1)
    assert "HTTP 401" in (alert.last_error or "") and "check its URL, secret" in (alert.last_error or "")


async def test_two_failures_then_one_delivery_with_the_same_idempotency_key(
        tmp_path: Path, store: Store, clock: Clock, webhook_receiver: WebhookReceiver) -> None:
    sender = AlertSender(store, with_hooks(tmp_path, hook(webhook_receiver, "siem")), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    webhook_receiver.failures = 2
    for _ in range(4):
        await sender.run_once()
        clock.advance(hours=1)
    assert [h.status for h in webhook_receiver.hooks] == [503, 503, 200]
    assert len({h.key for h in webhook_receiver.hooks}) == 1
    assert len({h.body for h in webhook_receiver.hooks}) == 1           # the same record every time
    assert len(webhook_receiver.delivered) == 1
    assert await states(store) == [("sent", 3)]


async def test_a_receiver_that_accepted_is_not_sent_the_alert_again_while_another_fails(
        tmp_path: Path, store: Store, clock: Clock, webhook_receiver: WebhookReceiver) -> None:
    down = replace(hook(webhook_receiver, "down"), url=f"https://127.0.0.1:{_closed_port()}/down")
    sender = AlertSender(store, with_hooks(tmp_path, hook(webhook_receiver, "up"), down), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    for _ in range(3):
        await sender.run_once()
        clock.advance(hours=1)
    assert len(webhook_receiver.at("up")) == 1
    [alert] = await store.call(list_alerts)
    assert (alert.state, alert.tries) == ("pending", 3) and len(alert.delivered_to) == 1
    assert "webhook https://127.0.0.1:" in (alert.last_error or "")


async def test_routing_by_tags(tmp_path: Path, store: Store, webhook_receiver: WebhookReceiver) -> None:
    sender = AlertSender(store, with_hooks(tmp_path, hook(webhook_receiver, "critical", "critical"),
                                           hook(webhook_receiver, "all")))
    await found(store, sender, "paste", "p1", leak(range(3), severity="medium", insurers=()))
    await found(store, sender, "forum", "t1", leak(range(100, 125)))
    await sender.run_once()
    assert [h.record["severity"] for h in webhook_receiver.at("critical")] == ["critical"]
    assert sorted(str(h.record["severity"]) for h in webhook_receiver.at("all")) == ["critical", "medium"]
    assert await states(store) == [("sent", 1), ("sent", 1)]


async def test_tls_is_verified(tmp_path: Path, store: Store, webhook_receiver: WebhookReceiver) -> None:
    """Without the test CA, the receiver's certificate is refused: nothing is posted."""
    sender = AlertSender(store, with_hooks(tmp_path, hook(webhook_receiver, "siem", ca=False)))
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()
    assert webhook_receiver.hooks == []
    [alert] = await store.call(list_alerts)
    assert alert.state == "pending" and "CERTIFICATE_VERIFY_FAILED" in (alert.last_error or "")


async def test_test_alert_probe_posts_a_test_record(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    [target] = load_targets(with_hooks(tmp_path, hook(webhook_receiver, "siem")))
    result = await send(target, probe_message("2026-11-28T16:40:00Z", None), 5.0)
    assert result.ok, result.error
    [posted] = webhook_receiver.hooks
    assert posted.record["kind"] == "test" and posted.record["schema"] == "leak-watcher/alert/1"
    assert posted.signed is True and target.name == f"webhook https://127.0.0.1:{webhook_receiver.port}/..."


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- configuration

TABLES = HEAD + """
[[alerts.webhooks]]
url = "https://siem.example/hook"
tags = ["Critical", "high"]
secret = "env:HOOK_HMAC"
timeout = "15s"

[[alerts.webhooks]]
url = "env:HOOK_URL"
"""


def test_webhook_tables_are_read(tmp_path: Path) -> None:
    env = {"HOOK_HMAC": "h" * 32, "HOOK_URL": "http://127.0.0.1:8080/local-shipper"}
    config = alert_settings(load_config(write(tmp_path, TABLES), environ=env), env)
    first, second = config.webhooks
    assert (first.url, first.tags, first.secret, first.timeout) == (
        "https://siem.example/hook", ("critical", "high"), b"h" * 32, 15.0)
    assert (second.url, second.secret, second.timeout) == ("http://127.0.0.1:8080/local-shipper", None, 10.0)
    assert config.has_targets and "h" * 32 not in repr(config)


def test_inline_webhooks_are_read(tmp_path: Path) -> None:
    text = HEAD + 'webhooks = [{ url = "https://siem.example/hook", tags = ["critical"] }]\n'
    config = alert_settings(load_config(write(tmp_path, text), environ={}), {})
    assert [(h.url, h.tags) for h in config.webhooks] == [("https://siem.example/hook", ("critical",))]


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('secret = "env:HOOK_HMAC"', 'secret = "literal-secret-in-the-file"', "secret", "keep secrets out of this file"),
    ('secret = "env:HOOK_HMAC"', 'secret = "env:SHORT"', "secret", "shorter than 16 characters"),
    ('url = "https://siem.example/hook"', 'url = "http://10.1.2.3/hook"', "url", "http:// only to a loopback"),
    ('url = "https://siem.example/hook"', 'url = "ftp://siem.example/"', "url", "must be an https:// URL"),
    ('timeout = "15s"', 'timeout = "15s"\nca_file = "missing.pem"', "ca_file", "not a readable file"),
    ('tags = ["Critical", "high"]', 'tags = "crit ical"', "tags", "must be a list of tags"),
    ('timeout = "15s"', 'timeout = "15s"\nverify = false', "verify", "is unknown"),
])
def test_webhook_errors_name_the_file_line_and_key(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    env = {"HOOK_HMAC": "h" * 32, "HOOK_URL": "https://siem.example/2", "SHORT": "abc"}
    text = TABLES.replace(old, new)
    message = settings_error(tmp_path, text, env)
    assert message.startswith(f"{tmp_path / 'sources.toml'}:{line_of(text, key + ' =')}: "
                              f'[alerts] webhooks entry 1: key "{key}"'), message
    assert words in message and "literal-secret" not in message and "h" * 32 not in message


def test_a_secret_url_is_not_echoed(tmp_path: Path) -> None:
    env = {"HOOK_HMAC": "h" * 32, "HOOK_URL": "http://10.9.9.9/token-abc"}
    message = settings_error(tmp_path, TABLES, env)
    assert message.startswith(f"{tmp_path / 'sources.toml'}:{line_of(TABLES, 'env:HOOK_URL')}: "
                              '[alerts] webhooks entry 2: key "url" must be https://'), message
    assert "token-abc" not in message and "10.9.9.9" not in message


def settings_error(tmp_path: Path, text: str, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        alert_settings(load_config(write(tmp_path, text), environ=env), env)
    return str(caught.value)


def test_the_ca_fixture_is_a_real_ca(test_ca: LoopbackCA) -> None:
    assert b"BEGIN CERTIFICATE" in test_ca.ca_file.read_bytes()


def test_the_readme_verification_snippet_accepts_a_signed_body_and_refuses_a_changed_one() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Webhook and MISP", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)
    verify = namespace["verify"]
    body, stamp = b'{"schema":"leak-watcher/alert/1"}', str(int(time.time()))
    headers = {"X-Leak-Watcher-Timestamp": stamp, "X-Leak-Watcher-Signature": sign(WEBHOOK_SECRET, stamp, body)}
    assert verify(WEBHOOK_SECRET, headers, body) is True  # type: ignore[operator]
    assert verify(WEBHOOK_SECRET, headers, body + b" ") is False  # type: ignore[operator]
    old = str(int(time.time()) - 3600)
    replayed = {"X-Leak-Watcher-Timestamp": old, "X-Leak-Watcher-Signature": sign(WEBHOOK_SECRET, old, body)}
    assert verify(WEBHOOK_SECRET, replayed, body) is False  # type: ignore[operator]
