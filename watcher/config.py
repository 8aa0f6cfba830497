"""Load and validate `sources.toml`.

Every error is a `ConfigError` whose text is one line naming the file, the line, the section
(source or rule) and the key, and saying what is expected, e.g.

    sources.toml:14: source "some-paste": key "intervall" is unknown (expected one of: ...)

`tomllib` gives no line numbers for semantic errors, so `_Locator` finds them in the text: the
n-th `[[sources]]` block, then the `key =` line inside it (best effort: a key written as an
inline table of another line falls back to the block's header line).

A disabled source is checked like an enabled one, except that the secrets its headers refer
to (`env:NAME`, `file:PATH`, `cred:NAME`: see watcher.credentials) need not be there (so
shipped examples load on any machine).

`load_config` is pure validation: types, ranges (an interval of at least a second, `max_bytes`
at most 1 GiB...) and operator rules compiled by Hyperscan as the scanner compiles them, so a
rule that would kill every worker at start is refused here. What depends on the machine (the
state directory, drop folders, apprise targets) is checked by `watcher.preflight` before the
daemon starts. Doubtful but valid values (a network source polled more often than every 30 s)
are kept as one-line `Config.warnings` in the same `file:line: where: what` form.

Every table is a dataclass whose fields say how their key is read (`watcher.options.option`):
`[watcher]`, `[tor]`, `[retention]`, `[metrics]` and what every source shares are declared
here, `[scoring]` by `watcher.score.Policy`, `[[rules]]` by `watcher.detect.rules.Rule`,
`[alerts]` by `watcher.alerts.settings.AlertSettings`, `[evidence]` by
`watcher.evidence.EvidenceSettings`, `[web]` by `watcher.web.settings.WebSettings`, and a
kind's own options by its module (`watcher.sources.listing.ListingOptions`...). One validator
(`Validator`) reads them all through its readers, so every error has the same form. Adding a
kind: one module with its `Options` and `poll()`, and one line in `watcher.sources.registry`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from watcher.detect.rules import Rule, rule_error
from watcher.evidence import EvidenceSettings, evidence_settings
from watcher.options import option, option_keys, read_options, read_values
from watcher.score import SEVERITIES, Policy
from watcher.timestamps import parse_duration

if TYPE_CHECKING:
    from watcher.web.settings import WebSettings

DB_NAME = "watcher.db"        # in state_dir: the state database
SECRET_NAME = "secret.key"    # in state_dir: the installation's fingerprint key
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_MAX_BYTES = 1024 * 1024 * 1024  # a larger body is a mistake (one document held in a worker's memory)
MIN_INTERVAL = 1.0                  # seconds; less is a typo (0.001 polled 4,884 times in 11 s)
NETWORK_INTERVAL_WARNING = 30.0     # a network source polled more often is worth a warning
MIN_DOCUMENT_TIMEOUT = 1.0          # seconds; less would kill workers on any real document
DEFAULT_INTERVAL = 300.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_ITEMS = 200            # new items a poll takes (a first poll of a 10,000-link listing: 50 polls)
DEFAULT_DOCUMENT_TIMEOUT = 60.0    # seconds one document may hold a worker before it is killed
DEFAULT_ITEM_TRIES = 3             # analyses of a failing item before it is parked
DEFAULT_ITEMS_DAYS = 90
DEFAULT_FINDINGS_DAYS = 365
DEFAULT_VACUUM_EVERY = 7 * 86400.0
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
SYSTEM_CONFIG = Path("/etc/watcher/sources.toml")
RULE_SEVERITIES = tuple(s for s in SEVERITIES if s != "none")

_TOP_KEYS = ("watcher", "tor", "alerts", "scoring", "rules", "sources", "retention", "metrics", "evidence",
             "include", "web")
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,252}[A-Za-z0-9_])?|[0-9A-Fa-f:.]+:[0-9A-Fa-f:.]*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOML_POS_RE = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")


class ConfigError(Exception):
    """Invalid configuration; `str()` is one line: `file:line: where: what (expected ...)`."""


@dataclass(frozen=True)
class Address:
    """A `host:port` (an IPv6 host without its brackets); `str()` writes it back."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class WatcherSettings:
    """The `[watcher]` table."""

    state_dir: Path = option("state_dir", always=True,
                             doc="the state database and fingerprint key; relative to the configuration's "
                                 "folder (default ./state); systemd's $STATE_DIRECTORY wins")
    concurrency: int = option("integer", DEFAULT_CONCURRENCY, doc="simultaneous fetches, all sources together")
    document_timeout: float = option("seconds", DEFAULT_DOCUMENT_TIMEOUT, minimum=MIN_DOCUMENT_TIMEOUT,
                                     why=" (a worker is killed past it)",
                                     doc="one document's analysis; past it the worker is killed")
    item_tries: int = option("integer", DEFAULT_ITEM_TRIES, doc="analyses of a failing item before it is parked")


@dataclass(frozen=True)
class TorSettings:
    """The `[tor]` table: where the local Tor client's SOCKS5 port listens."""

    socks_address: Address = option("address", key="socks", required=True, example="127.0.0.1:9050",
                                    doc="the SOCKS port of the local Tor client")

    @property
    def socks(self) -> str:
        """`host:port` (IPv6 hosts in brackets)."""
        return str(self.socks_address)

    @property
    def socks_host(self) -> str:
        return self.socks_address.host

    @property
    def socks_port(self) -> int:
        return self.socks_address.port


@dataclass(frozen=True)
class RetentionSettings:
    """The `[retention]` table: how long the state database keeps what (see watcher.retention).

    Items (and the validators of URLs not polled since) are forgotten `items_days` after they
    were last seen, findings and their item links `findings_days` after. `fingerprints_days`
    (>= findings_days) keeps an old finding's fingerprints, stripped of its samples and links,
    so a leak that resurfaces is still recognised. `vacuum_every`: seconds between VACUUMs.
    """

    items_days: int = option("integer", DEFAULT_ITEMS_DAYS, doc="days an item is kept after it was last seen")
    findings_days: int = option("integer", DEFAULT_FINDINGS_DAYS, doc="days a finding is kept")
    fingerprints_days: int = option("integer", 0, doc="days an old finding's fingerprints are kept "
                                                      "(at least findings_days, the default)")
    vacuum_every: float = option("seconds", DEFAULT_VACUUM_EVERY, doc="time between two VACUUMs")

    def __post_init__(self) -> None:
        if not self.fingerprints_days:
            object.__setattr__(self, "fingerprints_days", self.findings_days)
        elif self.fingerprints_days < self.findings_days:
            raise ValueError(f"fingerprints_days must be at least findings_days ({self.findings_days}): "
                             f"a finding keeps its fingerprints, not {self.fingerprints_days}")


@dataclass(frozen=True)
class MetricsSettings:
    """The `[metrics]` table: where the Prometheus endpoint listens (a loopback address only)."""

    address: Address = option("loopback_address", Address("127.0.0.1", 9464), key="listen",
                              doc="host:port of the endpoint; loopback only (it has no authentication)")

    @property
    def host(self) -> str:
        return self.address.host

    @property
    def port(self) -> int:
        return self.address.port

    @property
    def listen(self) -> str:
        """`host:port` (IPv6 hosts in brackets)."""
        return str(self.address)


@dataclass(frozen=True)
class SourceConfig:
    """One `[[sources]]` entry, validated: what every kind shares, and `options`, the kind's
    own options (the dataclass its module declares, e.g. `sources.listing.ListingOptions`).

    `url` is the page fetched first (a listing, board or feed, a json source's `endpoint`:
    the key its options' `url_key` names); None for a directory.
    """

    name: str
    kind: str
    enabled: bool = option("boolean", True, doc="false keeps the source in the file without polling it")
    interval: float = option("seconds", DEFAULT_INTERVAL, minimum=MIN_INTERVAL,
                             doc="time between two polls (jittered)")
    url: str | None = None
    tor: bool = option("boolean", False, doc="fetch through [tor] socks (required for .onion URLs)")
    max_bytes: int = option("integer", DEFAULT_MAX_BYTES, maximum=MAX_MAX_BYTES,
                            why=" (1 GiB: one document is held in a worker's memory)",
                            doc="largest body read; a larger one is analysed truncated")
    headers: Mapping[str, str] = option("headers", factory=dict,
                                        doc='request headers; "env:NAME", "file:PATH", "cred:NAME" read secrets')
    user_agent: str | None = option("string", None, doc="User-Agent (default: a current browser's)")
    timeout: float | None = option("seconds", None, doc="bound on one request")
    connect_timeout: float | None = option("seconds", None, doc="bound on connecting")
    expect: str | None = option("selector", None, doc="CSS selector the main page must match (else: degraded)")
    header_hosts: tuple[str, ...] = option("hosts", (), doc="hosts beside the URL's that get `headers`")
    allow_private: bool = option("boolean", False, doc="may fetch loopback, private and link-local addresses")
    mention_severity: str = option("severity", "low",
                                   doc="severity of an insurer named here (a victim feed: high)")
    max_items: int = option("integer", DEFAULT_MAX_ITEMS, doc="new items one poll takes; the rest at the next polls")
    follow_links: tuple[str, ...] = option("hosts", (), doc="hosts whose links in an item are fetched as documents")
    backfill: float | None = option("seconds", None,
                                    doc="how far back the first polls go: an item posted longer than this "
                                        "before the source was added is recorded, not analysed (default: all)")
    options: Any = None                # the kind's own options (a dataclass its module declares)
    origin: tuple[Path, int] | None = field(default=None, compare=False)   # (file, index) of an included source

    @property
    def onion(self) -> bool:
        """True if the source's URL is an onion service."""
        return is_onion(self.url)


@dataclass(frozen=True)
class Config:
    """The whole configuration file, validated."""

    path: Path
    watcher: WatcherSettings
    tor: TorSettings | None
    alerts: dict[str, Any]
    policy: Policy
    rules: tuple[Rule, ...]
    sources: tuple[SourceConfig, ...]
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    metrics: MetricsSettings | None = None   # None: no metrics endpoint
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)   # default: dry mode, evidence off
    web: WebSettings | None = None           # None: no web console (watcher.web)
    warnings: tuple[str, ...] = ()           # one line each, `file:line: where: what`

    @property
    def enabled_sources(self) -> tuple[SourceConfig, ...]:
        """The sources to poll."""
        return tuple(s for s in self.sources if s.enabled)


def is_onion(url: str | None) -> bool:
    """True if `url`'s host is a `.onion` name (False for a URL that cannot be parsed)."""
    try:
        return bool(url) and is_onion_host(urlsplit(str(url)).hostname)
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (`127.0.0.1`, `::1`, `[::1]`)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_onion_host(host: str | None) -> bool:
    """True if `host` is a `.onion` name (any case, a final dot or not)."""
    return (host or "").rstrip(".").lower().endswith(".onion")


def find_config(cli_value: str | os.PathLike[str] | None) -> Path:
    """Config path: the explicit one, else ./sources.toml, else /etc/watcher/sources.toml."""
    if cli_value:
        return Path(cli_value)
    for candidate in (Path("sources.toml"), SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no configuration found: tried ./sources.toml and {SYSTEM_CONFIG} "
                      "(give one with --config)")


def systemd_state_dir(environ: Mapping[str, str]) -> Path | None:
    """The state directory systemd gives (`$STATE_DIRECTORY`, its first entry), or None."""
    value = environ.get("STATE_DIRECTORY", "")
    return Path(value.split(":")[0]) if value else None


def located_error(config: Config, table: str, index: int | None, label: str, key: str | None,
                  message: str, path: Path | None = None) -> ConfigError:
    """A ConfigError about an already loaded `config`, located like load_config's own
    (`file:line: label: key "k" message`): for checks made after loading (the filesystem,
    apprise). The file (`path`, default the configuration file) is read again for the line;
    without it the error names the file only."""
    path = path or config.path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    return Validator(path, text, {}).fail(Where(table, index, label), key, message)




def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, *,
                sources: bool = True) -> Config:
    """Read, parse and validate the configuration file at `path`.

    `environ` (default `os.environ`) resolves `env:NAME` header values and
    `$STATE_DIRECTORY` (set by systemd's StateDirectory=, wins over `state_dir`). Without
    `sources` the `[[sources]]` and `include` are left unread (`watcher scan` needs the rules,
    the scoring and the state directory: reading the sources imports every source kind, and
    aiohttp with them, 0.3 s of a scan's start-up).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(path, text, exc)) from None
    env = os.environ if environ is None else environ
    return Validator(path, text, env).config(data, sources=sources)


def _toml_error(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """One line `file:line:col: invalid TOML: reason` from tomllib's message."""
    message = str(exc).splitlines()[0]
    match = _TOML_POS_RE.match(message)
    if match:
        return f"{path}:{match.group(2)}:{match.group(3)}: invalid TOML: {match.group(1)}"
    if message.endswith("(at end of document)"):
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        return f"{path}:{line}: invalid TOML: {message.removesuffix(' (at end of document)')} at end of file"
    return f"{path}: invalid TOML: {message}"


class _Locator:
    """Finds the line of a table, of the n-th array-of-tables entry, and of a key inside it."""

    _HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")

    def __init__(self, text: str) -> None:
        # (line number, is array header, dotted name)
        self._headers: list[tuple[int, bool, str]] = []
        self._lines = text.splitlines()
        for number, line in enumerate(self._lines, 1):
            match = self._HEADER_RE.match(line)
            if match:
                name = re.sub(r"[\"'\s]", "", match.group(2))
                self._headers.append((number, match.group(1) == "[[", name))

    def block(self, name: str, index: int | None = None) -> tuple[int, int] | None:
        """(first, last) line numbers of table `name` (or its `index`-th array entry)."""
        seen = -1
        for position, (number, is_array, header) in enumerate(self._headers):
            if header != name or is_array != (index is not None):
                continue
            seen += 1
            if index is None or seen == index:
                return number, self._block_end(position, name)
        return None

    def _block_end(self, position: int, name: str) -> int:
        """Last line of the block starting at header `position` (sub-tables included)."""
        for number, _is_array, header in self._headers[position + 1:]:
            if not header.startswith(name + "."):
                return number - 1
        return len(self._lines)

    def line(self, name: str, index: int | None = None, key: str | None = None) -> int | None:
        """Line of `key` inside the block (the block's header line if not found)."""
        block = self.block(name, index)
        if block is None:
            return self._top_level_key(name)
        first, last = block
        if key is None:
            return first
        key_re = re.compile(rf"^\s*([\"']?){re.escape(key)}\1\s*[=.]")
        sub_re = re.compile(rf"^\s*\[\s*{re.escape(name)}\s*\.\s*([\"']?){re.escape(key)}\1\s*\]")
        for number in range(first + 1, last + 1):
            text = self._lines[number - 1]
            if key_re.match(text) or sub_re.match(text):
                return number
        return first

    def _top_level_key(self, key: str) -> int | None:
        """Line of a top-level `key = ...` (before the first table header)."""
        limit = self._headers[0][0] if self._headers else len(self._lines) + 1
        key_re = re.compile(rf"^\s*([\"']?){re.escape(key)}\1\s*[=.]")
        for number in range(1, limit):
            if key_re.match(self._lines[number - 1]):
                return number
        return None


@dataclass
class Where:
    """The section an error is about: table name, array index, and how to call it."""

    table: str
    index: int | None
    label: str


class Validator:
    """Turns the parsed TOML into a `Config`, raising `ConfigError` on the first problem."""

    def __init__(self, path: Path, text: str, environ: Mapping[str, str]) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.locator = _Locator(text)
        self.environ = environ
        self.warnings: list[str] = []

    # -- error helpers -------------------------------------------------------------------------

    def fail(self, where: Where, key: str | None, message: str) -> ConfigError:
        """A ConfigError `file:line: label: key "k" message` (returned, raise it)."""
        line = self.locator.line(where.table, where.index, key)
        prefix = f"{self.path}:{line}" if line else f"{self.path}"
        separator = "" if message.startswith(":") else " "
        subject = f'key "{key}"{separator}{message}' if key else message
        return ConfigError(f"{prefix}: {where.label}: {subject}")

    def table(self, where: Where, value: object, key: str | None = None) -> dict[str, Any]:
        """`value` if it is a table, else an error."""
        if not isinstance(value, dict):
            raise self.fail(where, key, f"must be a table, not {_type_name(value)}")
        return value

    def check_keys(self, where: Where, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        """Unknown keys are errors (they are usually typos of optional keys)."""
        for key in data:
            if key not in allowed:
                raise self.fail(where, key, f"is unknown (expected one of: {', '.join(allowed)})")

    # -- typed getters ---------------------------------------------------------------------------

    def string(self, where: Where, data: Mapping[str, Any], key: str, default: str | None = None,
               required: bool = False) -> str | None:
        """A non-empty single-line string."""
        if key not in data:
            if required:
                raise self.fail(where, None, f'key "{key}" is missing (expected a string)')
            return default
        value = data[key]
        if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
            raise self.fail(where, key, f"must be a non-empty one-line string, not {_show(value)}")
        return value

    def boolean(self, where: Where, data: Mapping[str, Any], key: str, default: bool) -> bool:
        """true or false."""
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(where, key, f"must be true or false, not {_show(value)}")
        return value

    def integer(self, where: Where, data: Mapping[str, Any], key: str, default: int,
                maximum: int | None = None, why: str = "", minimum: int = 1) -> int:
        """An integer from `minimum` (1: positive) to `maximum` (`why` says why in the error)."""
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            wanted = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
            raise self.fail(where, key, f"must be {wanted}, not {_show(value)}")
        if maximum is not None and value > maximum:
            raise self.fail(where, key, f"must be at most {maximum}{why}, not {value}")
        return value

    def seconds(self, where: Where, data: Mapping[str, Any], key: str,
                default: float | None, minimum: float | None = None, why: str = "") -> float | None:
        """A duration: seconds as a number, or "30s", "5m", "1h", "1d"; at least `minimum`."""
        if key not in data:
            return default
        try:
            seconds = parse_duration(data[key])
        except ValueError:
            raise self.fail(where, key, f'must be a positive number of seconds or a duration like '
                                        f'"30s", "5m", "1h", not {_show(data[key])}') from None
        if minimum is not None and seconds < minimum:
            raise self.fail(where, key, f"must be at least {minimum:g} s{why}, not {_show(data[key])}")
        return seconds

    def severity(self, where: Where, data: Mapping[str, Any], key: str, default: str) -> str:
        """One of low, medium, high, critical."""
        value = data.get(key, default)
        if value not in RULE_SEVERITIES:
            raise self.fail(where, key, f"must be one of: {', '.join(RULE_SEVERITIES)}, not {_show(value)}")
        return value

    def warn(self, where: Where, key: str | None, message: str) -> None:
        """Keep a warning, located and worded like an error."""
        self.warnings.append(str(self.fail(where, key, message)))

    def selector(self, where: Where, data: Mapping[str, Any], key: str,
                 required: bool = False) -> str | None:
        """A CSS selector that soupsieve compiles."""
        value = self.string(where, data, key, required=required)
        if value is None:
            return None
        import soupsieve          # here: a tenth of a second that `watcher scan` never needs

        try:
            soupsieve.compile(value)
        except Exception as exc:  # soupsieve raises SelectorSyntaxError and others
            reason = str(exc).splitlines()[0]
            raise self.fail(where, key, f"is not a valid CSS selector: {reason} ({value!r})") from None
        return value

    def url(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        """An absolute http(s) URL with a host."""
        value = self.string(where, data, key, required=True)
        assert value is not None
        problem = _url_problem(value)
        if problem:
            raise self.fail(where, key, f"must be an http:// or https:// URL ({problem}): {value!r}")
        return value

    # -- sections --------------------------------------------------------------------------------

    def config(self, data: dict[str, Any], sources: bool = True) -> Config:
        """Validate the whole document (but its sources without `sources`: see `load_config`)."""
        for key in data:
            if key not in _TOP_KEYS:
                where = Where(key, None, "top level")
                raise self.fail(where, None, f'"{key}" is unknown (expected one of: {", ".join(_TOP_KEYS)})')
        watcher = self.watcher(self.table(Where("watcher", None, "[watcher]"), data.get("watcher", {})))
        tor = self.tor(data.get("tor"))
        alerts = self.table(Where("alerts", None, "[alerts]"), data.get("alerts", {}))
        policy = self.policy(data.get("scoring", {}))
        rules = self.rules(data.get("rules", []))
        read = self.sources(data.get("sources", []), tor) if sources else ()
        if sources:
            read += self.included(data.get("include", []), tor, {s.name for s in read})
        retention = self.retention(data.get("retention", {}))
        metrics = self.metrics(data.get("metrics"))
        evidence = evidence_settings(self, data.get("evidence"))     # watcher.evidence: the sealed vault
        from .web.settings import web_settings      # here: it imports this module

        web = web_settings(self, data.get("web"))
        return Config(path=self.path, watcher=watcher, tor=tor, alerts=dict(alerts), policy=policy,
                      rules=rules, sources=read, retention=retention, metrics=metrics,
                      evidence=evidence, web=web, warnings=tuple(self.warnings))

    def included(self, value: object, tor: TorSettings | None, names: set[str]) -> tuple[SourceConfig, ...]:
        """The `[[sources]]` of the files `include` lists (glob patterns relative to this
        file's folder, each sorted): ready-made source definitions an operator turns on with
        one line. An included file holds `[[sources]]` only; its errors name it."""
        where = Where("include", None, "include")
        if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
            raise self.fail(where, None, f'"include" must be a list of file patterns like ["sources.d/*.toml"], '
                                         f"not {_show(value)}")
        result: list[SourceConfig] = []
        for pattern in value:
            paths = sorted(p for p in self.base.glob(pattern) if p.is_file()) if not Path(pattern).is_absolute() \
                else sorted(p for p in Path("/").glob(pattern.lstrip("/")) if p.is_file())
            if not paths:
                raise self.fail(where, None, f"{pattern!r} matches no file (relative to {self.base})")
            for path in paths:
                result.extend(self.include_file(path, tor, names))
        return tuple(result)

    def include_file(self, path: Path, tor: TorSettings | None, names: set[str]) -> list[SourceConfig]:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(_toml_error(path, text, exc)) from None
        child = Validator(path, text, self.environ)
        for key in data:
            if key != "sources":
                raise child.fail(Where(key, None, "top level"), None,
                                 f'"{key}" is not allowed in an included file (only [[sources]])')
        sources = []
        for index, source in enumerate(child.sources(data.get("sources", []), tor)):
            if source.name in names:
                raise child.fail(Where("sources", index, f'source "{source.name}"'), "name",
                                 f'duplicates the name "{source.name}" (source names must be unique)')
            names.add(source.name)
            sources.append(replace(source, origin=(path, index)))
        self.warnings.extend(child.warnings)
        return sources

    def section(self, cls: type, where: Where, data: Mapping[str, Any]) -> Any:
        """A table read into the dataclass `cls`, whose fields declare their keys
        (`watcher.options`); an unknown key is an error."""
        required, optional = option_keys(cls)
        self.check_keys(where, data, required + optional)
        return read_options(cls, self, where, data)

    def watcher(self, data: dict[str, Any]) -> WatcherSettings:
        """`[watcher]`: state_dir (relative to the config's folder; $STATE_DIRECTORY wins)..."""
        return self.section(WatcherSettings, Where("watcher", None, "[watcher]"), data)

    def tor(self, value: object) -> TorSettings | None:
        """`[tor]`: socks = "host:port"; None without it."""
        if value is None:
            return None
        where = Where("tor", None, "[tor]")
        data = self.table(where, value)
        if "socks" not in data:
            self.check_keys(where, data, option_keys(TorSettings)[0])
            return None
        return self.section(TorSettings, where, data)

    def retention(self, value: object) -> RetentionSettings:
        """`[retention]`: days to keep items and findings (fingerprints at least as long), vacuum period."""
        where = Where("retention", None, "[retention]")
        return self.section(RetentionSettings, where, self.table(where, value))

    def metrics(self, value: object) -> MetricsSettings | None:
        """`[metrics]`: listen = "127.0.0.1:9464" (the default); loopback addresses only."""
        if value is None:
            return None
        where = Where("metrics", None, "[metrics]")
        return self.section(MetricsSettings, where, self.table(where, value))

    def policy(self, value: object) -> Policy:
        """`[scoring]` thresholds -> score.Policy."""
        where = Where("scoring", None, "[scoring]")
        return self.section(Policy, where, self.table(where, value))

    def rules(self, value: object) -> tuple[Rule, ...]:
        """`[[rules]]` -> detect.rules.Rule, each compiled by Hyperscan as the scanner will."""
        if not isinstance(value, list):
            raise self.fail(Where("rules", None, "top level"), None, '"rules" must be an array of tables ([[rules]])')
        rules: list[Rule] = []
        names: set[str] = set()
        for index, entry in enumerate(value):
            where = Where("rules", index, f"rule #{index + 1}")
            data = self.table(where, entry)
            rule = self.rule(where, data)
            if rule.name in names:
                raise self.fail(where, "name", f'duplicates the name "{rule.name}" (rule names must be unique)')
            names.add(rule.name)
            rules.append(rule)
        return tuple(rules)

    def rule(self, where: Where, data: dict[str, Any]) -> Rule:
        """One rule: name, exactly one of keywords/regex, severity, case_sensitive."""
        if isinstance(data.get("name"), str) and data["name"].strip():
            where.label = f'rule "{data["name"]}"'
        required, optional = option_keys(Rule)
        self.check_keys(where, data, required + optional)
        if ("keywords" in data) == ("regex" in data):
            raise self.fail(where, None, 'needs exactly one of "keywords" (a list of strings) or "regex" (a string)')
        rule: Rule = read_options(Rule, self, where, data)
        problem = rule_error(rule)
        if problem:
            raise self.fail(where, "regex" if rule.regex is not None else "keywords", problem)
        return rule

    def sources(self, value: object, tor: TorSettings | None) -> tuple[SourceConfig, ...]:
        """`[[sources]]` entries; names are unique."""
        if not isinstance(value, list):
            raise self.fail(Where("sources", None, "top level"), None,
                            '"sources" must be an array of tables ([[sources]])')
        result: list[SourceConfig] = []
        names: set[str] = set()
        for index, entry in enumerate(value):
            where = Where("sources", index, f"source #{index + 1}")
            source = self.source(where, self.table(where, entry), tor)
            if source.name in names:
                raise self.fail(where, "name", f'duplicates the name "{source.name}" (source names must be unique)')
            names.add(source.name)
            result.append(source)
        return tuple(result)

    def source(self, where: Where, data: dict[str, Any], tor: TorSettings | None) -> SourceConfig:
        """One source: common keys, then the keys of its kind."""
        raw_name = data.get("name")
        if isinstance(raw_name, str) and raw_name.strip():
            where.label = f'source "{raw_name}"'
        name = self.string(where, data, "name", required=True)
        assert name is not None
        if not _NAME_RE.fullmatch(name):
            raise self.fail(where, "name", "must be 1-64 letters, digits, '.', '_' or '-', "
                                           f"starting with a letter or digit, not {name!r}")
        kind = self.string(where, data, "kind", required=True)
        assert kind is not None
        from .sources.registry import SOURCE_CLASSES     # here: the source modules import this one

        if kind not in SOURCE_CLASSES:
            raise self.fail(where, "kind", f"must be one of: {', '.join(SOURCE_CLASSES)}, not {_show(kind)}")
        source_class = SOURCE_CLASSES[kind]
        options_class = source_class.Options
        required, optional = option_keys(options_class)
        url_key: str | None = getattr(options_class, "url_key", None)
        common_keys = tuple(k for k in option_keys(SourceConfig)[1] if k != "tor" or source_class.uses_network)
        self.check_keys(where, data, ("name", "kind") + common_keys + ((url_key,) if url_key else ())
                        + required + optional)
        if url_key and url_key not in data:
            needs = ", ".join((url_key,) + required)
            raise self.fail(where, None, f'key "{url_key}" is missing (a {kind} source needs: {needs})')
        common = read_values(SourceConfig, self, where, data)
        interval = common.get("interval", DEFAULT_INTERVAL)
        if common.get("enabled", True) and kind != "directory" and interval < NETWORK_INTERVAL_WARNING:
            self.warn(where, "interval", f"is {interval:g} s: a network source polled more often than every "
                                         f"{NETWORK_INTERVAL_WARNING:g} s loads the site and stands out")
        if kind == "directory":
            for key in ("header_hosts", "allow_private", "follow_links"):
                if common.get(key):
                    raise self.fail(where, key, "applies to network sources, not to a directory source")
        if common.get("expect") is not None and kind in ("directory", "json", "telegram"):
            raise self.fail(where, "expect", f"applies to the pages of listing, forum, feed and privatebin "
                                             f"sources, not to a {kind} source")
        url = self.url(where, data, url_key) if url_key else None
        options = read_options(options_class, self, where, data)
        url = url or getattr(options, "page_url", None)      # a page the options derive (telegram)
        source = SourceConfig(name=name, kind=kind, url=url, options=options, **common)
        self.check_tor(where, source, tor)
        return source

    def check_tor(self, where: Where, source: SourceConfig, tor: TorSettings | None) -> None:
        """`tor = true` needs `[tor] socks`; an onion URL, the source's or in any of its options
        (an `item_url` template), needs `tor = true` (no DNS leak)."""
        if source.tor and tor is None:
            raise self.fail(where, "tor", 'is true but there is no [tor] socks = "host:port" '
                                          '(the SOCKS port of the local Tor client)')
        if source.onion and not source.tor and source.options.url_key:
            raise self.fail(where, source.options.url_key, "is a .onion URL: set tor = true")
        for field_, opt in ((f, f.metadata["option"]) for f in dataclasses.fields(source.options)
                            if "option" in f.metadata):
            value = getattr(source.options, field_.name)
            if isinstance(value, str) and is_onion(value.replace("{", "").replace("}", "")) and not source.tor:
                raise self.fail(where, opt.key or field_.name, "is a .onion URL: set tor = true")

    def headers(self, where: Where, data: Mapping[str, Any], key: str) -> dict[str, str]:
        """Header table; values "env:NAME", "file:PATH" and "cred:NAME" are secrets read from
        the environment, a file or a systemd credential (`watcher.credentials`).

        A missing variable, file or credential is an error for an enabled source and drops the
        header of a disabled one. Values are never echoed in errors (they are often secrets).
        """
        from .credentials import SecretError, SecretMissing, SecretSource, is_reference

        resolve_env = data.get("enabled", True) is not False
        table = self.table(where, data[key], key)
        secrets = SecretSource(self.environ, self.base)
        headers: dict[str, str] = {}
        for name, value in table.items():
            if not _HEADER_NAME_RE.fullmatch(name):
                raise self.fail(where, "headers", f": invalid header name {name!r}")
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise self.fail(where, "headers", f': {name} must be a one-line string, "env:NAME", '
                                                  '"file:PATH" or "cred:NAME"')
            if is_reference(value):
                try:
                    value = secrets.resolve(value)
                except SecretMissing as exc:
                    if resolve_env:
                        raise self.fail(where, "headers", f": {name} {exc}") from None
                    continue
                except SecretError as exc:
                    raise self.fail(where, "headers", f": {name}: {exc}") from None
            headers[name] = value
        return headers

    def hosts(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """A list of host names (or IP literals, without brackets or port), lower-cased."""
        value = data.get(key, [])
        if not isinstance(value, list):
            raise self.fail(where, key, f'must be a list of host names like ["api.example.org"], not {_show(value)}')
        hosts: list[str] = []
        for host in value:
            if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
                raise self.fail(where, key, f"must list host names only (no scheme, port or path), not {_show(host)}")
            hosts.append(host.lower().rstrip("."))
        return tuple(hosts)

    # -- readers of the tables' options (see watcher.options) -----------------------------------

    def state_dir(self, where: Where, data: Mapping[str, Any], key: str) -> Path:
        """The state folder: $STATE_DIRECTORY (systemd's StateDirectory=) wins; else the key,
        relative to the configuration's folder, default ./state."""
        value = self.string(where, data, key, default="./state")
        assert value is not None
        return systemd_state_dir(self.environ) or self.base / Path(value).expanduser()

    def address(self, where: Where, data: Mapping[str, Any], key: str, example: str) -> Address:
        """"host:port" (IPv6 in brackets)."""
        value = self.string(where, data, key, required=True)
        assert value is not None
        try:
            return Address(*split_host_port(value))
        except ValueError as exc:
            raise self.fail(where, key, f'must be "host:port" like "{example}" ({exc}): {value!r}') from None

    def loopback_address(self, where: Where, data: Mapping[str, Any], key: str) -> Address:
        """"host:port" on a loopback address (localhost is 127.0.0.1)."""
        address = self.address(where, data, key, DEFAULT_METRICS_LISTEN)
        host = "127.0.0.1" if address.host.lower() == "localhost" else address.host
        if not is_loopback_host(host):
            raise self.fail(where, key, "must be a loopback address (127.0.0.1, [::1] or localhost): "
                                        f"the endpoint has no authentication, not {data[key]!r}")
        return Address(host, address.port)

    def keywords(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """A non-empty list of non-empty strings."""
        raw = data[key]
        if not isinstance(raw, list) or not raw or not all(isinstance(k, str) and k.strip() for k in raw):
            raise self.fail(where, key, f"must be a non-empty list of non-empty strings, not {_show(raw)}")
        return tuple(raw)

    def read_path(self, where: Where, data: Mapping[str, Any], key: str) -> Path:
        """A folder or file, relative to the configuration file's folder; `~` expanded."""
        raw = self.string(where, data, key, required=True)
        assert raw is not None
        return self.base / Path(raw).expanduser()

    def template(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        """A URL template using {id} and {href} only, giving an http(s) URL."""
        template = self.string(where, data, key, required=True)
        assert template is not None
        try:
            placeholders = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            raise self.fail(where, key, f"is not a valid template ({exc}); use {{id}} and {{href}}") from None
        unknown = placeholders - {"id", "href"}
        if unknown:
            raise self.fail(where, key, f"uses unknown placeholders {sorted(unknown)} "
                                        "(expected {id} and/or {href})")
        problem = _url_problem(template.format(id="x", href="http://example.org/x"))
        if problem:
            raise self.fail(where, key, f"must give an http:// or https:// URL ({problem}): {template!r}")
        return template

    def dotted(self, where: Where, data: Mapping[str, Any], key: str, required: bool = False) -> str | None:
        """A dotted field path like "files.*.raw_url" (no empty segments)."""
        value = self.string(where, data, key, required=required)
        if value is not None and any(not part.strip() for part in value.split(".")):
            raise self.fail(where, key, f'must be a dotted field path like "files.*.raw_url", not {value!r}')
        return value

    def dotted_list(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """A non-empty list of dotted field paths."""
        value = data[key]
        if not isinstance(value, list) or not value:
            raise self.fail(where, key, f'must be a list of dotted field paths like ["victim", "description"], '
                                        f"not {_show(value)}")
        return tuple(self.dotted(where, {key: path}, key) or "" for path in value)

    def json_path(self, where: Where, data: Mapping[str, Any], key: str) -> str:
        """A dotted path that may be "" (the top level)."""
        value = data[key]
        if not isinstance(value, str):
            raise self.fail(where, key, 'must be a dotted path string ("" for a top-level list), '
                                        f"not {_show(value)}")
        return value.strip()


def split_host_port(value: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError otherwise."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([A-Za-z0-9.\-]+):(\d+)", value.strip())
    if not match:
        raise ValueError("no host:port")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise ValueError("port out of range")
    return host, port


def _url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL with a host, or None."""
    if any(c.isspace() for c in value):
        return "contains whitespace"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme or 'missing'!s}"
    if not parts.hostname:
        return "no host"
    return None


def _type_name(value: object) -> str:
    """TOML-ish name of a parsed value's type."""
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """Short one-line rendering of a value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

