"""watcher.notify against real AF_UNIX datagram sockets, in-process and from a subprocess."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import watcher.notify
from watcher.notify import Notifier

# The package may not be installed (tests run from the checkout): give the child our path.
REPO_ROOT = str(Path(watcher.notify.__file__).resolve().parents[1])


def _bind(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a file; yields it and the NOTIFY_SOCKET value."""
    address = str(tmp_path / "notify.sock")
    with _bind(address) as sock:
        yield sock, address


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace; yields it and the '@name' value."""
    name = f"leak-watcher-test-{uuid.uuid4().hex}"
    with _bind("\0" + name) as sock:
        yield sock, "@" + name


def _receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_unset_socket_makes_every_method_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    results = [
        notifier.ready(),
        notifier.reloading(),
        notifier.stopping(),
        notifier.watchdog(),
        notifier.status("x"),
    ]
    assert results == [False] * 5


@pytest.mark.parametrize("value", ["", "relative/path", "@", "vsock:2:1234"])
def test_unusable_addresses_disable_notifications(value: str) -> None:
    assert not Notifier({"NOTIFY_SOCKET": value}).enabled


def test_in_process_messages_to_a_path_socket(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()
    assert notifier.ready()
    assert _receive(sock) == ["READY=1"]
    assert notifier.status("polling 3 sources")
    assert _receive(sock) == ["STATUS=polling 3 sources"]
    assert notifier.watchdog()
    assert _receive(sock) == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert _receive(sock) == ["STOPPING=1"]


def test_reloading_carries_a_current_monotonic_timestamp(
    path_socket: tuple[socket.socket, str],
) -> None:
    sock, address = path_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier({"NOTIFY_SOCKET": address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = _receive(sock)
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_namespace_socket(
    abstract_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, name = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    assert Notifier().ready("up")
    assert _receive(sock) == ["READY=1", "STATUS=up"]


def test_status_cannot_inject_other_assignments(path_socket: tuple[socket.socket, str]) -> None:
    sock, address = path_socket
    Notifier({"NOTIFY_SOCKET": address}).status("a\nREADY=1\r\nMAINPID=1")
    assert _receive(sock) == ["STATUS=a READY=1 MAINPID=1"]


def test_send_errors_never_raise_and_warn_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="watcher.notify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.stopping() is False
    levels = [r.levelno for r in caplog.records if r.name == "watcher.notify"]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


CHILD = """
import sys
from watcher.notify import Notifier
n = Notifier()
assert n.watchdog_interval() == 15.0, n.watchdog_interval()
n.ready()
n.status("polling 2 sources")
n.watchdog()
n.reloading()
n.ready()
n.stopping()
"""


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_subprocess_sends_the_whole_lifecycle(
    kind: str, request: pytest.FixtureRequest
) -> None:
    sock, address = request.getfixturevalue(f"{kind}_socket")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "30000000",
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
    }
    env.pop("WATCHDOG_PID", None)
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=30)
    messages = [_receive(sock) for _ in range(6)]
    assert messages[:3] == [["READY=1"], ["STATUS=polling 2 sources"], ["WATCHDOG=1"]]
    assert messages[3][0] == "RELOADING=1"
    assert messages[3][1].startswith("MONOTONIC_USEC=")
    assert int(messages[3][1].partition("=")[2]) > 0
    assert messages[4:] == [["READY=1"], ["STOPPING=1"]]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert Notifier(environ).watchdog_interval() == expected


def test_watchdog_pid_is_compared_with_the_calling_process(monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    monkeypatch.setattr(os, "getpid", lambda: 1)  # as seen from a forked child
    assert notifier.watchdog_interval() is None
