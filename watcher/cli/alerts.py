"""Alert commands: `alerts [list|show ID|ack ID|retry ID|retry --failed]`, `test-alert`.
Each takes --config. (`incidents` and `suppress` are in `watcher.cli.incidents`.)

`alerts` reads the daemon's state database (they may run while it runs: SQLite
in WAL mode lets readers in, and `ack` and `retry` are one short write transaction each).
`retry` puts failed alerts back in the outbox (see `records.requeue_failed`); the running
daemon's sender picks them up within seconds, so the command never talks to the daemon.
`test-alert` sends a harmless message through the configured apprise targets and prints each
target's result; it exits 1 if any target failed, 2 if there is no target or the configuration
is broken.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..timestamps import format_time
from . import CliError, print_json_lines
from .daemon import _common, _state, load, parse_since
from ..wording import plural

if TYPE_CHECKING:          # the configuration and asyncio are imported when a command runs
    from ..config import Config
    from ..store import StateDB

ID_HELP = "alert number (first column of `watcher alerts`) or Alert ID"


def register(sub: argparse._SubParsersAction) -> None:
    alerts = sub.add_parser("alerts", help="alerts raised by the daemon: list, show ID, ack ID, "
                                           "retry ID|--failed")
    _common(alerts)
    alerts.add_argument("action", nargs="?", choices=("list", "show", "ack", "retry"), default="list")
    alerts.add_argument("id", nargs="?", metavar="ID", help=ID_HELP)
    alerts.add_argument("--failed", action="store_true",
                        help="retry: every failed alert (instead of one ID)")
    alerts.add_argument("--format", choices=("text", "json"), default="text")
    alerts.add_argument("--limit", type=int, default=50, help="list: how many of the latest alerts (default 50)")
    alerts.add_argument("--state", action="append", choices=("pending", "sent", "logged", "failed"),
                        help="list: only alerts in this state (repeatable)")
    alerts.add_argument("--since", help="list: alerts created at or after this ISO date/time, or this long "
                                        "ago (30m, 24h, 7d)")
    alerts.set_defaults(func=cmd_alerts)

    test = sub.add_parser("test-alert", help="send a harmless test alert through the configured targets")
    _common(test)
    test.add_argument("--tag", help="only the targets this tag routes to (e.g. critical, leak, health)")
    test.set_defaults(func=cmd_test_alert)


def _settings(config: Config):
    from ..alerts import alert_settings
    from ..config import ConfigError

    try:
        return alert_settings(config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


# --------------------------------------------------------------------------- alerts


def cmd_alerts(args: argparse.Namespace) -> int:
    from ..alerts import records

    config = load(args)
    if args.failed and (args.action != "retry" or args.id):
        raise CliError("--failed goes with `alerts retry` and no ID: it re-queues every failed alert")
    if args.action != "list" and not args.id and not args.failed:
        more = " or --failed" if args.action == "retry" else ""
        raise CliError(f"alerts {args.action}: give an alert ID ({ID_HELP}){more}")
    with _state(config, write=args.action in ("ack", "retry")) as db:
        if args.action == "retry":
            return _retry(db, args)
        if args.action == "list":
            since = parse_since(args.since)
            alerts = records.list_alerts(db, args.limit, tuple(args.state or ()),
                                         format_time(since) if since else None)
            states = records.alert_incident_states(db, sorted({a.incident_id for a in alerts if a.incident_id}))
            _print_list(alerts, states, args.format)
            return 0
        alert = records.ack_alert(db, args.id) if args.action == "ack" else records.alert_by_ref(db, args.id)
    if alert is None:
        raise CliError(f"no alert {args.id!r} (see `watcher alerts`)")
    if args.format == "json":
        print_json_lines([alert.to_json()])
    elif args.action == "ack":
        print(f"alert {alert.id} acknowledged at {alert.acked_at}")
    else:
        _print_one(alert)
    return 0


def _retry(db: StateDB, args: argparse.Namespace) -> int:
    """Re-queue one failed alert (ID) or all of them (--failed); prints how many."""
    from ..alerts import records

    alert_id = None
    if args.id:
        alert = records.alert_by_ref(db, args.id)
        if alert is None:
            raise CliError(f"no alert {args.id!r} (see `watcher alerts`)")
        if alert.state != "failed":
            raise CliError(f"alert {alert.id} is {alert.state}, not failed: only failed alerts are retried"
                           + (" (a pending one is queued already)" if alert.state == "pending" else ""))
        alert_id = alert.id
    requeued = records.requeue_failed(db, db.now(), alert_id)
    if args.format == "json":
        print_json_lines([{"requeued": requeued}])
    else:
        ids = f": {', '.join(map(str, requeued))}" if requeued else ""
        print(f"{plural(len(requeued), 'failed alert')} re-queued{ids}; the daemon sends them within seconds, "
              "or when it next starts (`watcher alerts` shows their state)")
    return 0


def _print_list(alerts: list, incident_states: dict[int, str], fmt: str) -> None:
    """The alerts, each with its incident's current triage state (`incident_state`)."""
    if fmt == "json":
        print_json_lines({**alert.to_json(), "incident_state": incident_states.get(alert.incident_id)}
                         for alert in alerts)
        return
    print(f"{'ID':>5} {'STATE':<8} {'KIND':<7} {'SEVERITY':<8} {'INCIDENT':>8} {'TRIAGE':<14} {'TRIES':>5} "
          f"{'CREATED':<20} {'ACK':<3} TITLE")
    for alert in alerts:
        incident = alert.incident_id if alert.incident_id is not None else "-"
        triage = incident_states.get(alert.incident_id, "-") if alert.incident_id is not None else "-"
        print(f"{alert.id:>5} {alert.state:<8} {alert.kind:<7} {alert.severity:<8} {incident:>8} {triage:<14} "
              f"{alert.tries:>5} {alert.created_at:<20} {'yes' if alert.acked_at else '':<3} {alert.title}")


def _print_one(alert) -> None:
    from ..alerts import render

    message = render(alert)
    print(f"Alert {alert.id} ({alert.kind}, {alert.severity}), Alert ID {alert.alert_id}")
    print(f"State: {alert.state} after {plural(alert.tries, 'attempt')}, accepted by "
          f"{plural(len(alert.delivered_to), 'target')}; created {alert.created_at}, sent {alert.sent_at or '-'}, "
          f"acknowledged {alert.acked_at or '-'}")
    if alert.state == "pending":
        print(f"Next attempt: {alert.next_try}")
    if alert.last_error:
        print(f"Last error: {alert.last_error}")
    print(f"Tags: {', '.join(alert.tags)}")
    print()
    print(message.title)
    print(message.body)


# --------------------------------------------------------------------------- test-alert


@contextmanager
def _apprise_captured_only() -> Iterator[None]:
    """While sending: apprise's warnings go to each target's result line, not to stderr.

    apprise captures a call's warnings through a handler on its own logger, so that logger
    must be at INFO (measured: at ERROR the reason of a failure is lost); not propagating
    keeps the same warnings off stderr. The logger is restored afterwards.
    """
    apprise_log = logging.getLogger("apprise")
    saved = apprise_log.level, apprise_log.propagate
    apprise_log.setLevel(logging.INFO)
    apprise_log.propagate = False
    try:
        yield
    finally:
        apprise_log.setLevel(saved[0])
        apprise_log.propagate = saved[1]


def cmd_test_alert(args: argparse.Namespace) -> int:
    import asyncio

    from ..alerts import TargetError, load_targets, probe_message, route, send

    settings = _settings(load(args))
    try:
        targets = load_targets(settings)
    except TargetError as exc:
        raise CliError(str(exc)) from None
    if args.tag:
        targets = route(targets, [args.tag])
    if not targets:
        where = f" for tag {args.tag!r}" if args.tag else ""
        raise CliError(f"no alert target{where}: set [alerts] urls or config in the configuration")
    message = probe_message(format_time(datetime.now(UTC)), args.tag)

    async def send_all():
        return await asyncio.gather(*(send(target, message, settings.timeout) for target in targets))

    with _apprise_captured_only():
        results = asyncio.run(send_all())
    for result in results:
        status = "ok    " if result.ok else "FAILED"
        detail = f": {result.error}" if result.error else ""
        print(f"{status} {result.target.name}{detail}")
    failed = sum(1 for result in results if not result.ok)
    print(f"{len(results) - failed} of {plural(len(results), 'target')} accepted the test alert")
    return 1 if failed else 0
