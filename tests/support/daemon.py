"""`watcher` processes as a service manager runs them, for the daemon, CLI and disk tests:
the child's environment (no systemd variables, this checkout on PYTHONPATH), synthetic CSV
extracts, a read-only look at the database, the service manager's end of $NOTIFY_SOCKET and
the `start_daemon` fixture (tests/conftest.py registers this module as a plugin)."""

from __future__ import annotations

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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import watcher.daemon
from watcher.detect.nir import nir_key

REPO_ROOT = Path(watcher.daemon.__file__).resolve().parents[1]


READY_TIMEOUT = 20.0       # the worker pool spawns processes


STOP_TIMEOUT = 10.0


# What would make the child talk to the real service manager or keep its state elsewhere.
SERVICE_VARIABLES = ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                     "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "LISTEN_FDS", "LISTEN_PID")


T = TypeVar("T")


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


def assert_no_cleartext(log: str, nirs: list[str]) -> None:
    for nir in nirs:
        assert nir not in log and spaced(nir) not in log, "a NIR reached the daemon's log"


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


@asynccontextmanager
async def daemon_parts(tmp_path: Path, watcher_keys: str = "") -> AsyncIterator[watcher.daemon.Daemon]:
    """A `--once` Daemon over a directory source "inbox" (`tmp_path`) with its store, alert
    sender and item pipeline (one worker) opened, as `run()` would, for tests that drive
    `_poll` or the pipeline themselves; `watcher_keys` go to its [watcher] table."""
    from watcher.alerts import AlertSender, alert_settings
    from watcher.config import DB_NAME, load_config
    from watcher.pipeline import ItemPipeline
    from watcher.store import StateDB, Store

    path = tmp_path / "sources.toml"
    path.write_text(f'[watcher]\nstate_dir = "{tmp_path / "state"}"\n{watcher_keys}\n'
                    f'[[sources]]\nname = "inbox"\nkind = "directory"\npath = "{tmp_path}"\n', encoding="utf-8")
    config = load_config(path)
    daemon = watcher.daemon.Daemon(config, once=True, workers=1)
    config.watcher.state_dir.mkdir()
    daemon.store = await Store.open(config.watcher.state_dir / DB_NAME)
    daemon.alerts = AlertSender(daemon.store, alert_settings(config))
    daemon.pipeline = ItemPipeline(config, daemon.store, daemon.alerts, None, b"k" * 32, workers=1)
    await daemon.store.call(StateDB.upsert_source, "inbox", "directory")
    try:
        yield daemon
    finally:
        await daemon.pipeline.close()
        await daemon.store.close()
