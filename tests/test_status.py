"""`watcher status`: health verdicts and exit codes from real state databases."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.commands import BASE
from watcher.cli import COMMANDS, service
from watcher.config import Config, load_config
from watcher.store import StateDB, table_names

NOW = datetime(2026, 11, 28, 16, 40, tzinfo=UTC)
CONFIG = BASE + """
[[sources]]
name = "paste"
kind = "listing"
url = "https://paste.example/archive"
item_links = "a"
interval = "1h"

[[sources]]
name = "old-feed"
kind = "feed"
url = "https://feed.example/rss"
enabled = false
"""


@pytest.fixture(autouse=True)
def _no_systemd_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command loads the configuration with os.environ: keep $STATE_DIRECTORY out of it."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "sources.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path, environ={})


def db_path(config: Config) -> Path:
    return config.watcher.state_dir / "watcher.db"


def state(config: Config, at: datetime) -> StateDB:
    """The state database with every configured source declared, its clock fixed at `at`."""
    db = StateDB(db_path(config), clock=lambda: at)
    for source in config.sources:
        db.upsert_source(source.name, source.kind)
    return db


def poll(config: Config, name: str, ago: timedelta, ok: bool = True, error: str | None = None,
         now: datetime = NOW) -> None:
    """Record a poll of `name` that happened `ago` before `now` (NOW unless given)."""
    with state(config, now - ago) as db:
        db.record_poll(name, ok, error, now)


def evaluate(config: Config) -> service.Health:
    return service.evaluate(config, db_path(config), NOW)


# -- verdicts -------------------------------------------------------------------------------------

def test_no_database_is_down(config: Config) -> None:
    health = evaluate(config)
    assert (health.status, health.exit_code) == ("down", 2)
    assert "no state database" in health.reasons[0]
    assert not db_path(config).exists()                   # status creates nothing


def test_every_enabled_source_fresh_is_ok(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    poll(config, "paste", timedelta(minutes=50))
    health = evaluate(config)
    assert (health.status, health.exit_code, health.reasons) == ("ok", 0, [])
    assert health.last_success == "2026-11-28T16:39:40Z"
    inbox = health.sources[0]
    assert (inbox.name, inbox.fresh, inbox.window_seconds) == ("inbox", True, 900.0)
    assert health.sources[1].window_seconds == 3 * 3600


def test_a_failing_source_degrades(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    poll(config, "paste", timedelta(hours=2))
    poll(config, "paste", timedelta(minutes=30), ok=False, error="HTTP 503 from paste.example")
    poll(config, "paste", timedelta(minutes=10), ok=False, error="HTTP 503 from paste.example")
    health = evaluate(config)
    assert (health.status, health.exit_code) == ("degraded", 1)
    (reason,) = health.reasons
    assert reason == ('source "paste" failing since 2026-11-28T16:10:00Z (2 consecutive failures): '
                      "HTTP 503 from paste.example")


def test_a_late_source_degrades(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    poll(config, "paste", timedelta(hours=4))             # window: 3 h
    health = evaluate(config)
    assert health.status == "degraded"
    assert health.reasons == ['source "paste": no successful poll within 180 min (last success: 2026-11-28T12:40:00Z)']


def test_a_source_never_polled_degrades(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    health = evaluate(config)
    assert health.status == "degraded" and "last success: never" in health.reasons[0]


def test_no_recent_success_anywhere_is_down(config: Config) -> None:
    poll(config, "inbox", timedelta(minutes=16))          # window: max(30 s, 15 min)
    poll(config, "paste", timedelta(hours=3, seconds=1))
    health = evaluate(config)
    assert (health.status, health.exit_code) == ("down", 2)
    assert health.reasons[0] == ("no enabled source had a successful poll within its window "
                                 "(last success: 2026-11-28T16:24:00Z)")


def test_the_window_edge_is_fresh(config: Config) -> None:
    poll(config, "inbox", timedelta(minutes=15))
    poll(config, "paste", timedelta(hours=3))
    assert evaluate(config).status == "ok"


def test_disabled_and_removed_sources_do_not_count(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    poll(config, "paste", timedelta(minutes=5))
    poll(config, "old-feed", timedelta(days=30), ok=False, error="gone")
    with state(config, NOW - timedelta(days=9)) as db:
        db.upsert_source("removed", "forum")
        db.record_poll("removed", False, "boom", NOW)
    health = evaluate(config)
    assert health.status == "ok"
    names = [(s.name, s.enabled, s.in_config) for s in health.sources]
    assert names == [("inbox", True, True), ("paste", True, True), ("old-feed", False, True),
                     ("removed", False, False)]


def test_no_enabled_source_degrades(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(CONFIG.replace("interval = 10\n", "interval = 10\nenabled = false\n")
                    .replace('interval = "1h"\n', 'interval = "1h"\nenabled = false\n'), encoding="utf-8")
    config = load_config(path, environ={})
    state(config, NOW).close()
    health = evaluate(config)
    assert health.status == "degraded" and health.reasons == ["no enabled source: nothing is watched"]


def test_failed_alerts_degrade_until_acknowledged(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    poll(config, "paste", timedelta(minutes=5))
    with state(config, NOW) as db:
        if "alerts" not in table_names(db.db):
            pytest.skip("schema without the alerts table")
        for n, alert_state in enumerate(["pending", "failed", "sent"]):
            db.db.execute("""INSERT INTO alerts (alert_id, kind, severity, title, state, next_try, created_at)
                          VALUES (?, 'new', 'critical', 't', ?, 'x', 'x')""", (f"a{n}", alert_state))
    health = evaluate(config)
    assert health.status == "degraded" and health.reasons == ["1 failed alert not acknowledged"]
    assert health.alerts == {"pending": 1, "failed": 1, "sent": 1}
    with state(config, NOW) as db:
        db.db.execute("UPDATE alerts SET acked_at = 'x' WHERE state = 'failed'")
    assert evaluate(config).status == "ok"


def test_an_unreadable_database_is_down(config: Config) -> None:
    db_path(config).parent.mkdir(parents=True)
    db_path(config).write_bytes(b"this is not sqlite" * 100)
    health = evaluate(config)
    assert health.status == "down" and "unreadable" in health.reasons[0]


def test_an_empty_database_file_is_down(config: Config) -> None:
    db_path(config).parent.mkdir(parents=True)
    db_path(config).touch()
    health = evaluate(config)
    assert health.status == "down" and "not a leak-watcher state database" in health.reasons[0]


# -- reading without writing ----------------------------------------------------------------------

def test_status_leaves_a_closed_database_untouched(config: Config) -> None:
    poll(config, "inbox", timedelta(seconds=20))
    folder = db_path(config).parent
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert not (folder / "watcher.db-wal").exists()
    evaluate(config)
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert after == before                                # no -wal/-shm left behind, nothing written


def test_status_reads_while_the_daemon_writes(config: Config) -> None:
    with state(config, NOW - timedelta(seconds=5)) as writer:
        writer.record_poll("inbox", True, None, NOW)
        writer.record_poll("paste", True, None, NOW)
        with writer.transaction():                        # the writer holds the write lock
            writer.db.execute("UPDATE sources SET last_error = 'x' WHERE name = 'inbox'")
            assert evaluate(config).status == "ok"


# -- the command ----------------------------------------------------------------------------------

def run(config: Config, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    service.register(parser.add_subparsers())
    args = parser.parse_args(["status", "--config", str(config.path), *extra])
    return args.func(args)


def test_command_text_output(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    poll(config, "inbox", timedelta(seconds=20), now=datetime.now(UTC))   # the command uses the real clock
    code = run(config)
    out = capsys.readouterr().out
    assert code == 1                                      # paste was never polled
    assert out.startswith("watcher: DEGRADED (exit 1)\n")
    assert '  ! source "paste": no successful poll within 180 min (last success: never)' in out
    assert "  source old-feed" in out and "disabled" in out


def test_command_json_output(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(config, "--format", "json")
    document = json.loads(capsys.readouterr().out)
    assert code == 2 and document["status"] == "down" and document["exit_code"] == 2
    assert set(document) >= {"checked_at", "database", "reasons", "last_success", "sources", "alerts"}


def test_command_with_a_broken_configuration_is_a_cli_error(tmp_path: Path) -> None:
    from watcher.cli import CliError

    path = tmp_path / "sources.toml"
    path.write_text("[watcher]\nstate_dirr = 1\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    service.register(parser.add_subparsers())
    args = parser.parse_args(["status", "--config", str(path)])
    with pytest.raises(CliError, match=r'sources.toml:2: \[watcher\]: key "state_dirr" is unknown'):
        args.func(args)


# Needs the COMMANDS entry "service" in watcher/cli/__init__.py (see the report).
@pytest.mark.skipif("service" not in COMMANDS, reason="INTEGRATION: add 'service' to watcher.cli.COMMANDS")
def test_watcher_status_is_a_registered_command(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    from watcher.cli import main

    assert main(["status", "--config", str(config.path)]) == 2
    assert capsys.readouterr().out.startswith("watcher: DOWN (exit 2)")
