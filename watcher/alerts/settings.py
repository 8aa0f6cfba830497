"""Validate the `[alerts]` table of sources.toml into `AlertSettings`.

`watcher.config` keeps `[alerts]` as a raw dict; this module owns its meaning. Errors are
`ConfigError`s in the configuration's style, one line naming the file, the line and the key:

    sources.toml:31: [alerts]: key "min_severity" must be one of low, medium, high, critical, not 'hihg'

Values read from the environment (`env:NAME`) or from files are never echoed in errors: apprise
URLs usually carry credentials.

Keys and defaults (durations take seconds or "30s", "5m", "6h", "1d"):

    min_severity  = "medium"      findings from this severity up raise alerts. Medium, not high:
                                  a few NIRs without insurance context are still a leak a SOC
                                  must look at; `low` (insurer names only) is mostly noise.
    urls          = []            apprise URLs, optionally tagged like in apprise's text config:
                                  "critical,health=json://...". An entry "env:NAME",
                                  "file:PATH" or "cred:NAME" (or "tags=" before it) reads the
                                  URL from $NAME, a file, or a systemd credential
                                  (`watcher.credentials`)
    config        = (none)        apprise YAML/text config, relative to the config file's folder;
                                  when $CREDENTIALS_DIRECTORY/<its file name> exists (systemd
                                  LoadCredential=), that file is read instead
    jsonl         = "alerts.jsonl"  JSON-lines sink, relative to state_dir; false disables it
    max_tries     = 8             delivery attempts before an alert is `failed`
    retry_after   = "30s"         first retry delay; doubles on every failure (+-10% jitter)
    retry_max     = "1h"          longest delay between two attempts
    timeout       = "30s"         bound on one apprise call (one target). Keep it well above
                                  5.5 s: apprise spaces two requests to the same service by
                                  5.5 s (mailto and most plugins; measured, apprise 2.3), and a
                                  call that times out keeps running and may still deliver, so
                                  the retry would be a duplicate
    digest_below  = (none)        alerts below this severity are batched into one digest...
    digest_every  = "1h"          ...per period (health notices are never batched)
    health_after  = "6h"          a source failing this long sends one `health` notice
    health_check  = "1m"          how often the sender looks at source health
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, _Locator, parse_duration
from ..credentials import SecretError, SecretMissing, SecretSource, is_reference
from ..score import SEVERITIES, severity_rank

__all__ = ["ALERT_SEVERITIES", "AlertSettings", "TargetURL", "alert_settings", "alerts_error"]

ALERT_SEVERITIES = SEVERITIES[1:]
_KEYS = ("min_severity", "urls", "config", "jsonl", "max_tries", "retry_after", "retry_max",
         "timeout", "digest_below", "digest_every", "health_after", "health_check")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_TAGGED = re.compile(  # "critical,health=json://..." as in apprise's text config
    r"(?P<tags>[A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)\s*=\s*(?P<url>(?:env:|file:|cred:|[A-Za-z][A-Za-z0-9+.-]*://).*)"
)


@dataclass(frozen=True)
class TargetURL:
    """One `urls` entry: an apprise URL and the tags written before it (lowercase)."""

    url: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertSettings:
    """The `[alerts]` table, validated; paths are absolute, secret references resolved."""

    min_severity: str = "medium"
    urls: tuple[TargetURL, ...] = ()
    config: Path | None = None
    jsonl: Path | None = None
    max_tries: int = 8
    retry_after: float = 30.0
    retry_max: float = 3600.0
    timeout: float = 30.0
    digest_below: str | None = None
    digest_every: float = 3600.0
    health_after: float = 6 * 3600.0
    health_check: float = 60.0

    @property
    def has_targets(self) -> bool:
        """True when at least one apprise target is declared (urls or a config file)."""
        return bool(self.urls) or self.config is not None

    def alerts_on(self, severity: str) -> bool:
        """Whether an incident of `severity` raises alerts."""
        return severity_rank(severity) >= severity_rank(self.min_severity)

    def digested(self, severity: str) -> bool:
        """Whether an alert of `severity` waits for the digest rather than going out alone."""
        if self.digest_below is None or severity not in SEVERITIES:
            return False
        return severity_rank(severity) < severity_rank(self.digest_below)

    def retry_delay(self, tries: int) -> float:
        """Seconds before attempt `tries + 1`: doubling from retry_after, capped at retry_max."""
        return min(self.retry_after * 2 ** max(tries - 1, 0), self.retry_max)


def alert_settings(config: Config, environ: Mapping[str, str] | None = None) -> AlertSettings:
    """Validate `config.alerts` (the raw `[alerts]` table); ConfigError on the first problem."""
    env = os.environ if environ is None else environ
    return _AlertsValidator(config, env).settings(config.alerts)


def alerts_error(config: Config, key: str | None, message: str) -> ConfigError:
    """A ConfigError `file:line: [alerts]: key "k" message`, for problems found after the table
    was validated (apprise refusing a URL or its config file)."""
    return _AlertsValidator(config, {}).fail(key, message)


class _AlertsValidator:
    """Turns the raw table into `AlertSettings`, locating errors in the file's text."""

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.config = config
        self.environ = environ
        try:
            self.locator: _Locator | None = _Locator(config.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):  # validated already; line numbers are a bonus
            self.locator = None

    def fail(self, key: str | None, message: str) -> ConfigError:
        """`file:line: [alerts]: key "k" message` (returned: raise it)."""
        line = self.locator.line("alerts", None, key) if self.locator else None
        prefix = f"{self.config.path}:{line}" if line else f"{self.config.path}"
        subject = f'key "{key}" {message}' if key else message
        return ConfigError(f"{prefix}: [alerts]: {subject}")

    def settings(self, data: Mapping[str, Any]) -> AlertSettings:
        for key in data:
            if key not in _KEYS:
                raise self.fail(key, f"is unknown (expected one of: {', '.join(_KEYS)})")
        defaults = AlertSettings()
        settings = AlertSettings(
            min_severity=self.severity(data, "min_severity") or defaults.min_severity,
            urls=self.urls(data),
            config=self.apprise_config(data),
            jsonl=self.jsonl(data),
            max_tries=self.integer(data, "max_tries", defaults.max_tries),
            retry_after=self.seconds(data, "retry_after", defaults.retry_after),
            retry_max=self.seconds(data, "retry_max", defaults.retry_max),
            timeout=self.seconds(data, "timeout", defaults.timeout),
            digest_below=self.severity(data, "digest_below"),
            digest_every=self.seconds(data, "digest_every", defaults.digest_every),
            health_after=self.seconds(data, "health_after", defaults.health_after),
            health_check=self.seconds(data, "health_check", defaults.health_check),
        )
        if settings.retry_max < settings.retry_after:
            raise self.fail("retry_max", "must not be shorter than retry_after")
        return settings

    # -- typed getters ---------------------------------------------------------------------

    def severity(self, data: Mapping[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if value not in ALERT_SEVERITIES:
            raise self.fail(key, f"must be one of {', '.join(ALERT_SEVERITIES)}, not {value!r}")
        return str(value)

    def integer(self, data: Mapping[str, Any], key: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(key, f"must be a positive integer, not {value!r}")
        return value

    def seconds(self, data: Mapping[str, Any], key: str, default: float) -> float:
        if key not in data:
            return default
        try:
            return parse_duration(data[key])
        except ValueError:
            raise self.fail(key, f'must be a positive number of seconds or a duration like "30s", '
                                 f'"5m", "6h", not {data[key]!r}') from None

    def one_line(self, data: Mapping[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
            raise self.fail(key, "must be a non-empty one-line string")
        return value

    # -- keys ------------------------------------------------------------------------------

    def urls(self, data: Mapping[str, Any]) -> tuple[TargetURL, ...]:
        """Apprise URLs with their tags, secret references resolved; only the scheme is checked here
        (apprise parses them in `watcher.preflight` before the daemon starts, and in
        `check-config`; `watcher test-alert` sends through them)."""
        raw = data.get("urls", [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail("urls", "must be a list of apprise URLs")
        urls = []
        for number, value in enumerate(raw, 1):
            if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
                raise self.fail("urls", f"entry {number} must be a one-line string")
            tags: tuple[str, ...] = ()
            value = value.strip()
            tagged = _TAGGED.fullmatch(value)
            if tagged:
                tags = tuple(t.strip().lower() for t in tagged["tags"].split(","))
                value = tagged["url"]
            url = self.resolve_secret(number, value)
            if not _SCHEME.match(url):
                raise self.fail("urls", f"entry {number} is not an apprise URL (expected scheme://... "
                                        "or tags=scheme://...)")
            urls.append(TargetURL(url, tags))
        return tuple(urls)

    def resolve_secret(self, number: int, value: str) -> str:
        """`env:NAME`, `file:PATH`, `cred:NAME` -> the URL they name (never echoed, even in an
        error); anything else as is."""
        if not is_reference(value):
            return value
        try:
            return SecretSource(self.environ, self.config.path.resolve().parent).resolve(value).strip()
        except SecretMissing as exc:
            raise self.fail("urls", f"entry {number} {exc}") from None
        except SecretError as exc:
            raise self.fail("urls", f"entry {number}: {exc}") from None

    def apprise_config(self, data: Mapping[str, Any]) -> Path | None:
        """The apprise config file: systemd's credential copy first, else relative to the
        configuration's folder. It must exist now: a typo found at 3 a.m. is a lost alert."""
        value = self.one_line(data, "config")
        if value is None:
            return None
        path = Path(value).expanduser()
        credentials = self.environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            candidate = Path(credentials) / path.name
            if candidate.is_file():
                return candidate
        if not path.is_absolute():
            path = self.config.path.resolve().parent / path
        if not path.is_file():
            raise self.fail("config", f"names {str(path)!r}, which is not a readable file")
        return path

    def jsonl(self, data: Mapping[str, Any]) -> Path | None:
        """The JSONL sink under state_dir (default alerts.jsonl); false disables it."""
        value = data.get("jsonl", "alerts.jsonl")
        if value is False:
            return None
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            raise self.fail("jsonl", "must be a file name (relative to state_dir) or false")
        return self.config.watcher.state_dir / Path(value).expanduser()
