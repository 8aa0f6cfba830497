"""The `watcher` command: a thin layer over the library, one module per command group.

Each module in COMMANDS exposes `register(subparsers)`, which adds its sub-commands with
`set_defaults(func=...)`; a command returns its exit status. `CliError` becomes one line on
stderr and exit status 2, like argparse's own usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Iterable

COMMANDS = ("scan", "daemon", "items", "alerts", "service")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def print_json_lines(rows: Iterable[Any]) -> None:
    """One JSON object per line: what `--format json` prints for other tools."""
    for row in rows:
        print(json.dumps(row, ensure_ascii=False, default=str))


DISTRIBUTION = "leak-watcher"


def version() -> str:
    """The installed distribution's version; the package's own when it is not installed
    (run from a source tree with PYTHONPATH), so `--version` always answers."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


class _VersionAction(argparse.Action):
    """`--version`: prints `watcher <version>` and exits 0. The version is looked up only
    when asked: importlib.metadata costs ~60 ms (measured), too much for every command."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watcher", description="Dark-web leak monitoring for French health data.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`watcher scan ... | head`): stop quietly, as other tools do,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
