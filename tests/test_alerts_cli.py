"""`watcher alerts`, `watcher incidents` and `watcher test-alert` on a real state database.

`alerts retry` is tested twice against a real json:// receiver that first fails, then accepts:
in-process with the sender (a target that accepted the alert is not sent it again), and end to
end with a real daemon process, the command run beside it while it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from tests.support.daemon import READY_TIMEOUT, DaemonProcess, assert_no_cleartext, db_rows, drop_csv, make_nirs
from tests.support.daemon import write_config as write_daemon_config
from tests.support.receivers import JsonReceiver, SmtpReceiver, leak, settings

import watcher
from watcher.alerts import AlertSender, AlertSettings, IncidentPolicy
from watcher.alerts.records import list_alerts, record_attempt
from watcher.cli import main
from watcher.store import ItemRecord, StateDB, Store

REPO = Path(watcher.__file__).resolve().parents[1]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state and the apprise config come from the test's files, not from a service's."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def write_config(tmp_path: Path, alerts: str = "") -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(f'[watcher]\nstate_dir = "state"\n\n[alerts]\n{alerts}\n', encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration whose state holds one incident with a new alert and an update."""
    path = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    policy = IncidentPolicy(AlertSettings())
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        for source in ("paste", "forum"):
            state.upsert_source(source, "listing")
        state.record_item("paste", "p1", "1", "https://paste.example/p1", "dump", leak(range(25)), alert=policy)
        state.record_item("forum", "t1", "1", "https://forum.example/t1", "repost", leak(range(25)), alert=policy)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_alerts_list_text_and_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "alerts", "--config", str(config))
    lines = out.splitlines()
    assert status == 0 and lines[0].split()[:4] == ["ID", "STATE", "KIND", "SEVERITY"]
    assert "[CRITICAL] 25 NIRs, Viamedis - paste: dump" in lines[1] and " new " in lines[1]
    assert "[CRITICAL] update: 25 NIRs, Viamedis - forum: repost" in lines[2]
    status, out, _ = run(capsys, "alerts", "list", "--format", "json", "--config", str(config))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["kind"], r["state"], r["incident_id"]) for r in rows] == [(1, "new", "pending", 1),
                                                                                   (2, "update", "pending", 1)]


def test_alerts_show_and_ack(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "alerts", "show", "2", "--config", str(config))
    assert status == 0
    assert "State: pending after 0 attempts" in out and "What changed: +1 document on forum" in out
    assert "watcher alerts show 2" in out
    alert_id = out.split("Alert ID ")[1].split()[0]
    status, out, _ = run(capsys, "alerts", "ack", alert_id[:8], "--config", str(config))
    assert status == 0 and out.startswith("alert 2 acknowledged at ")
    _, out, _ = run(capsys, "alerts", "show", "2", "--format", "json", "--config", str(config))
    assert json.loads(out)["acked_at"] is not None


def test_alerts_errors(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "alerts", "show", "--config", str(config))[0] == 2
    status, _, err = run(capsys, "alerts", "show", "99", "--config", str(config))
    assert status == 2 and "no alert '99'" in err


def test_incidents(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "incidents", "--config", str(config))
    header, line = out.splitlines()
    assert status == 0 and "paste, forum" in line
    assert header.split()[6:9] == ["FIRST", "POSTED", "FIRST"] and line.split()[6] == "-"   # no post date known
    assert header.split()[2] == "STATE" and line.split()[2] == "open"
    _, out, _ = run(capsys, "incidents", "--format", "json", "--config", str(config))
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["id"], row["severity"], row["nirs"], row["sources"], row["findings"], row["alerts"]) == (
        1, "critical", 25, ["paste", "forum"], 1, 2)
    assert row["first_posted"] is None


def test_incidents_show_when_the_leak_was_first_posted(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The earliest post date of an incident's documents, beside when leak-watcher first saw it."""
    with StateDB(config.parent / "state" / "watcher.db") as state:
        state.record_items([ItemRecord("forum", "t2", "1", None, "older repost", leak(range(25), tag="older"),
                                       posted_at="Tue, 03 Nov 2026 10:00:00 +0100")],
                           alert=IncidentPolicy(AlertSettings()))
    _, out, _ = run(capsys, "incidents", "--config", str(config))
    assert out.splitlines()[1].split()[6] == "2026-11-03T09:00:00Z"
    _, out, _ = run(capsys, "incidents", "--format", "json", "--config", str(config))
    assert json.loads(out)["first_posted"] == "2026-11-03T09:00:00Z"


def test_test_alert_without_target_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "test-alert", "--config", str(write_config(tmp_path)))
    assert status == 2 and "no alert target" in err


async def cli(*argv: str) -> tuple[int, str]:
    """The real `watcher` command in a subprocess (the receivers keep running in this loop)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_test_alert_reports_each_target(
    tmp_path: Path, json_receiver: JsonReceiver, smtp_receiver: SmtpReceiver
) -> None:
    urls = [json_receiver.url("soc"), "critical=" + smtp_receiver.url(), "health=" + json_receiver.url("ops")]
    config = write_config(tmp_path, "urls = " + json.dumps(urls))
    status, out = await cli("test-alert", "--tag", "critical", "--config", str(config))
    assert status == 0, out
    assert "2 of 2 targets accepted" in out
    assert [p.path for p in json_receiver.posts] == ["soc"] and len(smtp_receiver.mails) == 1
    assert json_receiver.posts[0].title == "[TEST] leak-watcher test alert"

    await json_receiver.stop()
    status, out = await cli("test-alert", "--config", str(config))
    assert status == 1
    assert out.count("FAILED json://127.0.0.1:") == 2 and "1 of 3 targets accepted" in out
    assert out.count("A Connection error occurred sending JSON notification") == 2


# --------------------------------------------------------------------------- alerts retry


def fail_for_good(config: Path, alert_id: int, error: str) -> None:
    """Record a last failed attempt of `alert_id`, as the sender does after max_tries."""
    with StateDB(config.parent / "state" / "watcher.db") as db:
        record_attempt(db, alert_id, delivered_to=frozenset(), new_state="failed", next_try=db.now(),
                       error=error, now=db.now())


def shown(capsys: pytest.CaptureFixture[str], config: Path, ref: str) -> dict:
    status, out, _ = run(capsys, "alerts", "show", ref, "--format", "json", "--config", str(config))
    assert status == 0
    return json.loads(out)


def test_retry_requeues_failed_alerts_only(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fail_for_good(config, 1, "json://127.0.0.1:9/soc: connection refused")
    status, _, err = run(capsys, "alerts", "retry", "2", "--config", str(config))
    assert status == 2 and "alert 2 is pending, not failed" in err and "queued already" in err

    status, out, _ = run(capsys, "alerts", "retry", "--failed", "--config", str(config))
    assert status == 0 and out.startswith("1 failed alert re-queued: 1;")
    alert = shown(capsys, config, "1")
    assert (alert["state"], alert["tries"]) == ("pending", 0)
    assert alert["next_try"] >= alert["created_at"]
    assert alert["last_error"] == "json://127.0.0.1:9/soc: connection refused"   # kept until the next attempt
    assert shown(capsys, config, "2")["state"] == "pending"

    status, out, _ = run(capsys, "alerts", "retry", "--failed", "--format", "json", "--config", str(config))
    assert status == 0 and json.loads(out) == {"requeued": []}
    status, _, err = run(capsys, "alerts", "retry", "1", "--config", str(config))
    assert status == 2 and "alert 1 is pending, not failed" in err


@pytest.mark.parametrize("argv", [("retry",), ("retry", "1", "--failed"), ("list", "--failed"), ("retry", "99")])
def test_retry_usage_errors(config: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    status, out, err = run(capsys, "alerts", *argv, "--config", str(config))
    assert status == 2 and out == "" and err.startswith("watcher: error: ") and len(err.splitlines()) == 1


async def test_retry_sends_only_to_the_targets_that_missed_the_alert(
    tmp_path: Path, json_receiver: JsonReceiver, smtp_receiver: SmtpReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    store = await Store.open(tmp_path / "state" / "watcher.db")
    try:
        await store.call(StateDB.upsert_source, "paste", "listing")
        sender = AlertSender(store, settings(tmp_path, smtp_receiver.url(), json_receiver.url("soc"), max_tries=1))
        json_receiver.failing = True
        await store.call(StateDB.record_item, "paste", "p1", "1", "https://paste.example/p1", "dump", leak(range(25)),
                                alert=sender.policy)
        await sender.run_once()
        [alert] = await store.call(list_alerts)
        assert (alert.state, alert.tries, len(alert.delivered_to)) == ("failed", 1, 1)
        assert len(smtp_receiver.mails) == 1 and json_receiver.attempts == 1

        json_receiver.failing = False
        status, out, _ = run(capsys, "alerts", "retry", alert.alert_id[:8], "--config", str(config))
        assert status == 0 and out.startswith("1 failed alert re-queued: 1;"), (status, out)
        await sender.run_once()
        [alert] = await store.call(list_alerts)
    finally:
        await store.close()
    assert (alert.state, alert.tries, alert.last_error) == ("sent", 1, None)
    assert [post.title for post in json_receiver.posts] == ["[CRITICAL] 25 NIRs, Viamedis - paste: dump"]
    assert len(smtp_receiver.mails) == 1                     # the target that had it is not sent it again


async def eventually(check: Callable[[], T], timeout: float, what: str) -> T:
    """`check()` once it is truthy, polling without blocking the loop (the receivers run in it)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def test_retry_while_the_daemon_runs_delivers_a_failed_alert(
    tmp_path: Path, json_receiver: JsonReceiver, start_daemon: Callable[[Path], DaemonProcess]
) -> None:
    """`watcher run` delivers nothing (the receiver fails), gives up after max_tries = 1; the
    receiver recovers; `watcher alerts retry --failed`, run beside the daemon, is enough."""
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "sources.toml"
    write_daemon_config(config, {"inbox": "./inbox"},
                        f'[alerts]\nurls = ["{json_receiver.url("soc")}"]\nmax_tries = 1\n')
    state_dir = tmp_path / "state"
    json_receiver.failing = True
    daemon = start_daemon(config)
    daemon.notify.wait_for("READY", "1", timeout=READY_TIMEOUT)
    nirs = make_nirs(9)
    drop_csv(tmp_path / "inbox", "extract.csv", nirs)

    def alerts() -> list[tuple[str, int]]:
        return db_rows(state_dir, "SELECT state, tries FROM alerts ORDER BY id")

    assert await eventually(lambda: alerts() == [("failed", 1)], 30, "the alert to fail for good")
    assert json_receiver.attempts == 1 and json_receiver.posts == []

    json_receiver.failing = False
    status, out = await cli("alerts", "retry", "--failed", "--config", str(config))
    assert status == 0 and out.startswith("1 failed alert re-queued: 1;"), out
    await eventually(lambda: alerts() == [("sent", 1)], 10, "the re-queued alert to be sent")
    [post] = json_receiver.posts
    assert post.path == "soc" and post.title.startswith("[CRITICAL] 12 NIRs")
    assert daemon.stop() == 0
    assert_no_cleartext(daemon.log + post.message, nirs)


def test_an_alert_id_prefix_of_digits_only_is_found(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An Alert ID starts with 8 decimal digits 1 time in 40: its prefix must still find it."""
    from watcher.store import StateDB

    with StateDB(config.parent / "state" / "watcher.db") as state:
        state.db.execute("UPDATE alerts SET alert_id = '12345678' || substr(alert_id, 9) WHERE id = 2")
        state.db.commit()
    status, out, _ = run(capsys, "alerts", "ack", "12345678", "--config", str(config))
    assert status == 0 and out.startswith("alert 2 acknowledged at ")
