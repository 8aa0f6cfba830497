"""Delivery through real apprise to real receivers on 127.0.0.1: routing, retries, sinks, health.

The sender's clock is a `Clock`, so retries and digest periods are reached by moving time,
not by sleeping. Each test records findings with `Store.record_item(..., alert=sender.policy)`,
as the daemon does, then runs sender rounds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support.receivers import NIR_RUN, Clock, JsonReceiver, SmtpReceiver, leak, nir, settings

import watcher
import watcher.timestamps
from watcher.alerts import AlertSender, AlertSettings, load_targets
from watcher.alerts.records import list_alerts
from watcher.alerts.sink import JsonlSink
from watcher.report import Report
from watcher.store import StateDB, Store

REPO = Path(watcher.__file__).resolve().parents[1]


def sender_for(store: Store, config: AlertSettings, **options: object) -> AlertSender:
    """A sender whose targets are not throttled.

    Measured: apprise spaces two requests to the same service instance by 5.5 s (mailto and
    most plugins; json:// is exempt), and a call that times out keeps running and may deliver
    later. The daemon keeps that politeness; the tests remove it to stay fast.
    """
    targets = load_targets(config)
    for target in targets:
        target.service.request_rate_per_sec = 0
    return AlertSender(store, config, targets=targets, **options)  # type: ignore[arg-type]


async def found(store: Store, sender: AlertSender, source: str, item: str, report: Report) -> int:
    result = await store.call(StateDB.record_item, source, item, "1", f"https://{source}.example/{item}", f"dump {item}",
                                     report, alert=sender.policy)
    assert result.alert is not None
    return result.alert


async def states(store: Store) -> list[tuple[str, int]]:
    return [(a.state, a.tries) for a in await store.call(list_alerts)]


# --------------------------------------------------------------------------- routing


async def test_routing_by_tag_to_json_and_mail(
    tmp_path: Path, store: Store, json_receiver: JsonReceiver, smtp_receiver: SmtpReceiver
) -> None:
    apprise_yml = tmp_path / "apprise.yml"
    apprise_yml.write_text(
        f"urls:\n  - {json_receiver.url('crit')}:\n      tag: critical\n"
        f"  - {json_receiver.url('health')}:\n      tag: health\n"
    )
    sender = sender_for(store, settings(tmp_path, json_receiver.url("all"), "leak=" + smtp_receiver.url(),
                                        config=apprise_yml))
    await found(store, sender, "paste", "p1", leak(range(25)))
    await found(store, sender, "forum", "t1", leak(range(100, 103), severity="medium", insurers=()))
    await sender.run_once()

    assert [p.title for p in json_receiver.at("all")] == [
        "[CRITICAL] 25 NIRs, Viamedis - paste: dump p1", "[MEDIUM] 3 NIRs - forum: dump t1"]
    assert [p.title for p in json_receiver.at("crit")] == ["[CRITICAL] 25 NIRs, Viamedis - paste: dump p1"]
    assert json_receiver.at("health") == []
    assert [m.subject for m in smtp_receiver.mails] == [p.title for p in json_receiver.at("all")]
    assert smtp_receiver.mails[0].rcpt_tos == ("soc@example.org",)
    bodies = [p.message for p in json_receiver.posts] + [m.text for m in smtp_receiver.mails]
    for body in bodies:
        assert "Alert ID: " in body and "watcher alerts show " in body
        assert not NIR_RUN.search(body) and nir(0) not in body
    assert "1 84 12 \u2022\u2022 \u2022\u2022\u2022 \u2022\u2022\u2022 \u2022\u2022" in bodies[0]
    assert await states(store) == [("sent", 1), ("sent", 1)]


def test_apprise_logger_stays_at_info_or_above(tmp_path: Path) -> None:
    """Its DEBUG lines print whole message bodies (measured: `JSON Payload: {... 'message': ...}`)."""
    logging.getLogger("apprise").setLevel(logging.DEBUG)
    try:
        load_targets(settings(tmp_path, "json://127.0.0.1:9/x"))
        assert logging.getLogger("apprise").getEffectiveLevel() == logging.INFO
    finally:
        logging.getLogger("apprise").setLevel(logging.NOTSET)


# --------------------------------------------------------------------------- retries


async def test_receiver_down_then_up_delivers_every_alert_once_per_target(
    tmp_path: Path, store: Store, clock: Clock, json_receiver: JsonReceiver, smtp_receiver: SmtpReceiver
) -> None:
    sender = sender_for(store, settings(tmp_path, json_receiver.url("hook"), smtp_receiver.url()), clock=clock)
    await json_receiver.stop()
    for n in range(3):
        await found(store, sender, "paste", f"p{n}", leak(range(n * 100, n * 100 + 20)))
    await sender.run_once()
    assert len(smtp_receiver.mails) == 3 and json_receiver.posts == []
    assert await states(store) == [("pending", 1)] * 3

    await sender.run_once()                       # not due yet: nothing is tried
    assert await states(store) == [("pending", 1)] * 3
    await json_receiver.start()                   # same port
    clock.advance(seconds=40)
    await sender.run_once()
    assert len(json_receiver.at("hook")) == 3 and len(smtp_receiver.mails) == 3   # no duplicate mail
    assert len({p.message.split("Alert ID: ")[1] for p in json_receiver.posts}) == 3
    assert await states(store) == [("sent", 2)] * 3


async def test_failing_target_gives_up_after_max_tries(
    tmp_path: Path, store: Store, clock: Clock, json_receiver: JsonReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    json_receiver.failing = True
    sender = AlertSender(store, settings(tmp_path, json_receiver.url("hook"), max_tries=3, retry_after=10.0),
                         clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    delays = []
    for _ in range(4):
        await sender.run_once()
        [alert] = await store.call(list_alerts)
        delays.append((alert.state, alert.tries))
        clock.advance(hours=1)
    assert delays == [("pending", 1), ("pending", 2), ("failed", 3), ("failed", 3)]
    assert json_receiver.attempts == 3
    assert "error=503" in (alert.last_error or "")
    assert any(r.levelno == logging.ERROR and "failed for good" in r.getMessage() for r in caplog.records)


async def test_backoff_doubles(tmp_path: Path, store: Store, clock: Clock) -> None:
    sender = AlertSender(store, settings(tmp_path, "json://127.0.0.1:9/closed", retry_after=60.0), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    waits = []
    for _ in range(3):
        await sender.run_once()
        [alert] = await store.call(list_alerts)
        due = watcher.timestamps.parse_time(alert.next_try) - clock.now
        waits.append(due.total_seconds())
        clock.now += due
    assert [round(w / 60) for w in waits] == [1, 2, 4]


# --------------------------------------------------------------------------- log and JSONL


async def test_without_targets_alerts_go_to_the_log_and_jsonl_once(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path)
    sender = AlertSender(store, config)
    await found(store, sender, "paste", "p1", leak(range(25)))
    with caplog.at_level(logging.WARNING, logger="watcher.alerts"):
        await sender.run_once()
        await sender.run_once()
        await AlertSender(store, config).run_once()          # a restart
    assert await states(store) == [("logged", 1)]
    lines = config.jsonl.read_text().splitlines()             # type: ignore[union-attr]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert (record["kind"], record["severity"], record["source"]) == ("new", "critical", "paste")
    assert record["counts"] == {"nir": 25}
    assert oct(config.jsonl.stat().st_mode & 0o777) == "0o600"  # type: ignore[union-attr]
    assert [r.getMessage() for r in caplog.records if r.name == "watcher.alerts.outbox"] == ["alert"]


async def test_a_line_written_before_a_crash_is_not_written_again(tmp_path: Path, store: Store) -> None:
    config = settings(tmp_path)
    sender = AlertSender(store, config)
    await found(store, sender, "paste", "p1", leak(range(25)))
    [alert] = await store.call(list_alerts)
    sink = JsonlSink(config.jsonl)                            # type: ignore[arg-type]
    sink.append([{"alert_id": alert.alert_id}])              # the crash came before mark_emitted
    with config.jsonl.open("a") as handle:                    # type: ignore[union-attr]
        handle.write('{"alert_id": "torn')                   # and tore the next line
    await AlertSender(store, config).run_once()
    lines = config.jsonl.read_text().splitlines()             # type: ignore[union-attr]
    assert [json.loads(line)["alert_id"] for line in lines if line.endswith("}")] == [alert.alert_id]
    await found(store, sender, "paste", "p2", leak(range(500, 520)))
    await AlertSender(store, config).run_once()
    last = json.loads(config.jsonl.read_text().splitlines()[-1])  # type: ignore[union-attr]
    assert last["source"] == "paste" and last["alert_id"] != alert.alert_id


async def test_an_unwritable_sink_does_not_stop_delivery(
    tmp_path: Path, store: Store, json_receiver: JsonReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path, json_receiver.url("soc"))
    config.jsonl.mkdir(parents=True)                          # type: ignore[union-attr]
    sender = AlertSender(store, config)
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()
    await sender.run_once()
    assert len(json_receiver.posts) == 1 and await states(store) == [("sent", 1)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["alerts not written to the JSONL sink"]


async def test_a_broken_apprise_config_keeps_alerts_pending(
    tmp_path: Path, store: Store, clock: Clock, json_receiver: JsonReceiver
) -> None:
    apprise_yml = tmp_path / "apprise.yml"
    apprise_yml.write_text("urls: [:::\n")
    sender = AlertSender(store, settings(tmp_path, config=apprise_yml), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(25)))
    await sender.run_once()
    [alert] = await store.call(list_alerts)
    assert (alert.state, alert.tries) == ("pending", 1) and "no service loaded" in (alert.last_error or "")
    apprise_yml.write_text(f"urls:\n  - {json_receiver.url('soc')}\n")
    clock.advance(minutes=1)
    await sender.run_once()
    assert len(json_receiver.posts) == 1 and await states(store) == [("sent", 2)]


# --------------------------------------------------------------------------- digest


async def test_digest_batches_alerts_below_its_severity(
    tmp_path: Path, store: Store, clock: Clock, json_receiver: JsonReceiver
) -> None:
    sender = AlertSender(store, settings(tmp_path, json_receiver.url("soc"), digest_below="high",
                                         digest_every=3600.0), clock=clock)
    await found(store, sender, "paste", "p1", leak(range(3), severity="medium"))
    await found(store, sender, "paste", "p2", leak(range(25)))
    clock.advance(minutes=10)
    await found(store, sender, "forum", "t1", leak(range(200, 203), severity="medium"))
    await sender.run_once()
    assert [p.title[:10] for p in json_receiver.posts] == ["[CRITICAL]"]
    clock.advance(minutes=45)
    await sender.run_once()
    assert len(json_receiver.posts) == 1
    clock.advance(minutes=6)
    await sender.run_once()
    [_, digest] = json_receiver.posts
    assert digest.title == "[DIGEST] 2 alerts: 2 MEDIUM"
    medium_ids = [a.alert_id for a in await store.call(list_alerts) if a.severity == "medium"]
    assert all(f"Alert ID: {alert_id}" in digest.message for alert_id in medium_ids)
    assert await states(store) == [("sent", 1)] * 3


# --------------------------------------------------------------------------- health


async def test_source_health_one_notice_per_streak_and_one_on_recovery(
    tmp_path: Path, store: Store, clock: Clock, json_receiver: JsonReceiver
) -> None:
    sender = AlertSender(store, settings(tmp_path, "health=" + json_receiver.url("ops"),
                                         "critical=" + json_receiver.url("crit"), health_after=6 * 3600.0),
                         clock=clock)
    notices = []
    for _ in range(8):                                  # a poll every hour, all failing
        await store.call(StateDB.record_poll, "forum", False, "connection refused", clock.now + timedelta(hours=1))
        notices.append(await sender.check_health())
        await sender.run_once()
        clock.advance(hours=1)
    assert notices == [0, 0, 0, 0, 0, 0, 1, 0]         # after 6 h, once
    await store.call(StateDB.record_poll, "forum", True, None, clock.now + timedelta(hours=1))
    assert [await sender.check_health(), await sender.check_health()] == [1, 0]
    await sender.run_once()
    titles = [p.title for p in json_receiver.at("ops")]
    assert titles == ["[HEALTH] source forum failing for 6h 0m", "[HEALTH] source forum recovered after 8h 0m"]
    assert json_receiver.at("crit") == []
    assert "connection refused" in json_receiver.at("ops")[0].message


# --------------------------------------------------------------------------- the task


async def test_the_sender_task_delivers_when_woken(tmp_path: Path, store: Store, json_receiver: JsonReceiver) -> None:
    sender = AlertSender(store, settings(tmp_path, json_receiver.url("soc")), poll_every=30.0)
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.05)
        await found(store, sender, "paste", "p1", leak(range(25)))
        sender.wake()
        for _ in range(200):
            if json_receiver.posts:
                break
            await asyncio.sleep(0.01)
        assert len(json_receiver.posts) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --------------------------------------------------------------------------- crash


CHILD = """
import os, signal, sys
from tests.support.receivers import leak
from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.store import StateDB

state = StateDB(sys.argv[1])
state.upsert_source("paste", "listing")
result = state.record_item("paste", "p1", "1", "https://paste.example/p1", "dump", leak(range(25)),
                           alert=IncidentPolicy(AlertSettings()))
assert result.alert is not None
os.kill(os.getpid(), signal.SIGKILL)    # committed, never sent
"""


async def test_an_alert_committed_before_a_crash_is_sent_after_restart(
    tmp_path: Path, json_receiver: JsonReceiver
) -> None:
    path = tmp_path / "state" / "watcher.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(path), env=env,
                                                 stderr=subprocess.PIPE)
    _, stderr = await child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode()

    async with await Store.open(path) as store:
        sender = AlertSender(store, settings(tmp_path, json_receiver.url("soc")))
        await sender.run_once()
        [post] = json_receiver.posts
        assert post.title == "[CRITICAL] 25 NIRs, Viamedis - paste: dump"
        assert await states(store) == [("sent", 1)]
