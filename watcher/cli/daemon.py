"""Daemon commands: `run`, `check-config`, `sources`, `findings`, `rekey`. Each takes --config.

`check-config` and `run` check the same things (`load(args, runtime=True)`): the file, then what
it needs on this machine (`watcher.preflight`), and refuse with the same one line, exit 2. A
state problem met later (a full disk, a database another program wrote) is one line too,
`path: problem`, exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, UTC
from typing import TYPE_CHECKING, Any

from ..wording import plural
from ..score import SEVERITIES
from ..timestamps import parse_duration
from . import CliError, print_json_lines

# Registering these commands must stay cheap: every `watcher` command, `scan` included, builds
# the whole parser. The configuration, the store, asyncio and sqlite3 are imported by the
# command that runs.
if TYPE_CHECKING:
    from ..config import Config
    from ..store import StateDB

log = logging.getLogger("watcher.config")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the daemon (polls the sources in sources.toml)")
    _common(run)
    run.add_argument("--once", action="store_true", help="one pass over every source, then exit")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.add_argument("--log-format", default="kv", choices=("kv", "json"))
    run.add_argument("--workers", type=int, default=None, help="analysis worker processes (default: up to 2)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate sources.toml without running")
    _common(check)
    check.set_defaults(func=cmd_check_config)

    sources = sub.add_parser("sources", help="health of each source: last poll, items, findings, failures")
    _common(sources)
    sources.add_argument("--format", choices=("text", "json"), default="text")
    sources.set_defaults(func=cmd_sources)

    findings = sub.add_parser("findings", help="findings recorded by the daemon")
    _common(findings)
    findings.add_argument("--format", choices=("text", "json"), default="text")
    findings.add_argument("--since", help="findings first seen at or after this ISO date/time, or this long "
                                          "ago (30m, 24h, 7d)")
    findings.add_argument("--min-severity", choices=SEVERITIES[1:])
    findings.set_defaults(func=cmd_findings)

    rekey = sub.add_parser("rekey", help="start a new secret key, deleting the fingerprints made with "
                           "the old one (stop the daemon first)")
    _common(rekey)
    rekey.add_argument("--forget", action="store_true", required=True,
                       help="delete the stored fingerprints (required: it says what rekeying costs)")
    rekey.set_defaults(func=cmd_rekey)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="sources.toml (default: ./sources.toml, then /etc/watcher/sources.toml)")


def load(args: argparse.Namespace, *, runtime: bool = False) -> Config:
    """The validated configuration, or a one-line CliError naming file, line and key.

    Every command checks that a state directory that exists is a directory; `runtime` (run,
    check-config) checks all that `watcher.preflight` does: the configuration runs here.
    """
    from ..alerts import alert_settings
    from ..config import ConfigError, find_config, load_config
    from ..preflight import check_runtime, check_state_dir_kind

    try:
        config = load_config(find_config(args.config))
        alert_settings(config)              # [alerts] is validated by the alerting stage
        check_state_dir_kind(config)
        if runtime:
            check_runtime(config)
        return config
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename}: {exc.strerror}") from None


def cmd_run(args: argparse.Namespace) -> int:
    """`watcher run`: a SIGTERM is a clean stop (exit 0) from the first instant, before the
    daemon's own handlers are installed too (loading and checking the configuration). The early
    handler only raises a flag, honoured as soon as the daemon starts: raising from a signal
    handler at an arbitrary point could leave a lock held and hang the exit."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        return _run(args, stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    import asyncio
    import sqlite3

    from ..config import DB_NAME
    from ..daemon import Daemon
    from ..logs import setup_logging
    from ..preflight import state_problem
    from ..privacy import SecretKeyError
    from ..store import NotAStateDatabaseError, SchemaTooNewError

    setup_logging(args.log_level, args.log_format)
    config = load(args, runtime=True)
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        if stop.is_set():
            return 0
        return asyncio.run(Daemon(config, once=args.once, workers=args.workers).run(stop))
    except BrokenPipeError:
        raise                               # the reader went away: `main` ends quietly
    except (OSError, sqlite3.Error, SecretKeyError, NotAStateDatabaseError, SchemaTooNewError) as exc:
        state_dir = config.watcher.state_dir
        raise CliError(state_problem(state_dir, state_dir / DB_NAME, exc)) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args, runtime=True)
    for warning in config.warnings:
        print(f"watcher: warning: {warning}", file=sys.stderr)
    enabled = config.enabled_sources
    tor = sum(1 for s in enabled if s.tor)
    print(f"{config.path}: ok: {plural(len(enabled), 'enabled source')} of {len(config.sources)}, "
          f"{tor} through Tor, {plural(len(config.rules), 'rule')}; state in {config.watcher.state_dir}")
    return 0


@contextmanager
def _state(config: Config, *, write: bool = False, create: bool = False) -> Iterator[StateDB]:
    """The state database, open for the block: read-only (`StateDB.read_only`: never created,
    migrated or locked for writing), or the writer for the commands that change it (`write`),
    created with its folder when the daemon has not run yet (`create`: `watcher watchlist
    import`, `watcher web adduser` on a new installation).

    A state problem (unreadable, not SQLite, not ours, a schema of another version, a full
    disk) is one CliError line naming the database, here and inside the block."""
    import sqlite3

    from ..config import DB_NAME
    from ..preflight import state_problem
    from ..store import NotAStateDatabaseError, SchemaTooNewError, SchemaTooOldError, StateDB

    path = config.watcher.state_dir / DB_NAME
    if not create and not path.exists():
        raise CliError(f"no state database at {path}: the daemon has not run yet (watcher run --once)")
    try:
        if create:
            config.watcher.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with StateDB(path) if write or create else StateDB.read_only(path) as db:
            yield db
    except BrokenPipeError:
        raise                               # the reader went away: `main` ends quietly
    except (OSError, sqlite3.Error, NotAStateDatabaseError, SchemaTooNewError, SchemaTooOldError) as exc:
        raise CliError(state_problem(config.watcher.state_dir, path, exc)) from None


def cmd_sources(args: argparse.Namespace) -> int:
    config = load(args)
    with _state(config) as db:
        rows = db.sources_health()
    if args.format == "json":
        print_json_lines(rows)
        return 0
    print(f"{'SOURCE':<20} {'KIND':<9} {'STATE':<8} {'LAST POLL':<20} {'ITEMS':>6} {'FINDINGS':>8} "
          f"{'FAILS':>5} {'FAILED':>6} {'PARKED':>6} {'NEXT POLL':<20} LAST ERROR")
    for row in rows:
        print(f"{row['name']:<20} {row['kind']:<9} {row['state']:<8} {row.get('last_poll') or '-':<20} "
              f"{row.get('items', 0):>6} {row.get('findings', 0):>8} {row.get('consecutive_failures', 0):>5} "
              f"{row.get('failed_items', 0):>6} {row.get('parked_items', 0):>6} "
              f"{row.get('next_poll') or '-':<20} {row.get('last_error') or ''}")
        for label, key in (("degraded", "warning"), ("last failed item", "last_item_error"),
                           ("last notice", "last_notice")):
            if row.get(key):
                print(f"{'':<20} {label}: {row[key]}")
    return 0


def parse_since(value: str | None) -> datetime | None:
    """`2026-11-01`, `2026-11-01T12:00:00Z`, or a duration back from now (`24h`, `7d`, `1d12h`:
    the configuration's durations, `watcher.timestamps.parse_duration`)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
        except ValueError:
            raise CliError(f"--since {value!r}: expected an ISO date/time or a duration like 24h or 7d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_findings(args: argparse.Namespace) -> int:
    """`watcher findings`: each finding with its id, its incident and the incident's triage
    state; every other place it was seen (a mirror, a repost of the same bytes) listed."""
    from ..alerts.records import finding_incidents

    config = load(args)
    since = parse_since(args.since)
    with _state(config) as db:
        rows = db.findings(since=since, min_severity=args.min_severity)
        incidents = finding_incidents(db, [row["id"] for row in rows])
    for row in rows:
        incident_id, state = incidents.get(row["id"], (None, None))
        row["incident_id"], row["incident_state"] = incident_id, state
    if args.format == "json":
        print_json_lines(rows)
        return 0
    for row in rows:
        for line in _finding_lines(row):
            print(line)
    return 0




def _finding_lines(row: dict[str, Any]) -> list[str]:
    """One finding as text: a head line with its ids, then post, reasons and mirrors."""
    nirs = int(row.get("counts", {}).get("nir", 0) or 0)
    incident = (f"incident #{row['incident_id']} ({row['incident_state']})"
                if row.get("incident_id") is not None else "no incident")
    lines = [f"{row['severity'].upper():<9} finding #{row['id']}  {incident}  {plural(nirs, 'NIR')}  "
             f"{row.get('first_seen')}  {row.get('source')}  {row.get('url') or row.get('item_id')}"]
    if row.get("posted_at") or row.get("author"):
        by = f" by {row['author']}" if row.get("author") else ""
        lines.append(f"{'':<9} posted {row.get('posted_at') or '(date unknown)'}{by}")
    lines.extend(f"{'':<9} {reason}" for reason in row.get("reasons", []))
    mirrors = row.get("items", [])[1:]
    if mirrors:
        lines.append(f"{'':<9} also seen at {plural(len(mirrors), 'other place')}:")
        lines.extend(f"{'':<11} {link.get('linked_at')}  {link.get('source')}  "
                     f"{link.get('url') or link.get('item_id')}" for link in mirrors)
    return lines


def cmd_rekey(args: argparse.Namespace) -> int:
    """`watcher rekey --forget`: delete every stored fingerprint, then put a new key in place.

    Fingerprints made with another key never match the new key's, so they go; the rest stays as
    history: findings, incidents, alerts and items. That is the simplest honest choice: an
    item already seen is not analysed again, nothing is re-alerted, and a finding's content
    hash (not keyed) still groups a repost of the same bytes; what is lost is grouping by NIR
    overlap with what was seen before: a leak reposted in another form opens a new incident.
    The fingerprints go first: a crash in between leaves no fingerprints and the old key.
    """
    from ..config import DB_NAME, SECRET_NAME
    from ..privacy import SecretKeyError, replace_secret

    config = load(args)
    state_dir = config.watcher.state_dir
    forgotten = 0
    if (state_dir / DB_NAME).exists():
        with _state(config, write=True) as db, db.transaction():
            forgotten = db.db.execute("DELETE FROM fingerprints").rowcount
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        replace_secret(state_dir / SECRET_NAME)
    except SecretKeyError as exc:
        raise CliError(str(exc)) from None
    print(f"{state_dir / SECRET_NAME}: new secret key; {plural(forgotten, 'fingerprint')} made with the old "
          "one deleted (findings, incidents and alerts kept)")
    return 0
