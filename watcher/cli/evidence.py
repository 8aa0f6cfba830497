"""Sealed evidence commands: `evidence list [--since] [--incident ID]`, `evidence show ID`, `evidence export ID
--identity KEYFILE --out FILE`, `evidence keygen --out FILE`. Each takes --config.

`list` and `show` read the custody records on a read-only connection (they may run while the
daemon runs); they print masked texts only. `export` is the analyst's side: it decrypts a
piece with the analyst's age identity, checks its sha256 against the custody record and
writes it to a file (or a pipe with `--out -`), never to a terminal; run it where the
identity is (a copy of the state folder on the analyst's machine, or with the key brought
in for the occasion). `keygen` makes an analyst's key pair for hosts without `age-keygen`:
the identity written 0600 (never over an existing file), the public recipient printed for
`[evidence] recipients`.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from . import CliError, print_json_lines
from .daemon import _common, _state, load, parse_since

ID_HELP = "custody record number (first column of `watcher evidence list`)"


def register(sub: argparse._SubParsersAction) -> None:
    evidence = sub.add_parser("evidence", help="sealed evidence: list, show ID, export ID, keygen")
    actions = evidence.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="custody records, the latest first")
    _common(listing)
    listing.add_argument("--since", help="ISO date/time, or a duration back from now (30m, 24h, 7d)")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    listing.add_argument("--limit", type=int, default=50, help="how many of the latest records (default 50)")
    listing.add_argument("--incident", type=int, metavar="ID", help="only the documents of this incident")
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help="one custody record, every field")
    _common(show)
    show.add_argument("id", metavar="ID", type=int, help=ID_HELP)
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=cmd_show)

    export = actions.add_parser("export", help="decrypt a piece with an age identity, verify its sha256, "
                                               "write it to a file (never a terminal)")
    _common(export)
    export.add_argument("id", metavar="ID", type=int, help=ID_HELP)
    export.add_argument("--identity", required=True, metavar="KEYFILE",
                        help="the analyst's age identity file (AGE-SECRET-KEY-1... lines)")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write the document ('-': a pipe)")
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    export.set_defaults(func=cmd_export)

    keygen = actions.add_parser("keygen", help="make an analyst's age key pair: identity to FILE (0600), "
                                               "recipient printed")
    keygen.add_argument("--out", required=True, metavar="FILE", help="the identity file to create (not overwritten)")
    keygen.set_defaults(func=cmd_keygen)


def _records(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ..store.evidence import custody_records

    config = load(args)
    since = parse_since(args.since)
    with _state(config) as db:
        return custody_records(db, since=since, limit=args.limit, incident_id=args.incident)


def _record(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """The custody record `args.id` and the vault's folder."""
    from ..evidence import VAULT_DIR
    from ..store.evidence import custody_record

    config = load(args)
    with _state(config) as db:
        record = custody_record(db, args.id)
    if record is None:
        raise CliError(f"no custody record {args.id} (see `watcher evidence list`)")
    return record, config.watcher.state_dir / VAULT_DIR


def cmd_list(args: argparse.Namespace) -> int:
    rows = _records(args)
    if args.format == "json":
        print_json_lines(rows)
        return 0
    if not rows:
        print("no evidence kept" + (f" since {args.since}" if args.since else ""))
    for row in rows:
        state = "expired" if row["expired_at"] else row["status"]
        cut = f" (first {row['kept_bytes']:,} of {row['size']:,} bytes)" if row["truncated"] else ""
        print(f"{row['id']:>5}  {state:<8} {row['sealed_at']}  {row['size']:>12,} B{cut}  "
              f"finding {row['finding_id']}  incident {row['incident_id'] or '-'}  {row['source']}  "
              f"{row['url'] or ''}")
    return 0


SHOWN = ("status", "sealed_at", "fetched_at", "source", "url", "title", "tor", "finding_id", "incident_id",
         "sha256", "size", "kept_sha256", "kept_bytes", "truncated", "file_name", "sealed_size", "file_sha256",
         "recipients", "note", "expired_at", "piece_id")


def cmd_show(args: argparse.Namespace) -> int:
    record, folder = _record(args)
    if args.format == "json":
        print_json_lines([record])
        return 0
    print(f"evidence {record['id']}")
    for key in SHOWN:
        value = record[key]
        if key == "recipients":
            value = ", ".join(value)
        print(f"  {key + ':':<13} {'' if value is None else value}")
    if record["file_name"] and not record["expired_at"]:
        present = (folder / record["file_name"]).is_file()
        print(f"  {'file:':<13} {folder / record['file_name']}{'' if present else ' (missing)'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..evidence import EvidenceError, EvidenceVault, export

    record, folder = _record(args)
    if record["expired_at"]:
        raise CliError(f"evidence {args.id}: its piece was deleted by retention at {record['expired_at']}")
    if not record["file_name"]:
        raise CliError(f"evidence {args.id}: no piece was kept ({record['note'] or record['status']})")
    try:
        identity = Path(args.identity).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--identity {args.identity}: cannot read it ({getattr(exc, 'strerror', None) or exc})") \
            from None
    try:
        piece = EvidenceVault(folder).path(record["file_name"])
        # `main` wraps sys.stdout in a text redactor: a pipe gets the process's own stdout
        stdout = cast(BinaryIO, sys.__stdout__.buffer) if args.out == "-" and sys.__stdout__ is not None else None
        written = export(piece, identity, record["kept_sha256"], args.out, stdout=stdout, overwrite=args.force)
    except EvidenceError as exc:
        raise CliError(f"evidence {args.id}: {exc}") from None
    where = "standard output" if args.out == "-" else os.path.abspath(args.out)
    truncated = f" (the first {written:,} of {record['size']:,} bytes: truncated)" if record["truncated"] else ""
    print(f"evidence {args.id}: {written:,} bytes written to {where}{truncated}, sha256 {record['kept_sha256']} "
          "verified", file=sys.stderr)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    import pyrage

    from ..timestamps import format_time

    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    text = (f"# created: {format_time(datetime.now(UTC))}\n# public key: {recipient}\n{identity}\n")
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise CliError(f"{args.out} exists: not overwritten (an identity lost is evidence lost)") from None
    except OSError as exc:
        raise CliError(f"{args.out}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    print(f"identity written to {os.path.abspath(args.out)} (mode 0600): keep it off the daemon's host")
    print(f"public recipient, for [evidence] recipients: {recipient}")
    return 0
