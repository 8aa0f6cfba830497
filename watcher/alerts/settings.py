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
    webhooks      = []            JSON webhooks (`watcher.alerts.webhook`), best written as tables:

        [[alerts.webhooks]]
        url     = "https://siem.example/hook"   # or env:/file:/cred: (a URL may hold a token);
                                                # http:// only to a loopback address
        tags    = ["critical", "high"]          # routed like apprise targets; none: everything
        secret  = "cred:webhook-hmac"           # optional HMAC-SHA256 key: a reference only
        timeout = "10s"                         # bound on one POST
        ca_file = "siem-ca.pem"                 # optional extra CA (an internal PKI)

    misp          = (none)        push incidents to MISP (`watcher.alerts.misp_push`):

        [alerts.misp]
        url          = "https://misp.example"
        key          = "cred:misp-key"          # the automation key: a reference only
        min_severity = "high"                   # incidents from this severity up
        tags         = []                       # and, if set, carrying one of these tags
        distribution = 0                        # 0 your organisation ... 3 all communities
        tlp          = "tlp:amber"
        timeout      = "30s"
        ca_file      = (none)

`[alerts.misp]` sits under `[alerts]`, not at the top level: it is one more target of the
alert outbox (same retries, routing and per-target delivery state), so it belongs with them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import SECRET_NAME, Config, ConfigError, Validator, Where, is_loopback_host
from ..credentials import SecretError, SecretMissing, SecretSource, is_reference
from ..options import option
from ..score import SEVERITIES, severity_rank

__all__ = ["ALERT_SEVERITIES", "AlertSettings", "MispSettings", "TargetURL", "WebhookSettings", "alert_settings",
           "alerts_error"]

ALERT_SEVERITIES = SEVERITIES[1:]
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
TLP_TAGS = ("tlp:clear", "tlp:white", "tlp:green", "tlp:amber", "tlp:amber+strict", "tlp:red")
MIN_HMAC_CHARS = 16     # a shorter key is a typo or a placeholder, not a secret
_TAG = re.compile(r"[A-Za-z0-9_-]+")
_TAGGED = re.compile(  # "critical,health=json://..." as in apprise's text config
    r"(?P<tags>[A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)\s*=\s*(?P<url>(?:env:|file:|cred:|[A-Za-z][A-Za-z0-9+.-]*://).*)"
)


@dataclass(frozen=True)
class TargetURL:
    """One `urls` entry: an apprise URL and the tags written before it (lowercase)."""

    url: str
    tags: tuple[str, ...] = ()


def _hidden(declared: Any) -> Any:
    """An option field left out of the dataclass's repr (a key, an HMAC secret)."""
    declared.repr = False
    return declared


@dataclass(frozen=True)
class WebhookSettings:
    """One `[[alerts.webhooks]]` entry; `secret` (the HMAC key) is never shown in a repr."""

    url: str = option("webhook_url", required=True, doc="https URL (http only to loopback); env:/file:/cred:")
    tags: tuple[str, ...] = option("tags", (), doc="routing tags, as an apprise URL's")
    secret: bytes | None = _hidden(option("hmac_key", None, doc="HMAC-SHA256 key reference"))
    timeout: float = option("seconds", 10.0, doc="bound on one POST")
    ca_file: Path | None = option("ca_file", None, doc="extra CA certificates (PEM) to trust")


@dataclass(frozen=True)
class MispSettings:
    """`[alerts.misp]`: where incidents are pushed; `key` is never shown in a repr.

    `secret_file` (the installation key the event ids derive from) and `tor_sources` come
    from the rest of the configuration, not from the table."""

    url: str = option("webhook_url", required=True, doc="MISP base URL")
    key: str = _hidden(option("misp_key", required=True, doc="automation key reference"))
    tags: tuple[str, ...] = option("tags", (), doc="only alerts carrying one of these tags")
    min_severity: str = option("severity", "high", doc="incidents from this severity up are pushed")
    distribution: int = option("integer", 0, minimum=0, maximum=3, why=" (4, a sharing group, is not supported)",
                               doc="MISP distribution level")
    tlp: str = option("tlp", "tlp:amber", doc="TLP tag of the event")
    timeout: float = option("seconds", 30.0, doc="bound on one MISP request")
    ca_file: Path | None = option("ca_file", None, doc="extra CA certificates (PEM) to trust")
    secret_file: Path = Path(SECRET_NAME)
    tor_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertSettings:
    """The `[alerts]` table, validated; paths are absolute, secret references resolved."""

    min_severity: str = option("severity", "medium", doc="findings from this severity up raise alerts")
    urls: tuple[TargetURL, ...] = option("alert_urls", (), doc="apprise URLs, optionally tagged")
    config: Path | None = option("apprise_config", None, doc="apprise YAML/text configuration file")
    jsonl: Path | None = option("jsonl", None, always=True, doc="JSON-lines sink in state_dir; false disables it")
    max_tries: int = option("integer", 8, doc="delivery attempts before an alert is failed")
    retry_after: float = option("seconds", 30.0, doc="first retry delay (doubles)")
    retry_max: float = option("seconds", 3600.0, doc="longest delay between two attempts")
    timeout: float = option("seconds", 30.0, doc="bound on one apprise call")
    digest_below: str | None = option("severity", None, doc="alerts below this severity are batched")
    digest_every: float = option("seconds", 3600.0, doc="period of the digest")
    health_after: float = option("seconds", 6 * 3600.0, doc="a source failing this long sends a health notice")
    health_check: float = option("seconds", 60.0, doc="how often source health is looked at")
    webhooks: tuple[WebhookSettings, ...] = option("webhooks", (), doc="JSON webhooks ([[alerts.webhooks]])")
    misp: MispSettings | None = option("misp", None, doc="MISP instance incidents are pushed to ([alerts.misp])")

    def __post_init__(self) -> None:
        if self.retry_max < self.retry_after:
            raise ValueError("retry_max must not be shorter than retry_after")

    @property
    def has_targets(self) -> bool:
        """True when at least one target is declared (urls, an apprise config, a webhook, MISP)."""
        return bool(self.urls) or self.config is not None or bool(self.webhooks) or self.misp is not None

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


_WHERE = Where("alerts", None, "[alerts]")


def alert_settings(config: Config, environ: Mapping[str, str] | None = None) -> AlertSettings:
    """Validate `config.alerts` (the raw `[alerts]` table); ConfigError on the first problem."""
    env = os.environ if environ is None else environ
    validator = _AlertsValidator(config, env)
    return validator.section(AlertSettings, _WHERE, config.alerts)


def alerts_error(config: Config, key: str | None, message: str) -> ConfigError:
    """A ConfigError `file:line: [alerts]: key "k" message`, for problems found after the table
    was validated (apprise refusing a URL or its config file)."""
    return _AlertsValidator(config, {}).fail(_WHERE, key, message)


class _AlertsValidator(Validator):
    """The configuration's validator with the readers of `[alerts]`' own keys."""

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        try:
            text = config.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # validated already; line numbers are a bonus
            text = ""
        super().__init__(config.path, text, environ)
        self.state_dir_path = config.watcher.state_dir
        self.tor_sources = tuple(source.name for source in config.sources if source.tor or source.onion)

    # -- keys ------------------------------------------------------------------------------

    def alert_urls(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[TargetURL, ...]:
        """Apprise URLs with their tags, secret references resolved; only the scheme is checked here
        (apprise parses them in `watcher.preflight` before the daemon starts, and in
        `check-config`; `watcher test-alert` sends through them)."""
        raw = data[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail(where, key, "must be a list of apprise URLs")
        urls = []
        for number, value in enumerate(raw, 1):
            if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
                raise self.fail(where, key, f"entry {number} must be a one-line string")
            tags: tuple[str, ...] = ()
            value = value.strip()
            tagged = _TAGGED.fullmatch(value)
            if tagged:
                tags = tuple(t.strip().lower() for t in tagged["tags"].split(","))
                value = tagged["url"]
            url = self.resolve_secret(where, key, number, value)
            if not _SCHEME.match(url):
                raise self.fail(where, key, f"entry {number} is not an apprise URL (expected scheme://... "
                                        "or tags=scheme://...)")
            urls.append(TargetURL(url, tags))
        return tuple(urls)

    def resolve_secret(self, where: Where, key: str, number: int, value: str) -> str:
        """`env:NAME`, `file:PATH`, `cred:NAME` -> the URL they name (never echoed, even in an
        error); anything else as is."""
        if not is_reference(value):
            return value
        try:
            return SecretSource(self.environ, self.base).resolve(value).strip()
        except SecretMissing as exc:
            raise self.fail(where, key, f"entry {number} {exc}") from None
        except SecretError as exc:
            raise self.fail(where, key, f"entry {number}: {exc}") from None

    def apprise_config(self, where: Where, data: Mapping[str, Any], key: str) -> Path | None:
        """The apprise config file: systemd's credential copy first, else relative to the
        configuration's folder. It must exist now: a typo found at 3 a.m. is a lost alert."""
        value = self.string(where, data, key)
        if value is None:
            return None
        path = Path(value).expanduser()
        credentials = self.environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            candidate = Path(credentials) / path.name
            if candidate.is_file():
                return candidate
        if not path.is_absolute():
            path = self.base / path
        if not path.is_file():
            raise self.fail(where, key, f"names {str(path)!r}, which is not a readable file")
        return path

    def jsonl(self, where: Where, data: Mapping[str, Any], key: str) -> Path | None:
        """The JSONL sink under state_dir (default alerts.jsonl); false disables it."""
        value = data.get(key, "alerts.jsonl")
        if value is False:
            return None
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            raise self.fail(where, key, "must be a file name (relative to state_dir) or false")
        return self.state_dir_path / Path(value).expanduser()

    # -- webhooks and MISP ------------------------------------------------------------------

    def webhooks(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[WebhookSettings, ...]:
        """`[[alerts.webhooks]]` tables (or an array of inline tables), each validated."""
        raw = data[key]
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail(where, key, "must be an array of tables ([[alerts.webhooks]] url = ...)")
        hooks = []
        for index, entry in enumerate(raw):
            inner = self._inner(f"{where.table}.{key}", index, f"[alerts] webhooks entry {index + 1}")
            hooks.append(self.section(WebhookSettings, inner, self.table(inner, entry)))
        if len({hook.url for hook in hooks}) < len(hooks):
            raise self.fail(where, key, "lists one URL twice")
        return tuple(hooks)

    def misp(self, where: Where, data: Mapping[str, Any], key: str) -> MispSettings:
        """`[alerts.misp]`, with the installation key's path and the Tor sources added."""
        inner = self._inner(f"{where.table}.{key}", None, "[alerts.misp]")
        settings = self.section(MispSettings, inner, self.table(where, data[key], key))
        return replace(settings, secret_file=self.state_dir_path / SECRET_NAME, tor_sources=self.tor_sources)

    def _inner(self, table: str, index: int | None, label: str) -> Where:
        """Where a sub-table's errors point: its own header (`[[alerts.webhooks]]`), else the
        `[alerts]` table when it was written inline."""
        return Where(table, index, label) if self.locator.block(table, index) else Where("alerts", None, label)

    def webhook_url(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        """An https URL (a reference is resolved: a hook URL may carry a token); http only to a
        loopback address (a local log shipper), since the body is a leak's description."""
        value = self.string(where, data, key, required=True)
        assert value is not None
        url = self.resolve_secret(where, key, 1, value).strip() if is_reference(value) else value
        parts = urlsplit(url)
        shown = "the URL it names" if is_reference(value) else repr(url)
        try:
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise self.fail(where, key, f"has a bad port: {shown}") from None
        if parts.scheme not in ("https", "http") or not parts.hostname or any(c.isspace() for c in url):
            raise self.fail(where, key, f"must be an https:// URL, not {shown}")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise self.fail(where, key, f"must be https:// (http:// only to a loopback address): {shown}")
        return url

    def tags(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """A list of routing tags (letters, digits, - and _), lowercased."""
        raw = data[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in raw):
            raise self.fail(where, key, 'must be a list of tags like ["critical", "high"]')
        return tuple(dict.fromkeys(t.lower() for t in raw))

    def hmac_key(self, where: Where, data: Mapping[str, Any], key: str) -> bytes:
        """The HMAC key: a reference (env:/file:/cred:), never a literal in the file."""
        secret = self._reference(where, data, key)
        if len(secret) < MIN_HMAC_CHARS:
            raise self.fail(where, key, f"names a value shorter than {MIN_HMAC_CHARS} characters "
                                        "(use e.g. `openssl rand -hex 32`)")
        return secret.encode("utf-8")

    def misp_key(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        """MISP's automation key: a reference, never a literal in the file."""
        return self._reference(where, data, key)

    def _reference(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        value = self.string(where, data, key, required=True)
        assert value is not None
        if not is_reference(value.strip()):
            raise self.fail(where, key, "must name where the secret lives (env:NAME, file:PATH or cred:NAME), "
                                        "not hold it: keep secrets out of this file")
        return self.resolve_secret(where, key, 1, value.strip())

    def tlp(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        value = data[key]
        if not isinstance(value, str) or value.lower() not in TLP_TAGS:
            raise self.fail(where, key, f"must be one of: {', '.join(TLP_TAGS)}")
        return value.lower()

    def ca_file(self, where: Where, data: Mapping[str, Any], key: str) -> Path:
        """A PEM file of CA certificates, relative to the configuration's folder; it must exist."""
        path = self.read_path(where, data, key)
        if not path.is_file():
            raise self.fail(where, key, f"names {str(path)!r}, which is not a readable file")
        return path


