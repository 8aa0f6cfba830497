"""A REAL daemon process (`python -m watcher run`) under a fake service manager.

The test binds its own AF_UNIX datagram socket and hands it to the child as $NOTIFY_SOCKET
(with WATCHDOG_USEC=2000000: a ping every second), exactly as systemd does for Type=notify.
The daemon watches drop folders in tmp_path and keeps its state there. Everything is real:
the spawned worker pool, SQLite, signals. Waits poll with timeouts; there is no fixed sleep.

What is checked: READY=1, STATUS= and repeated WATCHDOG=1; a synthetic CSV of valid NIRs
becomes a finding (read back with `watcher findings --format json`); SIGHUP with a broken
sources.toml is refused (RELOADING=1 then READY=1) and the daemon keeps working; SIGHUP with a
valid file adding a source polls it; SIGTERM sends STOPPING=1 and exits 0; `--once` passes and
restarts keep the state; and no cleartext NIR, compact or spaced, ever reaches the log.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import watcher.daemon

from tests.support.daemon import (READY_TIMEOUT, STOP_TIMEOUT, assert_no_cleartext, child_env, db_rows, drop_csv,
                                  make_nirs, wait_until, write_config)

FINDING_TIMEOUT = 15.0
# Retention and metrics started by Daemon.run (see the wiring in the report).
WIRED = hasattr(watcher.daemon, "retention_task") and hasattr(watcher.daemon, "serve_metrics")


# --------------------------------------------------------------------------- helpers

def watcher_cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(config)],
                          capture_output=True, text=True, env=child_env(), timeout=timeout, cwd=config.parent)


def findings_json(config: Path) -> list[dict[str, Any]]:
    result = watcher_cli(config, "findings", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def finding_sources(state_dir: Path) -> list[str]:
    return [row[0] for row in db_rows(state_dir, "SELECT source FROM finding_links ORDER BY finding_id")]


# --------------------------------------------------------------------------- fake service manager


# --------------------------------------------------------------------------- the daemon's life

def test_daemon_lifecycle_under_a_service_manager(tmp_path: Path, start_daemon) -> None:
    inbox, second = tmp_path / "inbox", tmp_path / "second"
    inbox.mkdir()
    second.mkdir()
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"})
    state_dir = tmp_path / "state"
    all_nirs: list[str] = []

    daemon = start_daemon(config)
    notify = daemon.notify

    # Start-up: READY=1 with a status line, then a watchdog ping every second.
    ready = notify.wait_for("READY", "1", timeout=READY_TIMEOUT)
    assert "watching 1 sources" in notify.snapshot()[ready].get("STATUS", "")

    # A synthetic extract becomes a finding, readable with `watcher findings`.
    all_nirs += make_nirs(1)
    drop_csv(inbox, "extract-1.csv", all_nirs[-12:])
    wait_until(lambda: finding_sources(state_dir) == ["inbox"], FINDING_TIMEOUT, "the first finding")
    (finding,) = findings_json(config)
    assert finding["severity"] == "critical" and finding["counts"]["nir"] == 12
    assert finding["source"] == "inbox" and finding["item_id"] == "extract-1.csv"
    wait_until(lambda: notify.count("WATCHDOG", after=ready) >= 3, 5, "three watchdog pings")
    assert notify.count("STATUS", after=ready) >= 3
    wait_until(lambda: any("1 findings" in m.get("STATUS", "") for m in notify.snapshot()), 5,
               "a STATUS= line counting the finding")

    # SIGHUP with a broken file: refused, announced, and the daemon keeps working.
    config.write_text(config.read_text() + "\n[[sources]]\nname = \"broken\"\nkind = \"directory\"\n"
                      "pathh = \"./second\"\n", encoding="utf-8")
    mark = notify.last
    daemon.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", "1", after=mark)
    assert "MONOTONIC_USEC" in notify.snapshot()[reloading]
    ready_again = notify.wait_for("READY", "1", after=reloading)
    assert "reload refused" in notify.snapshot()[ready_again].get("STATUS", "")
    wait_until(lambda: "reload refused" in daemon.log, 5, "the refusal in the log")
    assert daemon.proc.poll() is None
    all_nirs += make_nirs(2)
    drop_csv(inbox, "extract-2.csv", all_nirs[-12:])
    wait_until(lambda: finding_sources(state_dir) == ["inbox", "inbox"], FINDING_TIMEOUT,
               "a finding after the refused reload")

    # SIGHUP with a valid file adding a second folder: the new source is polled.
    all_nirs += make_nirs(3)
    drop_csv(second, "extract-3.csv", all_nirs[-12:])
    write_config(config, {"inbox": "./inbox", "second": "./second"})
    mark = notify.last
    daemon.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", "1", after=mark)
    notify.wait_for("READY", "1", after=reloading)
    wait_until(lambda: finding_sources(state_dir) == ["inbox", "inbox", "second"], FINDING_TIMEOUT,
               "a finding from the source added by the reload")
    assert db_rows(state_dir, "SELECT last_success IS NOT NULL FROM sources WHERE name = 'second'") == [(1,)]
    assert "configuration reloaded" in daemon.log

    # SIGTERM: STOPPING=1 and a clean exit.
    mark = notify.last
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5
    notify.wait_for("STOPPING", "1", after=mark, timeout=2)

    log = daemon.log
    assert "Traceback" not in log, log
    assert "sd_notify send failed" not in log, log
    assert_no_cleartext(log, all_nirs)
    assert len(findings_json(config)) == 3


def test_once_passes_and_restarts_keep_the_state(tmp_path: Path, start_daemon) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"})
    nirs = make_nirs(7)
    drop_csv(inbox, "extract.csv", nirs)

    first = watcher_cli(config, "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "pass done" in first.stderr and "items=1 findings=1" in first.stderr
    assert [f["item_id"] for f in findings_json(config)] == ["extract.csv"]

    second = watcher_cli(config, "run", "--once")
    assert second.returncode == 0, second.stderr
    assert "items=0 findings=0" in second.stderr           # nothing new: the state persisted

    daemon = start_daemon(config)                           # and a long-running restart agrees
    daemon.notify.wait_for("READY", "1", timeout=READY_TIMEOUT)
    wait_until(lambda: 'msg="poll done" source=inbox items=0' in daemon.log, 10, "a first, empty poll")
    assert daemon.stop() == 0
    assert [f["item_id"] for f in findings_json(config)] == ["extract.csv"]
    for output in (first.stderr, second.stderr, daemon.log):
        assert_no_cleartext(output, nirs)


# --------------------------------------------------------------------------- needs the wiring

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


@pytest.mark.skipif(not WIRED, reason="INTEGRATION: needs retention/metrics started in Daemon.run (see report)")
def test_metrics_endpoint_of_a_real_daemon(tmp_path: Path, start_daemon) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"}, extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    nirs = make_nirs(11)
    drop_csv(inbox, "extract.csv", nirs)
    daemon = start_daemon(config)
    daemon.notify.wait_for("READY", "1", timeout=READY_TIMEOUT)
    wait_until(lambda: finding_sources(tmp_path / "state") == ["inbox"], FINDING_TIMEOUT, "the finding")

    def scraped() -> str | None:
        text = scrape(port)
        wanted = ('watcher_findings{severity="critical"} 1', 'watcher_polls_total{source="inbox",outcome="ok"}')
        return text if text and all(line in text for line in wanted) else None

    # The finding is recorded before its poll ends and is counted: wait for both.
    text = wait_until(scraped, 10, "metrics with the finding and the poll")
    assert 'watcher_source_up{source="inbox"} 1' in text
    assert 'watcher_polls_total{source="inbox",outcome="ok"}' in text
    assert 'watcher_findings_detected_total{source="inbox"} 1' in text
    assert "watcher_state_db_up 1" in text
    assert daemon.stop() == 0
    assert scrape(port) is None                             # the endpoint is gone with the daemon
    assert_no_cleartext(daemon.log, nirs)


# --------------------------------------------------------------------------- stopping at any moment

@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (a wedged Tor)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def hanging_site() -> Iterator[tuple[int, threading.Event]]:
    """An HTTP server whose pages never come: (port, set once a request arrived)."""
    asked = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        done = threading.Event()
        held: list[socket.socket] = []

        def serve() -> None:
            while not done.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                held.append(conn)
                asked.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1], asked
        done.set()
        thread.join(2)
        for conn in held:
            conn.close()


def test_sigterm_during_start_up_stops_at_once(tmp_path: Path, start_daemon, black_hole: int) -> None:
    """The Tor preflight waits 5 s on a SOCKS port that never answers; SIGTERM meanwhile ends
    the daemon within a second or two, with status 0 (was: 143, killed by the signal)."""
    config = tmp_path / "sources.toml"
    config.write_text(f'[watcher]\nstate_dir = "./state"\n[tor]\nsocks = "127.0.0.1:{black_hole}"\n'
                      '[[sources]]\nname = "onion"\nkind = "listing"\nurl = "http://example2345.onion/"\n'
                      'item_links = "a"\ntor = true\n', encoding="utf-8")
    daemon = start_daemon(config)
    wait_until(lambda: (tmp_path / "state" / "watcher.db").exists(), READY_TIMEOUT, "the database")
    time.sleep(0.5)                                # in the preflight now
    started = time.monotonic()
    assert daemon.stop() == 0, daemon.log
    assert time.monotonic() - started < 3
    assert daemon.notify.index_of("READY", "1") is None
    assert "Traceback" not in daemon.log
    assert "stop requested" in daemon.log
    assert db_rows(tmp_path / "state", "PRAGMA integrity_check") == [("ok",)]


def test_sigterm_during_a_once_pass_stops_it(tmp_path: Path, hanging_site: tuple[int, threading.Event]) -> None:
    port, asked = hanging_site
    config = tmp_path / "sources.toml"
    config.write_text(f'[watcher]\nstate_dir = "./state"\n[[sources]]\nname = "slow"\nkind = "listing"\n'
                      f'url = "http://127.0.0.1:{port}/archive"\nitem_links = "a"\ntimeout = 300\nallow_private = true\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--once", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=tmp_path)
    try:
        assert asked.wait(READY_TIMEOUT), "the pass never asked for the page"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
        assert proc.returncode == 0, err
        assert time.monotonic() - started < 3
        assert "Traceback" not in err
    finally:
        proc.kill()
    assert db_rows(tmp_path / "state", "PRAGMA integrity_check") == [("ok",)]


def catches_sigterm(pid: int) -> bool:
    """Whether process `pid` has a SIGTERM handler (bit 15 of SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0, 2.0])
def test_sigterm_at_any_moment_of_start_up_exits_0(tmp_path: Path, black_hole: int, delay: float) -> None:
    """From the moment the command handles SIGTERM at all (Python's own start excepted), a
    stop is clean: loading and checking the configuration, opening the state, the preflight."""
    config = tmp_path / "sources.toml"
    config.write_text(f'[watcher]\nstate_dir = "./state"\n[tor]\nsocks = "127.0.0.1:{black_hole}"\n'
                      '[[sources]]\nname = "onion"\nkind = "listing"\nurl = "http://example2345.onion/"\n'
                      'item_links = "a"\ntor = true\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=tmp_path)
    try:
        wait_until(lambda: catches_sigterm(proc.pid), READY_TIMEOUT, "a SIGTERM handler", interval=0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        proc.kill()
