"""The web console's commands: `web` (serve it), `web adduser NAME [--reset]`, `web deluser
NAME`, `web users`. Each takes --config.

`watcher web` serves the console of `watcher.web` on the configuration's `[web]` table (its
defaults, 127.0.0.1:8080, without one) and its state database, read-write for triage, until
SIGINT or SIGTERM; the daemon serves the same console itself when `[web]` is configured.
`adduser` reads the password from the terminal (twice) or, when standard input is not a
terminal, from its first line (`printf '%s\\n' "$PASS" | watcher web adduser alice`); only its
scrypt hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from . import CliError
from .daemon import _common, _state, load

if TYPE_CHECKING:
    from ..config import Config

ACTIONS = ("serve", "adduser", "deluser", "users")


def register(sub: argparse._SubParsersAction) -> None:
    web = sub.add_parser("web", help="the analyst's web console: serve it (default), adduser NAME, deluser NAME, "
                                     "users")
    _common(web)
    web.add_argument("action", nargs="?", choices=ACTIONS, default="serve")
    web.add_argument("name", nargs="?", metavar="NAME", help="adduser, deluser: the user name")
    web.add_argument("--reset", action="store_true", help="adduser: replace an existing user's password "
                                                          "(their sessions end)")
    web.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    config = load(args)
    if args.action == "serve":
        if args.name:
            raise CliError("web: serve takes no NAME")
        return _serve(config)
    if args.action == "users":
        return _users(config)
    if not args.name:
        raise CliError(f"web {args.action}: give a user name")
    if args.action == "adduser":
        return _adduser(config, args.name, args.reset)
    return _deluser(config, args.name)


def _settings(config: Config) -> Config:
    """The configuration with its [web] table, or the table's defaults."""
    from ..web.settings import WebSettings

    return config if config.web is not None else replace(config, web=WebSettings())


def _serve(config: Config) -> int:
    import asyncio

    from ..logs import setup_logging
    from ..web.app import run_standalone

    config = _settings(config)
    setup_logging("info", "kv")

    def ready(url: str) -> None:
        print(f"web console on {url} (Ctrl-C stops it)", file=sys.stderr, flush=True)

    try:
        asyncio.run(run_standalone(config, ready))
    except OSError as exc:
        raise CliError(f"web: cannot listen on {config.web.listen if config.web else '?'}: "
                       f"{exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return 0


def _read_password() -> str:
    """From the terminal, twice; else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            raise CliError("web adduser: the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _adduser(config: Config, name: str, reset: bool) -> int:
    from ..web import auth

    try:
        auth.check_name(name)
        password_hash = auth.hash_password(_read_password())
    except auth.AuthError as exc:
        raise CliError(f"web adduser: {exc}") from None
    with _state(config, create=True) as state:
        added = auth.add_user(state, name, password_hash, replace=reset)
    if not added:
        raise CliError(f"web adduser: {name} exists (give --reset to change the password)")
    print(f"user {name} {'password changed, sessions ended' if reset else 'added'}")
    return 0


def _deluser(config: Config, name: str) -> int:
    from ..web import auth

    with _state(config, create=True) as state:
        deleted = auth.delete_user(state, name)
    if not deleted:
        raise CliError(f"web deluser: no user {name!r} (see `watcher web users`)")
    print(f"user {name} deleted, their sessions ended")
    return 0


def _users(config: Config) -> int:
    from ..web import auth

    with _state(config, create=True) as state:
        rows = auth.user_names(state)
    for name, created in rows:
        print(f"{name:<32} added {created}")
    return 0
