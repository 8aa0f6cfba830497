"""systemd readiness and watchdog notifications (sd_notify(3)) without dependencies.

Under `Type=notify`, systemd passes the path of a datagram socket in `$NOTIFY_SOCKET` (a
filesystem path, or `@name` for the Linux abstract namespace). The daemon sends newline
separated `KEY=value` assignments to it: `READY=1` once it serves, `WATCHDOG=1` at least every
`$WATCHDOG_USEC / 2`, `RELOADING=1` + `MONOTONIC_USEC=` on SIGHUP, `STOPPING=1` on shutdown.

Outside systemd (a terminal, the tests, `make run`) `$NOTIFY_SOCKET` is unset and every method
is a no-op, so callers never need to check. Sending never raises: a lost notification must not
crash the daemon (systemd notices a missing watchdog ping by itself). The first failure is
logged at WARNING, later ones at DEBUG, per instance. There is no module-level state.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


def _socket_address(value: str | None) -> str | None:
    """Turn `$NOTIFY_SOCKET` into an address for `sendto`, or None when unusable.

    `/run/systemd/notify` is a path; `@name` is the abstract name `\\0name`. Anything else
    (empty, relative, or a `vsock:` address from newer systemd) disables notifications.
    """
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    log.warning("ignoring unsupported NOTIFY_SOCKET address", extra={"fields": {"address": value}})
    return None


def _positive_int(value: str | None) -> int | None:
    """Parse a strictly positive decimal integer from the environment, else None."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _one_line(text: str) -> str:
    """Keep a STATUS= text on one line: a newline would start a new assignment (injection)."""
    return " ".join(text.replace("\0", " ").splitlines())


class Notifier:
    """Send sd_notify messages to the service manager, if there is one.

    The environment is read once, at construction; pass `environ` to use another mapping
    (tests). Every sending method returns True if the datagram left, False otherwise.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET"))
        self._watchdog_usec = _positive_int(env.get("WATCHDOG_USEC"))
        self._watchdog_pid = _positive_int(env.get("WATCHDOG_PID"))
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when a notification socket was configured."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send raw `KEY=value` assignments in one datagram (see sd_notify(3) for keys)."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Non-blocking: a stuck service manager must never stall the event loop.
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            self._report_failure(exc)
            return False
        return True

    def _report_failure(self, exc: OSError) -> None:
        """Log the first send failure at WARNING and the following ones at DEBUG."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "sd_notify send failed", extra={"fields": {"error": repr(exc)}})

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd that startup is complete (`READY=1`), optionally with a status."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", f"STATUS={_one_line(status)}")

    def reloading(self) -> bool:
        """Announce a reload; send `ready()` when it is over.

        `MONOTONIC_USEC` lets systemd order this message against the reload request.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        """Announce a clean shutdown (`STOPPING=1`)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the watchdog (`WATCHDOG=1`)."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Set the one-line status shown by `systemctl status`. Never put identifiers in it."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of `$WATCHDOG_USEC`), or None if not asked.

        When `$WATCHDOG_PID` is set, the watchdog is meant for that process only: a child
        process that inherited the environment gets None.
        """
        if self._watchdog_usec is None:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000
