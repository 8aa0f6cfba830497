"""`watcher watchlist`: an organisation's member lists, kept as keyed fingerprints only.

    watcher watchlist import NAME FILE [--column C]       NIRs (one per line, or a CSV column; - for stdin)
    watcher watchlist import-fingerprints NAME FILE       a fingerprint file made with this installation's key
    watcher watchlist export-fingerprints NAME [--out F]  the stored fingerprints, as a fingerprint file
    watcher watchlist key --out FILE                      the watchlist key, for an organisation's own machine
    watcher watchlist fingerprint FILE --key KEYFILE      offline: a NIR file to a fingerprint file
    watcher watchlist list [--format json]
    watcher watchlist remove NAME

The NIR file is read, never copied; a line that is not a valid NIR is reported by its line
number and a reason, never its value. See `watcher.watchlist` for the fingerprints and the
README's "Member watchlists" for the file formats.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import CliError, print_json_lines
from .daemon import _common, _state, load

if TYPE_CHECKING:
    import numpy as np

    from ..config import Config
    from ..watchlist.files import NirFile
    from ..watchlist.members import Watchlists
    from ..watchlist.store import WatchlistRow
    from ..store import StateDB
    from ..watchlist.members import MemberHasher

KEY_FILE_PREFIX = "leak-watcher-watchlist-key/1 "


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("watchlist", help="member watchlists: import, list, remove, fingerprints")
    commands = parser.add_subparsers(dest="watchlist_command", required=True, metavar="ACTION")

    imported = commands.add_parser("import", help="import a file of NIRs as watchlist NAME (replaces it)")
    imported.add_argument("name")
    imported.add_argument("file", help="one NIR per line, or a CSV (- for stdin)")
    imported.add_argument("--column", help="the CSV column of the NIRs: its header or its number (from 1)")
    imported.set_defaults(func=cmd_import)

    fingerprints = commands.add_parser("import-fingerprints", help="import a fingerprint file as watchlist NAME")
    fingerprints.add_argument("name")
    fingerprints.add_argument("file", help="a fingerprint file (- for stdin)")
    fingerprints.set_defaults(func=cmd_import_fingerprints)

    export = commands.add_parser("export-fingerprints", help="write watchlist NAME as a fingerprint file")
    export.add_argument("name")
    export.add_argument("--out", type=Path, help="the file to write (default: stdout)")
    export.set_defaults(func=cmd_export)

    key = commands.add_parser("key", help="write the watchlist key (only computes member fingerprints)")
    key.add_argument("--out", type=Path, required=True, help="the key file to create (mode 0600)")
    key.set_defaults(func=cmd_key)

    offline = commands.add_parser("fingerprint", help="offline: fingerprint a NIR file with a key file")
    offline.add_argument("file", help="one NIR per line, or a CSV (- for stdin)")
    offline.add_argument("--key", type=Path, required=True,
                         help="`watcher watchlist key`'s file, or the installation's secret.key")
    offline.add_argument("--column", help="the CSV column of the NIRs: its header or its number (from 1)")
    offline.add_argument("--out", type=Path, help="the file to write (default: stdout)")
    offline.set_defaults(func=cmd_fingerprint)

    listing = commands.add_parser("list", help="the stored watchlists")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    listing.set_defaults(func=cmd_list)

    remove = commands.add_parser("remove", help="delete watchlist NAME")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_remove)

    for command in (imported, fingerprints, export, key, listing, remove):
        _common(command)


# --------------------------------------------------------------------------- the state

def _hasher(config: Config, db: StateDB) -> MemberHasher:
    """The member hasher of this installation's key. A missing key is created only while no
    fingerprint or watchlist was made with a lost one (as `watcher run` does)."""
    from ..config import DB_NAME, SECRET_NAME
    from ..preflight import lost_key
    from ..privacy import SecretKeyError, load_or_create_secret, read_secret
    from ..store.connection import holds_keyed_values
    from ..watchlist.members import MemberHasher

    path = config.watcher.state_dir / SECRET_NAME
    try:
        secret = read_secret(path)
        if secret is None:
            if holds_keyed_values(db.db):
                raise CliError(lost_key(path, config.watcher.state_dir / DB_NAME, config.path))
            secret = load_or_create_secret(path)
    except SecretKeyError as exc:
        raise CliError(str(exc)) from None
    return MemberHasher.from_secret(secret)


def _lines(file: str) -> Iterator[str]:
    """The lines of FILE, or of stdin for `-`, decoded as `files.text_lines` says."""
    from ..watchlist.files import text_lines

    if file == "-":
        yield from text_lines(sys.stdin.buffer)  # type: ignore[arg-type]
        return
    try:
        with open(file, "rb") as handle:
            yield from text_lines(handle)
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- commands

def _fingerprinted(file: str, column: str | None, hasher: MemberHasher) -> tuple[NirFile, np.ndarray]:
    """Read a NIR file; its members' sorted, distinct fingerprints, made a batch at a time."""
    from ..watchlist.arrays import distinct, fingerprints
    from ..watchlist.files import FileFormatError, read_nirs

    parts: list[np.ndarray] = []
    try:
        found = read_nirs(_lines(file), lambda batch: parts.append(fingerprints(hasher, batch)), column)
    except FileFormatError as exc:
        raise CliError(f"{file}: {exc}") from None
    for problem in found.problems():
        print(f"{file}: {problem}", file=sys.stderr)
    return found, distinct(parts)


def _checked(args: argparse.Namespace) -> Config:
    """The configuration of a command that stores list `args.name`, whose name is checked first."""
    from ..watchlist.store import WatchlistError, check_name

    config = load(args)
    try:
        check_name(args.name)
    except WatchlistError as exc:
        raise CliError(str(exc)) from None
    return config


def cmd_import(args: argparse.Namespace) -> int:
    config = _checked(args)
    with _state(config, create=True) as db:
        hasher = _hasher(config, db)
        found, members = _fingerprinted(args.file, args.column, hasher)
        if not len(members):
            raise CliError(f"{args.file}: no valid NIR ({found.invalid:,} invalid lines): nothing imported")
        row = _save(db, args.name, members, hasher.key_check(), "nirs")
    where = f" (column {found.column})" if found.column else ""
    print(f"watchlist {row.name}: {row.members:,} members imported{where}; {found.valid:,} valid, "
          f"{found.invalid:,} invalid, {found.valid - row.members:,} duplicates; no NIR stored, only fingerprints")
    return 0


def _save(db: StateDB, name: str, members: np.ndarray, key_check: str, origin: str) -> WatchlistRow:
    from ..watchlist.arrays import to_blob
    from ..watchlist.store import CHUNK_MEMBERS, WatchlistError, save

    chunks = (to_blob(members[at:at + CHUNK_MEMBERS]) for at in range(0, len(members), CHUNK_MEMBERS))
    try:
        return save(db, name, chunks, len(members), key_check, origin)
    except WatchlistError as exc:
        raise CliError(str(exc)) from None


def cmd_import_fingerprints(args: argparse.Namespace) -> int:
    from ..watchlist.arrays import distinct, np      # numpy as the package sets it up (one BLAS thread)
    from ..watchlist.files import read_fingerprints

    config = _checked(args)
    parts: list[np.ndarray] = []
    found = read_fingerprints(_lines(args.file), lambda batch: parts.append(np.array(batch, dtype=np.uint64)))
    for line in found.invalid:
        print(f"{args.file}: line {line}: not a fingerprint (16 hex digits)", file=sys.stderr)
    if not parts:
        raise CliError(f"{args.file}: no fingerprint ({found.invalid_count:,} invalid lines): nothing imported")
    with _state(config, create=True) as db:
        hasher = _hasher(config, db)
        check = hasher.key_check()
        if found.key_check is None:
            print(f"{args.file}: no key-check header: cannot tell whether it was made with this installation's key",
                  file=sys.stderr)
        elif found.key_check != check:
            raise CliError(f"{args.file}: made with another key (key-check {found.key_check}, this installation's "
                           f"{check}): fingerprint the list again with `watcher watchlist key`'s file")
        row = _save(db, args.name, distinct(parts), check, "fingerprints")
    print(f"watchlist {row.name}: {row.members:,} members imported from fingerprints; "
          f"{found.invalid_count:,} invalid lines, {found.count - row.members:,} duplicates")
    return 0


def _output(out: Path | None, *, new: bool = False) -> contextlib.AbstractContextManager[TextIO]:
    """Where a fingerprint file goes: a file (0600; `new`: only one that does not exist yet),
    or the real stdout (fingerprints are not identifiers: the redacting wrapper must not
    rewrite a line of digits)."""
    if out is None:
        sys.stdout.flush()
        return contextlib.nullcontext(sys.__stdout__ or sys.stdout)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else os.O_TRUNC), 0o600)
    except FileExistsError:
        raise CliError(f"{out} exists: the key is written to a new file only") from None
    except OSError as exc:
        raise CliError(f"{out}: {exc.strerror or exc}") from None
    return open(fd, "w", encoding="ascii")


def _write_fingerprints(out: Path | None, key_check: str, members: np.ndarray) -> None:
    from ..watchlist.files import header

    with _output(out) as handle:
        handle.write(header(key_check) + "\n")
        step = 1 << 16
        for at in range(0, len(members), step):
            handle.write("".join(f"{member:016x}\n" for member in members[at:at + step].tolist()))
        handle.flush()


def cmd_export(args: argparse.Namespace) -> int:
    from ..watchlist.arrays import from_blobs
    from ..watchlist.store import chunks, rows
    config = load(args)
    with _state(config) as db:
        row = next((r for r in rows(db.db) if r.name == args.name), None)
        if row is None:
            raise CliError(f"no watchlist {args.name} (see `watcher watchlist list`)")
        members = from_blobs(chunks(db.db, row.id), row.members)
    _write_fingerprints(args.out, row.key_check, members)
    if args.out is not None:
        print(f"watchlist {row.name}: {row.members:,} fingerprints written to {args.out}", file=sys.stderr)
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    config = load(args)
    with _state(config, create=True) as db:
        hasher = _hasher(config, db)
    with _output(args.out, new=True) as handle:
        handle.write(f"{KEY_FILE_PREFIX}{hasher.key.hex()}\n")
    print(f"{args.out}: the watchlist key (key-check {hasher.key_check()}): it computes member fingerprints "
          "only; give it to the organisation's machine that runs `watcher watchlist fingerprint`", file=sys.stderr)
    return 0


def read_key_file(path: Path) -> MemberHasher:
    """A key file: `watcher watchlist key`'s (`leak-watcher-watchlist-key/1 <64 hex>`) or the
    installation's secret.key itself (raw bytes)."""
    from ..privacy import SecretKeyError, read_secret
    from ..watchlist.members import MemberHasher

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    if data.startswith(KEY_FILE_PREFIX.encode()):
        try:
            return MemberHasher(bytes.fromhex(data[len(KEY_FILE_PREFIX):].decode("ascii").strip()))
        except ValueError:
            raise CliError(f"{path}: not a watchlist key file (64 hex digits after the prefix)") from None
    try:
        secret = read_secret(path)
    except SecretKeyError as exc:
        raise CliError(str(exc)) from None
    assert secret is not None
    return MemberHasher.from_secret(secret)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    hasher = read_key_file(args.key)
    found, members = _fingerprinted(args.file, args.column, hasher)
    _write_fingerprints(args.out, hasher.key_check(), members)
    print(f"{args.file}: {len(members):,} fingerprints; {found.valid:,} valid, {found.invalid:,} invalid, "
          f"{found.valid - len(members):,} duplicates", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..watchlist.store import rows
    config = load(args)
    with _state(config) as db:
        found = rows(db.db)
    if args.format == "json":
        print_json_lines(row.to_json() for row in found)
        return 0
    print(f"{'NAME':<24} {'MEMBERS':>12} {'ORIGIN':<13} {'KEY CHECK':<17} IMPORTED")
    for row in found:
        print(f"{row.name:<24} {row.members:>12,} {row.origin:<13} {row.key_check:<17} {row.created_at}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from ..watchlist.store import remove

    config = load(args)
    with _state(config, create=True) as db:
        if not remove(db, args.name):
            raise CliError(f"no watchlist {args.name} (see `watcher watchlist list`)")
    print(f"watchlist {args.name} removed (the daemon stops matching it at its next check)")
    return 0


def scan_watchlists(config: Config, names: list[str]) -> Watchlists:
    """The lists `names` for `watcher scan --watchlist`, read from the state directory."""
    from ..config import DB_NAME, SECRET_NAME
    from ..privacy import SecretKeyError, read_secret
    from ..watchlist.members import chosen, open_watchlists
    from ..watchlist.store import WatchlistError

    state_dir = config.watcher.state_dir
    try:
        secret = read_secret(state_dir / SECRET_NAME)
        if secret is None:
            raise CliError(f"no secret key in {state_dir}: no watchlist was imported there")
        return chosen(*open_watchlists(state_dir / DB_NAME, secret), names)
    except (SecretKeyError, WatchlistError) as exc:
        raise CliError(str(exc)) from None
    except FileNotFoundError:
        raise CliError(f"no state database in {state_dir}: no watchlist was imported there") from None
