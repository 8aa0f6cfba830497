"""Incident commands: `incidents [list]`, `incidents show ID`, triage (`incidents ack|close|
false-positive|reopen ID --by NAME --note TEXT`), `incidents export ID --format misp|stix|json`,
and `suppress sha256 HEX | incident ID | list | remove KIND VALUE`. Each takes --config.

`list`, `show` and `export` read the state database read-only (`StateDB.read_only`), so they
run beside the daemon; they show the members of the watchlists each incident and each of its
documents holds (`watchlist_hits`: watchlist name -> distinct member NIRs, never a NIR);
triage and suppression are one short write transaction each. What
they change is read by the daemon's incident policy at the next document (see
`watcher.alerts.incidents` for what each state silences). A triage note goes through
`watcher.redact` before it is stored: a NIR pasted into it is masked.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..wording import counts_text, members_of, members_text, plural
from . import CliError, print_json_lines
from .daemon import _common, _state, load, parse_since

if TYPE_CHECKING:
    from ..config import Config
    from ..store import StateDB

ACTIONS = ("list", "show", "ack", "close", "false-positive", "reopen", "export")
EXPORT_FORMATS = ("misp", "stix", "json")




def register(sub: argparse._SubParsersAction) -> None:
    incidents = sub.add_parser(
        "incidents", help="incidents (findings grouped into one leak each): list, show ID, "
                          "ack|close|false-positive|reopen ID, export ID")
    _common(incidents)
    incidents.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    incidents.add_argument("id", nargs="?", metavar="ID", help="incident number (first column of `watcher incidents`)")
    incidents.add_argument("--format", choices=("text", "json", "misp", "stix"),
                           help="list, show: text (default) or json; export: misp, stix or json")
    incidents.add_argument("--limit", type=int, default=50, help="list: how many of the latest incidents (default 50)")
    incidents.add_argument("--since", help="list: incidents seen at or after this ISO date/time, or this long "
                                           "ago (30m, 24h, 7d)")
    incidents.add_argument("--by", help="triage: who (default: $USER, else the login name)")
    incidents.add_argument("--note", help="triage: why (masked like any text before it is stored)")
    incidents.add_argument("--tlp", help="export (misp, stix): the TLP marking (default tlp:amber)")
    incidents.add_argument("--out", type=Path, help="export: write to this file (default: standard output)")
    incidents.add_argument("--force", action="store_true", help="export: overwrite --out if it exists")
    incidents.set_defaults(func=cmd_incidents)

    suppress = sub.add_parser("suppress", help="never alert again for a document (sha256 HEX) or an incident "
                                               "(incident ID); list; remove sha256|incident VALUE")
    _common(suppress)
    suppress.add_argument("what", choices=("sha256", "incident", "list", "remove"))
    suppress.add_argument("values", nargs="*", metavar="VALUE",
                          help="sha256: the document's hash; incident: its number; remove: sha256|incident VALUE")
    suppress.add_argument("--by", help="who (default: $USER, else the login name)")
    suppress.add_argument("--note", help="why (masked like any text before it is stored)")
    suppress.add_argument("--format", choices=("text", "json"), default="text")
    suppress.set_defaults(func=cmd_suppress)


def who(by: str | None) -> str:
    """--by, else $USER, else the login name."""
    if by:
        return by
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _incident_id(args: argparse.Namespace) -> int:
    if not args.id:
        raise CliError(f"incidents {args.action}: give an incident number (see `watcher incidents`)")
    if not args.id.isdigit():
        raise CliError(f"incidents {args.action}: {args.id!r} is not an incident number")
    return int(args.id)


def cmd_incidents(args: argparse.Namespace) -> int:
    config = load(args)
    if args.action == "export":
        return _export(config, args)
    fmt = args.format or "text"
    if fmt not in ("text", "json"):
        raise CliError(f"incidents {args.action}: --format {fmt} is for `incidents export`")
    if args.action == "list":
        return _list(config, args, fmt)
    incident_id = _incident_id(args)
    if args.action == "show":
        return _show(config, incident_id, fmt)
    return _triage(config, args, incident_id, fmt)


# --------------------------------------------------------------------------- list


def _list(config: Config, args: argparse.Namespace, fmt: str) -> int:
    from ..alerts import records
    from ..timestamps import format_time

    since = parse_since(args.since)
    with _state(config) as db:
        rows = records.incidents(db, args.limit, format_time(since) if since else None)
        found = incident_members(db, [row["id"] for row in rows])
    for row in rows:
        row["watchlist_hits"], row["members"] = found.get(row["id"], ({}, 0))
    if fmt == "json":
        print_json_lines(rows)
        return 0
    print(f"{'ID':>5} {'SEVERITY':<8} {'STATE':<14} {'NIRS':>8} {'FINDINGS':>8} {'ALERTS':>6} {'FIRST POSTED':<20} "
          f"{'FIRST SEEN':<20} {'LAST SEEN':<20} {'MEMBERS':>8} SOURCES")
    for row in rows:
        member_count = f"{row['members']:,}" if row["members"] else "-"
        print(f"{row['id']:>5} {row['severity']:<8} {row.get('state') or 'open':<14} {row['nirs']:>8,} "
              f"{row['findings']:>8} {row['alerts']:>6} {row.get('first_posted') or '-':<20} "
              f"{row['first_seen']:<20} {row['last_seen']:<20} {member_count:>8} {', '.join(row['sources'])}")
    return 0


def incident_members(db: StateDB, incident_ids: list[int]) -> dict[int, tuple[dict[str, int], int]]:
    """Per incident of `incident_ids` with members: its counts per watchlist and its distinct
    members over all watchlists (a member of two lists counted once: the list's MEMBERS)."""
    from ..watchlist.store import stored_hits

    ids = json.dumps(incident_ids)
    hits = {int(incident_id): stored_hits(text) for incident_id, text in db.db.execute(
        "SELECT id, watchlist_hits FROM incidents WHERE id IN (SELECT value FROM json_each(?)) "
        "AND watchlist_hits != '{}'", (ids,))}
    distinct = dict(db.db.execute(
        """SELECT incident_id, count(DISTINCT member) FROM incident_watchlist_members
        WHERE incident_id IN (SELECT value FROM json_each(?)) GROUP BY incident_id""",
        (json.dumps(sorted(hits)),)).fetchall()) if hits else {}
    return {incident_id: (counts, int(distinct.get(incident_id) or max(counts.values(), default=0)))
            for incident_id, counts in hits.items() if counts}


# --------------------------------------------------------------------------- show


def incident_view(db: StateDB, incident_id: int) -> dict[str, Any]:
    """What `incidents show` prints: the incident, its documents in order, its triage log."""
    from ..alerts import records
    from ..exports import incident_payload
    from ..watchlist.store import stored_hits

    row = records.incident_row(db, incident_id)
    payload = incident_payload(db, incident_id)
    if row is None or payload is None:
        raise CliError(f"no incident {incident_id} (see `watcher incidents`)")
    suppressions = [s for s in records.suppressions(db) if s["incident_id"] == incident_id]
    timeline = records.incident_timeline(db, incident_id)
    finding_hits = {int(finding_id): stored_hits(text) for finding_id, text in db.db.execute(
        "SELECT id, watchlist_hits FROM findings WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted({doc["finding_id"] for doc in timeline})),))}
    for doc in timeline:
        doc["watchlist_hits"] = finding_hits.get(doc["finding_id"], {})
    hits, distinct = incident_members(db, [incident_id]).get(incident_id, ({}, 0))
    return {
        "id": incident_id, "severity": row["severity"], "state": row.get("state") or "open",
        "closed_severity": row.get("closed_severity"),
        "suppressed": [{"kind": s["kind"], "value": s["value"]} for s in suppressions],
        "nirs": row["nirs"], "counts": payload["counts"], "findings": row["findings"],
        "sources": row["sources"], "insurers": payload["insurers"], "reasons": payload["reasons"],
        "first_seen": row["first_seen"], "first_posted": row.get("first_posted"), "last_seen": row["last_seen"],
        "alerts": row["alerts"], "alerts_sent": row["sent"],
        "watchlist_hits": hits, "members": distinct,
        "timeline": timeline,
        "triage": records.triage_log(db, incident_id),
    }


def _show(config: Config, incident_id: int, fmt: str) -> int:
    with _state(config) as db:
        view = incident_view(db, incident_id)
    if fmt == "json":
        print_json_lines([view])
        return 0
    for line in show_lines(view):
        print(line)
    return 0


def _counts(counts: dict[str, Any]) -> str:
    return counts_text(counts.items()) or "-"


def show_lines(view: dict[str, Any]) -> list[str]:
    """The text of `incidents show`: a header block, the timeline, the triage log."""
    state = view["state"] + (", suppressed" if view["suppressed"] else "")
    documents = len(view["timeline"])
    lines = [
        f"Incident #{view['id']}: {view['severity'].upper()}, {state}",
        f"NIRs: ~{int(view['nirs']):,} distinct (estimated over every document)",
        f"Counts (the largest document, per kind): {_counts(view['counts'])}",
        f"Documents: {plural(documents, 'document')} ({plural(int(view['findings']), 'distinct content')}) "
        f"on {plural(len(view['sources']), 'source')}: {', '.join(view['sources'])}",
        f"Insurers: {', '.join(view['insurers']) or '-'}",
        *_member_lines(view),
        "Reasons: " + ("; ".join(view["reasons"]) or "-"),
        f"First seen: {view['first_seen']}",
        f"First posted: {view['first_posted'] or '-'}",
        f"Last seen: {view['last_seen']}",
        f"Alerts: {plural(int(view['alerts']), 'alert')}, {view['alerts_sent']} sent or logged",
    ]
    if view["state"] in ("closed", "false-positive"):
        lines.append(f"Closed at severity: {view['closed_severity'] or '-'}")
    lines += ["", "Timeline:"]
    for number, doc in enumerate(view["timeline"], 1):
        alert = doc.get("alert")
        sent = f"alert {alert['id']} ({alert['kind']}, {alert['state']})" if alert else "no alert"
        lines.append(f"  {number:>3}. seen {doc['first_seen']}  posted {doc.get('posted_at') or '-':<20}  "
                     f"{doc['severity'].upper():<8} {doc['source']}  finding {doc['finding_id']}")
        lines.append(f"       {doc.get('url') or doc['item_id']}")
        if doc.get("title"):
            lines.append(f"       {doc['title']}")
        lines.append(f"       {_counts(doc['counts'])}; sha256 {doc['sha256']}; {sent}")
        if doc.get("watchlist_hits"):
            lines.append(f"       Members: {members_text(doc['watchlist_hits'])}")
    lines += ["", "Triage log:"]
    if not view["triage"]:
        lines.append("  (none)")
    for entry in view["triage"]:
        note = f": {entry['note']}" if entry.get("note") else ""
        lines.append(f"  {entry['at']}  {entry['action']:<14} by {entry['who']}{note}")
    return lines


def _member_lines(view: dict[str, Any]) -> list[str]:
    """`Members: 12 of our members (watchlist adherents)`, one line per watchlist with a hit
    (distinct over every document), and the distinct total when several lists have some."""
    hits = view["watchlist_hits"]
    if not hits:
        return ["Members: -"]
    lines = [f"Members: {members_of(name, count)} over every document" for name, count in hits.items() if count]
    if len(hits) > 1:
        lines.append(f"Members: {plural(int(view['members']), 'distinct member')} in all")
    return lines


# --------------------------------------------------------------------------- triage


def _triage(config: Config, args: argparse.Namespace, incident_id: int, fmt: str) -> int:
    from ..alerts import records

    with _state(config, write=True) as db:
        try:
            entry = records.triage_incident(db, incident_id, args.action, who(args.by), args.note)
        except records.TriageError as exc:
            raise CliError(str(exc)) from None
    if fmt == "json":
        print_json_lines([{"incident_id": incident_id, **entry}])
        return 0
    state = records.TRIAGE_ACTIONS[args.action]
    print(f"incident {incident_id} {state} by {entry['who']} at {entry['at']}"
          + (f" (at severity {entry['severity']}: it alerts again only if it grows more severe)"
             if state == "closed" else ""))
    return 0


# --------------------------------------------------------------------------- export


def _export(config: Config, args: argparse.Namespace) -> int:
    from ..config import SECRET_NAME
    from ..exports import export_incident
    from ..privacy import SecretKeyError, read_secret

    incident_id = _incident_id(args)
    fmt = args.format
    if fmt not in EXPORT_FORMATS:
        raise CliError(f"incidents export: give --format {'|'.join(EXPORT_FORMATS)}")
    if args.out is not None and args.out.exists() and not args.force:
        raise CliError(f"{args.out} exists: give --force to overwrite it")
    try:
        secret = read_secret(config.watcher.state_dir / SECRET_NAME)
    except SecretKeyError as exc:
        raise CliError(str(exc)) from None
    if secret is None:
        raise CliError(f"no secret key in {config.watcher.state_dir}: the daemon has not run yet")
    tor_sources = [source.name for source in config.sources if source.tor]
    with _state(config) as db:
        try:
            text = export_incident(db, incident_id, secret, fmt, tor_sources=tor_sources, tlp=args.tlp)
        except ValueError as exc:           # a TLP the format does not know, an incident without a date
            raise CliError(f"incidents export: {exc}") from None
    if text is None:
        raise CliError(f"no incident {incident_id} (see `watcher incidents`)")
    if args.out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    _write(args.out, text)
    print(f"incident {incident_id} exported as {fmt} to {args.out}", file=sys.stderr)
    return 0


def _write(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        temporary.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CliError(f"{exc.filename or path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- suppress


def cmd_suppress(args: argparse.Namespace) -> int:
    from ..alerts import records

    config = load(args)
    if args.what == "list":
        with _state(config) as db:
            rows = records.suppressions(db)
        _print_suppressions(rows, args.format)
        return 0
    kind, value = _suppression_target(args)
    with _state(config, write=True) as db:
        try:
            if args.what == "remove":
                removed = records.unsuppress(db, kind, value, who(args.by))
                result: dict[str, Any] = {"kind": kind, "value": value, "removed": removed}
            else:
                result = records.suppress(db, kind, value, who(args.by), args.note)
        except records.TriageError as exc:
            raise CliError(str(exc)) from None
    if args.format == "json":
        print_json_lines([result])
    elif args.what == "remove":
        print(f"{kind} {result['value']}: " + ("suppression removed" if removed else "was not suppressed"))
    else:
        where = f" (incident {result['incident_id']})" if result["incident_id"] is not None else " (not seen yet)"
        print(f"{kind} {result['value']} suppressed{where}: it never alerts again")
    return 0


def _suppression_target(args: argparse.Namespace) -> tuple[str, str]:
    values = list(args.values)
    kind = args.what
    if kind == "remove":
        if len(values) != 2 or values[0] not in ("sha256", "incident"):
            raise CliError("suppress remove: give sha256 HEX or incident ID")
        kind = values.pop(0)
    if len(values) != 1:
        raise CliError(f"suppress {args.what}: give one {'hash' if kind == 'sha256' else 'incident number'}")
    return kind, values[0]


def _print_suppressions(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        print_json_lines(rows)
        return
    print(f"{'KIND':<8} {'VALUE':<64} {'INCIDENT':>8} {'AT':<20} {'BY':<12} NOTE")
    for row in rows:
        incident = row["incident_id"] if row["incident_id"] is not None else "-"
        print(f"{row['kind']:<8} {row['value']:<64} {incident:>8} {row['at']:<20} {row['who']:<12} {row['note'] or ''}")
