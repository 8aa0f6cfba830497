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
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import watcher.daemon
from watcher.detect.nir import nir_key

REPO_ROOT = Path(watcher.daemon.__file__).resolve().parents[1]
READY_TIMEOUT = 20.0       # the worker pool spawns processes
FINDING_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# What would make the child talk to the real service manager or keep its state elsewhere.
SERVICE_VARIABLES = ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                     "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "LISTEN_FDS", "LISTEN_PID")
# Retention and metrics started by Daemon.run (see the wiring in the report).
WIRED = hasattr(watcher.daemon, "retention_task") and hasattr(watcher.daemon, "serve_metrics")

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers

def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def make_nirs(seed: int, count: int = 12) -> list[str]:
    """`count` distinct valid 15-digit NIRs (mainland, common forms), keys from nir_key."""
    rng = random.Random(seed)
    nirs: set[str] = set()
    while len(nirs) < count:
        department = rng.choice([d for d in range(1, 96) if d != 20])
        body = (f"{rng.choice('12')}{rng.randrange(100):02d}{rng.randrange(1, 13):02d}"
                f"{department:02d}{rng.randrange(1, 991):03d}{rng.randrange(1, 1000):03d}")
        nirs.add(f"{body}{nir_key(body):02d}")
    return sorted(nirs)


def spaced(nir: str) -> str:
    """1 84 12 75 123 456 78"""
    return " ".join([nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]])


def drop_csv(folder: Path, name: str, nirs: list[str]) -> Path:
    """A synthetic health extract, half compact and half spaced NIRs, old enough to be settled."""
    rows = ["nom;prenom;date_naissance;nir;mutuelle"]
    for n, nir in enumerate(nirs):
        written = nir if n % 2 else spaced(nir)
        rows.append(f"NOM{n};Prenom{n};19{nir[1:3]}-{nir[3:5]}-01;{written};MGEN")
    path = folder / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    past = time.time() - 30                      # the directory source skips files still changing
    os.utime(path, (past, past))
    return path


def write_config(path: Path, folders: dict[str, str], extra: str = "") -> None:
    """sources.toml with state in ./state and one directory source per (name, folder)."""
    text = '[watcher]\nstate_dir = "./state"\n' + textwrap.dedent(extra)
    for name, folder in folders.items():
        text += f'\n[[sources]]\nname = "{name}"\nkind = "directory"\npath = "{folder}"\ninterval = 1\n'
    path.write_text(text, encoding="utf-8")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def watcher_cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(config)],
                          capture_output=True, text=True, env=child_env(), timeout=timeout, cwd=config.parent)


def findings_json(config: Path) -> list[dict[str, Any]]:
    result = watcher_cli(config, "findings", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def db_rows(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the daemon's database through a read-only connection ([] before it exists)."""
    path = state_dir / "watcher.db"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:          # not migrated yet
        return []


def finding_sources(state_dir: Path) -> list[str]:
    return [row[0] for row in db_rows(state_dir, "SELECT source FROM finding_links ORDER BY finding_id")]


def assert_no_cleartext(log: str, nirs: list[str]) -> None:
    for nir in nirs:
        assert nir not in log and spaced(nir) not in log, "a NIR reached the daemon's log"


# --------------------------------------------------------------------------- fake service manager

class NotifySocket:
    """The service manager's end of $NOTIFY_SOCKET: every datagram, decoded, in arrival order.

    A thread reads the socket at once, as systemd does: an AF_UNIX datagram queue holds only
    net.unix.max_dgram_qlen (10) messages, and the daemon's non-blocking sends would fail with
    EAGAIN while the test is busy elsewhere.
    """

    def __init__(self, folder: Path) -> None:
        path = str(folder / "notify.sock")
        if len(path) > 100:                      # sun_path is 108 bytes
            path = os.path.join(tempfile.mkdtemp(prefix="lw-notify-"), "n.sock")
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append(message)

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.messages)

    def index_of(self, key: str, value: str | None = None, after: int = -1) -> int | None:
        """Index of the first message after `after` that assigns `key` (to `value`)."""
        for index, message in enumerate(self.snapshot()):
            if index > after and key in message and (value is None or message[key] == value):
                return index
        return None

    def wait_for(self, key: str, value: str | None = None, after: int = -1, timeout: float = 10.0) -> int:
        """Index of the first matching message after `after`, waiting up to `timeout` seconds."""
        def found() -> int | None:
            index = self.index_of(key, value, after)
            return None if index is None else index + 1    # 0 is falsy: shift by one
        return wait_until(found, timeout, f"{key}={value or '*'} from the daemon") - 1

    def count(self, key: str, after: int = -1) -> int:
        return sum(1 for index, message in enumerate(self.snapshot()) if index > after and key in message)

    @property
    def last(self) -> int:
        """Index of the last message received so far (-1 when none)."""
        return len(self.snapshot()) - 1

    def close(self) -> None:
        self._closed.set()
        self._reader.join(2)
        self.sock.close()
        os.unlink(self.path)


@dataclass
class DaemonProcess:
    """`python -m watcher run --config CONFIG` with its own notify socket and a log file."""

    config: Path
    proc: subprocess.Popen[bytes]
    notify: NotifySocket
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM; the exit status (within STOP_TIMEOUT)."""
        self.signal(signal.SIGTERM)
        return self.proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """Last resort after a failed test: the daemon and its workers (its own session)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        notify = NotifySocket(tmp_path)
        log_path = tmp_path / f"daemon-{len(started)}.log"
        env = child_env({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"})
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=config.parent,
                                    start_new_session=True)
        daemon = DaemonProcess(config, proc, notify, log_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
        daemon.notify.close()


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
