"""The `[web]` table: where the analyst's console listens and how long a session lasts.

    [web]
    listen = "127.0.0.1:8080"     # loopback by default; another address needs tls_cert and tls_key
    tls_cert = "/etc/watcher/web.crt"
    tls_key = "/etc/watcher/web.key"
    session_lifetime = "8h"

Read by `watcher.config.Validator` like every table (`web_settings`), so a mistake is one
`file:line: [web]: key "k" ...` line. A non-loopback `listen` without TLS is refused: the
console sends passwords and session cookies, which must not cross a network in clear (put a
reverse proxy with TLS in front, or reach a loopback console through `ssh -L`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Address, Validator, Where, is_loopback_host
from ..options import option, option_keys, read_options

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_SESSION_LIFETIME = 8 * 3600.0       # a working day
MIN_SESSION_LIFETIME = 60.0
DEFAULT_LOGIN_ATTEMPTS = 5                  # failed logins per user and per address in `login_window`
DEFAULT_LOGIN_WINDOW = 15 * 60.0


@dataclass(frozen=True)
class WebSettings:
    """The `[web]` table, validated (see the module docstring)."""

    listen: Address = option("address", Address("127.0.0.1", 8080), example=DEFAULT_LISTEN,
                             doc="host:port of the console; loopback unless tls_cert and tls_key are set")
    tls_cert: Path | None = option("path", None, doc="PEM certificate (chain) for HTTPS")
    tls_key: Path | None = option("path", None, doc="PEM private key of tls_cert")
    session_lifetime: float = option("seconds", DEFAULT_SESSION_LIFETIME, minimum=MIN_SESSION_LIFETIME,
                                     doc="time a sign-in lasts (then the analyst signs in again)")
    login_attempts: int = option("integer", DEFAULT_LOGIN_ATTEMPTS,
                                 doc="failed sign-ins allowed per user and per client address in login_window")
    login_window: float = option("seconds", DEFAULT_LOGIN_WINDOW, minimum=1.0,
                                 doc="the window of login_attempts")
    secure_cookie: bool = option("boolean", False,
                                 doc="mark the session cookie Secure without tls_cert (a TLS reverse proxy in front)")

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise ValueError(f"{missing} is missing: tls_cert and tls_key go together")
        if not self.tls and not is_loopback_host(self.listen.host):
            raise ValueError(f"listen is {str(self.listen)!r}, not a loopback address: set tls_cert and tls_key "
                             "(passwords and session cookies never cross a network in clear), or listen on "
                             "127.0.0.1 behind a TLS reverse proxy or an SSH tunnel")

    @property
    def tls(self) -> bool:
        """True when the console serves HTTPS itself."""
        return self.tls_cert is not None

    @property
    def host(self) -> str:
        return self.listen.host

    @property
    def port(self) -> int:
        return self.listen.port

    @property
    def url(self) -> str:
        """Where a browser reaches it (for the log and `watcher web`)."""
        return f"{'https' if self.tls else 'http'}://{self.listen}/"


def web_settings(validator: Validator, value: object) -> WebSettings | None:
    """`[web]` (`value`: the raw table, None when absent: no console) read by the configuration's
    validator, errors in its `file:line: [web]: key "k" ...` form."""
    if value is None:
        return None
    where = Where("web", None, "[web]")
    data: dict[str, Any] = validator.table(where, value)
    required, optional = option_keys(WebSettings)
    validator.check_keys(where, data, required + optional)
    settings: WebSettings = read_options(WebSettings, validator, where, data)
    return settings
