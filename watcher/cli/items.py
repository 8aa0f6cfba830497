"""`watcher items --failed`: the items whose analysis failed, retried or parked.

    watcher items --failed [--source NAME] [--since WHEN] [--format text|json] [--config PATH]

An item fails alone (a document that raised in the analysis, ran over its time budget or
killed its worker): it is retried at the next polls and parked after `[watcher] item_tries`
tries. Its content is not kept; its reason is one redacted line.
"""

from __future__ import annotations

import argparse

from . import print_json_lines
from ..timestamps import parse_time
from .daemon import _common, _state, load, parse_since


def register(sub: argparse._SubParsersAction) -> None:
    items = sub.add_parser("items", help="items whose analysis failed (retried, then parked)")
    _common(items)
    items.add_argument("--failed", action="store_true", required=True,
                       help="list the failed items (the only listing for now)")
    items.add_argument("--source", help="only this source's items")
    items.add_argument("--since", help="items that failed last at or after this ISO date/time, or this long "
                                       "ago (24h, 7d)")
    items.add_argument("--format", choices=("text", "json"), default="text")
    items.set_defaults(func=cmd_items)


def cmd_items(args: argparse.Namespace) -> int:
    config = load(args)
    since = parse_since(args.since)
    with _state(config) as db:
        rows = db.failed_items(args.source)
    if since is not None:
        rows = [row for row in rows if parse_time(row["last_failed"]) >= since]
    if args.format == "json":
        print_json_lines(rows)
        return 0
    print(f"{'SOURCE':<20} {'STATE':<7} {'TRIES':>5} {'LAST FAILED':<20} ITEM / REASON")
    for row in rows:
        state = "parked" if row["parked"] else "retried"
        where = row["url"] or row["item_id"]
        print(f"{row['source']:<20} {state:<7} {row['tries']:>5} {row['last_failed']:<20} {where}")
        print(f"{'':<20} {row['error']}")
    return 0
