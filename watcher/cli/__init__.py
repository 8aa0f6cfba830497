"""The `watcher` command: a thin layer over the library, one module per command group.

Each module in COMMANDS exposes `register(subparsers)`, which adds its sub-commands with
`set_defaults(func=...)`; a command returns its exit status. `CliError` becomes one line on
stderr and exit status 2, like argparse's own usage errors.

Whatever a command prints goes through `watcher.redact` (stdout and stderr are wrapped while
it runs): paths, zip member names, titles, URLs and errors may hold identifiers. Only
`watcher scan --reveal`, which prints to a terminal only, writes them in clear.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import sys
import traceback
from typing import Any, TextIO
from collections.abc import Iterable
import contextlib

COMMANDS = ("scan", "daemon", "items", "alerts", "incidents", "evidence", "service", "web", "watchlist")


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


class RedactedOutput(io.TextIOBase):
    """A text stream writing to `target` whole lines only, each through `redact` (a partial
    line waits for its end or a flush, so an identifier is never cut between two writes)."""

    def __init__(self, target: TextIO) -> None:
        from ..redact import redact

        self._target = target
        self._redact = redact
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in text:
            lines, _, self._pending = self._pending.rpartition("\n")
            self._target.write(self._redact(lines) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._target.write(self._redact(self._pending))
            self._pending = ""
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "reveal", False):
        return _run(args)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactedOutput(stdout), RedactedOutput(stderr)
    try:
        return _run(args)
    except Exception:       # a bug: its traceback may quote a path or a title, redact it too
        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BrokenPipeError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = stdout, stderr


def _run(args: argparse.Namespace) -> int:
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
