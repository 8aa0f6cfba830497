"""`watcher status`: the service's health from its state database, with a monitoring exit code.

    watcher status [--config PATH] [--format text|json]

Exit status (Nagios/Icinga style, usable as is by a check command):

- 0 ok: every enabled source polled successfully within its window, no failed alert;
- 1 degraded: some enabled sources failing, or late (no success within their window) while
  others are fresh, or degraded (their last poll succeeded with a warning: a login wall,
  links gone, an `expect` selector unmatched; schema 4 and later); failed alerts not
  acknowledged yet (schema 3 and later); no enabled source;
- 2 down: no database; or not one enabled source had a successful poll within its window.
  (A broken configuration is also 2, with one line on stderr, like every CLI error.)

A source's window is max(3 x its interval, 15 min): three missed polls, but never less than a
quarter of an hour, so a 10-second drop folder does not flap on a slow analysis, and a daemon
that was stopped is noticed within minutes. Failure backoff does not widen the window: a
backing-off source is failing, hence degraded anyway.

The configuration decides which sources count (enabled ones); rows of sources that were removed
or disabled are listed but never change the verdict. The database is opened read-only
(`mode=ro`): status never creates, migrates or locks it for writing, never leaves -wal/-shm
files behind, and works while the daemon runs (WAL readers do not block the writer).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..timestamps import parse_time
from ..wording import plural
from .daemon import load

if TYPE_CHECKING:       # `watcher scan` starts without the configuration and sqlite3
    from ..config import Config, SourceConfig

__all__ = ["EXIT_CODES", "Health", "SourceHealth", "evaluate", "register"]

EXIT_CODES = {"ok": 0, "degraded": 1, "down": 2}
MIN_WINDOW = timedelta(minutes=15)
MISSED_POLLS = 3
_SOURCE_COLUMNS = ("name", "kind", "state", "last_poll", "last_success", "consecutive_failures",
                   "failing_since", "last_error", "last_error_at")


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="service health from the state database "
                                           "(exit 0 ok, 1 degraded, 2 down)")
    status.add_argument("--config", help="sources.toml (default: ./sources.toml, then /etc/watcher/sources.toml)")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=cmd_status)


@dataclass
class SourceHealth:
    """One source as status sees it. `fresh`: a successful poll within `window_seconds`."""

    name: str
    kind: str
    enabled: bool
    in_config: bool
    interval_seconds: float | None
    window_seconds: float | None
    state: str | None = None
    last_poll: str | None = None
    last_success: str | None = None
    consecutive_failures: int = 0
    failing_since: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    warning: str | None = None
    fresh: bool = False


@dataclass
class Health:
    """The verdict (`status`, `exit_code`), why (`reasons`), and what it was made of.

    `alerts`: unacknowledged alerts per state, None when the database has no alerts table.
    """

    status: str
    checked_at: str
    database: str
    reasons: list[str] = field(default_factory=list)
    last_success: str | None = None
    sources: list[SourceHealth] = field(default_factory=list)
    alerts: dict[str, int] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, **asdict(self)}


def window(source: SourceConfig) -> timedelta:
    """How long an enabled source may go without a successful poll: max(3 x interval, 15 min)."""
    return max(timedelta(seconds=MISSED_POLLS * source.interval), MIN_WINDOW)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(config: Config, db_path: Path, now: datetime | None = None) -> Health:
    """The health of the service whose configuration is `config` and database `db_path`."""
    import sqlite3

    from ..store import NotAStateDatabaseError      # imported here: `watcher scan` starts without it

    now = now or datetime.now(UTC)
    health = Health(status="ok", checked_at=_stamp(now), database=str(db_path))
    if not db_path.is_file():
        return _down(health, f"no state database at {db_path}: the daemon has never run here (the "
                             "service keeps it in /var/lib/watcher: set state_dir, or $STATE_DIRECTORY)")
    try:
        rows, alerts = _read(db_path)
    except (sqlite3.Error, NotAStateDatabaseError) as exc:
        return _down(health, f"state database unreadable: {exc}")
    health.alerts = alerts
    health.sources = _sources(config, rows, now)
    health.last_success = max((s.last_success for s in health.sources if s.last_success), default=None)
    _judge(health)
    return health


def _down(health: Health, reason: str) -> Health:
    health.status = "down"
    health.reasons.append(reason)
    return health


def _read(db_path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, int] | None]:
    """Source rows by name and alert counts, from a read-only connection (`StateDB.read_only`:
    no -wal/-shm files left behind, any schema version: the columns are checked here)."""
    from ..metrics import alert_counts     # aiohttp: imported only when status runs
    from ..store import StateDB

    with StateDB.read_only(db_path, any_version=True) as state:
        conn = state.db
        present = {row[1] for row in conn.execute("PRAGMA table_info(sources)")}
        columns = _SOURCE_COLUMNS + (("warning",) if "warning" in present else ())
        cursor = conn.execute(f"SELECT {', '.join(columns)} FROM sources")
        rows = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor}
        return rows, alert_counts(conn, unacknowledged=True)


def _sources(config: Config, rows: dict[str, dict[str, Any]], now: datetime) -> list[SourceHealth]:
    """Configured sources first (in file order), then database rows the configuration lost."""
    found: list[SourceHealth] = []
    for source in config.sources:
        limit = window(source)
        entry = SourceHealth(name=source.name, kind=source.kind, enabled=source.enabled, in_config=True,
                             interval_seconds=source.interval, window_seconds=limit.total_seconds())
        _fill(entry, rows.pop(source.name, None))
        entry.fresh = bool(entry.last_success) and now - parse_time(entry.last_success) <= limit  # type: ignore[arg-type]
        found.append(entry)
    for name, row in sorted(rows.items()):
        entry = SourceHealth(name=name, kind=row["kind"], enabled=False, in_config=False,
                             interval_seconds=None, window_seconds=None)
        _fill(entry, row)
        found.append(entry)
    return found


def _fill(entry: SourceHealth, row: dict[str, Any] | None) -> None:
    """Copy a sources row into `entry` (nothing when the source was never recorded)."""
    if row is None:
        return
    for key in _SOURCE_COLUMNS[2:]:
        setattr(entry, key, row[key])
    entry.warning = row.get("warning")
    entry.consecutive_failures = int(row["consecutive_failures"] or 0)


def _judge(health: Health) -> None:
    """Set status and reasons from the sources and alerts already in `health`."""
    enabled = [s for s in health.sources if s.enabled]
    if not enabled:
        health.status = "degraded"
        health.reasons.append("no enabled source: nothing is watched")
    elif not any(s.fresh for s in enabled):
        health.status = "down"
        health.reasons.append("no enabled source had a successful poll within its window "
                              f"(last success: {health.last_success or 'never'})")
    for source in enabled:
        reason = _source_problem(source)
        if reason:
            health.reasons.append(reason)
            if health.status == "ok":
                health.status = "degraded"
    failed = (health.alerts or {}).get("failed", 0)
    if failed:
        health.reasons.append(f"{plural(failed, 'failed alert')} not acknowledged")
        if health.status == "ok":
            health.status = "degraded"


def _source_problem(source: SourceHealth) -> str | None:
    """Why an enabled source is not healthy, or None."""
    if source.consecutive_failures or source.state == "failing":
        since = source.failing_since or "?"
        error = f": {source.last_error}" if source.last_error else ""
        return (f'source "{source.name}" failing since {since} '
                f"({source.consecutive_failures} consecutive failures){error}")
    if not source.fresh:
        window_minutes = round((source.window_seconds or 0) / 60)
        return (f'source "{source.name}": no successful poll within {window_minutes} min '
                f"(last success: {source.last_success or 'never'})")
    if source.warning:
        return f'source "{source.name}" degraded: {source.warning}'
    return None


# --------------------------------------------------------------------------- output


def _ago(text: str | None, now: datetime) -> str:
    """`2026-11-28T16:40:00Z (3 min ago)`, or `never`."""
    if not text:
        return "never"
    seconds = max(0, int((now - parse_time(text)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{text} ({seconds // size} {unit} ago)"
    return f"{text} ({seconds} s ago)"


def format_text(health: Health) -> str:
    """A short human report: verdict, reasons, one line per source, alerts."""
    now = parse_time(health.checked_at)
    lines = [f"watcher: {health.status.upper()} (exit {health.exit_code})",
             f"  database      {health.database}",
             f"  last success  {_ago(health.last_success, now)}"]
    lines += [f"  ! {reason}" for reason in health.reasons]
    for source in health.sources:
        state = source.state or "never polled"
        if state == "ok" and source.warning:
            state = "degraded"
        if not source.in_config:
            state += ", not in the configuration"
        elif not source.enabled:
            state += ", disabled"
        lines.append(f"  source {source.name:<20} {state:<10} last success {_ago(source.last_success, now)}")
    if health.alerts is not None:
        pending, failed = health.alerts.get("pending", 0), health.alerts.get("failed", 0)
        lines.append(f"  alerts        {pending} pending, {failed} failed (unacknowledged)")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from ..config import DB_NAME

    config = load(args)
    health = evaluate(config, config.watcher.state_dir / DB_NAME)
    if args.format == "json":
        print(json.dumps(health.as_json(), ensure_ascii=False))
    else:
        print(format_text(health))
    return health.exit_code
