"""`watcher alerts`, `watcher incidents` and `watcher test-alert` on a real state database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from receivers import JsonReceiver, SmtpReceiver, json_receiver, leak, smtp_receiver  # noqa: F401

import watcher
import watcher.cli
from watcher.alerts import AlertSettings, IncidentPolicy
from watcher.cli import main
from watcher.store import StateDB

REPO = Path(watcher.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def alerts_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the alerts commands until `watcher.cli.COMMANDS` lists them."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    if "alerts" not in watcher.cli.COMMANDS:
        monkeypatch.setattr(watcher.cli, "COMMANDS", (*watcher.cli.COMMANDS, "alerts"))


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
    assert "State: pending after 0 attempt(s)" in out and "What changed: new source: forum" in out
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
    assert status == 0 and "paste, forum" in out.splitlines()[1]
    _, out, _ = run(capsys, "incidents", "--format", "json", "--config", str(config))
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["id"], row["severity"], row["nirs"], row["sources"], row["findings"], row["alerts"]) == (
        1, "critical", 25, ["paste", "forum"], 1, 2)


def test_test_alert_without_target_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "test-alert", "--config", str(write_config(tmp_path)))
    assert status == 2 and "no alert target" in err


async def cli(*argv: str) -> tuple[int, str]:
    """The real `watcher` command in a subprocess (the receivers keep running in this loop)."""
    env = {key: value for key, value in os.environ.items() if key != "STATE_DIRECTORY"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys, watcher.cli as c; c.COMMANDS = (*c.COMMANDS, 'alerts') "
        "if 'alerts' not in c.COMMANDS else c.COMMANDS; sys.exit(c.main(sys.argv[1:]))", *argv,
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
    assert "2 of 2 target(s) accepted" in out
    assert [p.path for p in json_receiver.posts] == ["soc"] and len(smtp_receiver.mails) == 1
    assert json_receiver.posts[0].title == "[TEST] leak-watcher test alert"

    await json_receiver.stop()
    status, out = await cli("test-alert", "--config", str(config))
    assert status == 1
    assert out.count("FAILED json://127.0.0.1:") == 2 and "1 of 3 target(s) accepted" in out
    assert out.count("A Connection error occurred sending JSON notification") == 2
