"""What `watcher run` needs beyond a valid file, checked before anything starts.

`load_config` validates the file alone (types, ranges, rules compiled). This module checks what
depends on the machine, so that `watcher check-config` proves the configuration runs and
`watcher run` refuses with the same one line (exit 2) instead of failing later:

- the state directory: a writable directory, or creatable (its nearest existing parent is
  writable). Writability is tested by writing a probe file (4 KiB, synced, removed at once),
  not by looking at modes: that also catches a read-only mount, ACLs, a full disk and a file
  size limit, and tells the truth for root (whom modes do not stop);
- that it is private: a state directory group or others may write to is refused (whoever can
  write there can swap the key or the database). Refused rather than fixed: the daemon cannot
  tell whether someone already did; `chmod go-w` is the operator's call;
- the files already in it: the database (and its -wal/-shm) openable for writing and an SQLite
  file, the secret key readable, long enough and 0600 (or 0400), the alerts JSONL file writable;
- a missing key while the database holds fingerprints: refused, never regenerated (a new key
  makes new fingerprints for the same NIRs, and a repost opens a second incident). The line
  says how out: restore the key, or `watcher rekey --forget`;
- each enabled directory source's folder: it exists, is a directory, and can be listed;
- the apprise targets: every URL and the apprise config file parse (nothing is sent).

Nothing is created or modified. Errors about the configuration are located like load_config's
(`file:line: where: key "k" ...`); errors about a state file name that file (`path: problem`).
`state_problem` words a state failure met later (by the daemon, or a command reading the
database) in the same way.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DB_NAME, SECRET_NAME, Config, ConfigError, located_error, systemd_state_dir

if TYPE_CHECKING:
    from .alerts.settings import AlertSettings

__all__ = ["PROBE_BYTES", "check_runtime", "check_state_dir_kind", "state_problem"]

PROBE_BYTES = 4096                    # one SQLite page: the least the daemon will write
SQLITE_HEADER = b"SQLite format 3\x00"
SHARED_WRITE_BITS = 0o022             # group- or other-writable


def check_runtime(config: Config, environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError (one line) on the first thing that keeps `config` from running here."""
    from .alerts import alert_settings

    env = os.environ if environ is None else environ
    alerts = alert_settings(config, env)
    _check_state_dir(config, env)
    _check_drop_folders(config)
    _check_alert_targets(config, alerts)
    _check_web(config)
    _check_state_files(config, alerts)


# --------------------------------------------------------------------------- state directory


def check_state_dir_kind(config: Config, environ: Mapping[str, str] | None = None) -> None:
    """A state directory that exists must be a directory (every command that reads the state
    checks this: "no database yet" would be a misleading answer)."""
    state_dir = config.watcher.state_dir
    if state_dir.exists() and not state_dir.is_dir():
        raise _state_dir_error(config, os.environ if environ is None else environ,
                               f"{state_dir} is not a directory")


def _check_state_dir(config: Config, environ: Mapping[str, str]) -> None:
    check_state_dir_kind(config, environ)
    state_dir = config.watcher.state_dir
    target = state_dir
    while not target.exists():               # the daemon creates it: where mkdir writes first
        target = target.parent
    if not target.is_dir():
        raise _state_dir_error(config, environ, f"{state_dir} cannot be created: {target} is not a directory")
    problem = _write_problem(target)
    if problem:
        where = "" if target == state_dir else f"{state_dir} cannot be created: "
        raise _state_dir_error(config, environ, f"{where}cannot write in {target}: {problem}")
    mode = state_dir.stat().st_mode if state_dir.exists() else 0
    if mode & SHARED_WRITE_BITS:
        raise _state_dir_error(config, environ, f"{state_dir} is writable by group or others (mode "
                               f"{mode & 0o7777:04o}; anyone there could swap the key or the "
                               f"database): chmod go-w {state_dir}")


def _state_dir_error(config: Config, environ: Mapping[str, str], message: str) -> ConfigError:
    """Located at `state_dir` in the file, or naming $STATE_DIRECTORY when systemd gave it."""
    if systemd_state_dir(environ) is not None:
        return ConfigError(f"$STATE_DIRECTORY: {message}")
    return located_error(config, "watcher", None, "[watcher]", "state_dir", f": {message}")


def _write_problem(directory: Path) -> str | None:
    """Why a file cannot be written in `directory` (strerror), or None. Leaves nothing behind."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".watcher-probe-")
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
        os.unlink(probe)
    return None


def _check_state_files(config: Config, alerts: AlertSettings) -> None:
    """The database, its sidecars, the key and the alerts log, when they exist already."""
    from .privacy import SecretKeyError, read_secret

    state_dir = config.watcher.state_dir
    database = state_dir / DB_NAME
    for path in (database, database.with_name(DB_NAME + "-wal"), database.with_name(DB_NAME + "-shm")):
        _check_writable_file(path)
    _check_sqlite(database)
    key = state_dir / SECRET_NAME
    try:
        present = read_secret(key) is not None
    except SecretKeyError as exc:
        raise ConfigError(str(exc)) from None
    if not present and _holds_keyed_values(database):
        raise ConfigError(lost_key(key, database, config.path))
    if alerts.jsonl is not None:
        _check_writable_file(alerts.jsonl)


def lost_key(key: Path, database: Path, config_path: Path) -> str:
    """The one line for a key gone while the database holds fingerprints made with it."""
    return (f"{key}: missing, but {database} holds fingerprints made with it (a new key "
            "would open second incidents for the same NIRs): restore it from a backup, "
            f"or start a new key with `watcher rekey --forget --config {config_path}` "
            "(deletes the stored fingerprints)")


def _check_writable_file(path: Path) -> None:
    """An existing `path` must be a regular file we can open for writing (nothing is written)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open for writing: {exc.strerror or exc}") from None
    os.close(fd)


def _check_sqlite(path: Path) -> None:
    """An existing database must be an SQLite file (or empty: SQLite makes it one). Only the
    header is read: opening it with SQLite could leave -wal/-shm files behind, owned by
    whoever ran the check."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if header and header != SQLITE_HEADER:
        raise ConfigError(f"{path}: not an SQLite database (corrupt, or another file): move it "
                          "away to start a new one")


def _holds_keyed_values(database: Path) -> bool:
    """Whether `database` holds values made with the key (`store.connection.holds_keyed_values`:
    fingerprints, watchlists). Read as immutable when there is no -wal file (a cleanly stopped
    daemon's state): SQLite then creates no -wal/-shm, owned by whoever ran the check. With a
    -wal (the daemon runs, or crashed), rows may be there only: a read-only open reads them."""
    from .store.connection import holds_keyed_values

    if not database.exists():
        return False
    wal = database.with_name(database.name + "-wal").exists()
    uri = f"{database.resolve().as_uri()}?{'mode=ro' if wal else 'immutable=1'}"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            return holds_keyed_values(db)
    except sqlite3.OperationalError as exc:
        raise ConfigError(f"{database}: cannot read: {exc}") from None


def state_problem(state_dir: Path, database: Path, exc: Exception) -> str:
    """One line `path: problem` for a state failure met after the checks (a full disk while the
    daemon writes, a database another program wrote...): an sqlite3 error is the database's,
    an OSError names its file (else the state directory); the store's and the key's own errors
    name their file already."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "SQLITE_ERROR")
        return f"{database}: {exc}" + ("" if name == "SQLITE_ERROR" else f" ({name})")
    if isinstance(exc, OSError):
        return f"{exc.filename or state_dir}: {exc.strerror or exc}"
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------- sources, alerts


def _check_drop_folders(config: Config) -> None:
    """Each enabled directory source's folder exists, is a directory and can be listed."""
    for index, source in enumerate(config.sources):
        if not source.enabled or source.kind != "directory":
            continue
        folder = source.options.path
        problem = _folder_problem(folder)
        if problem:
            path, index = source.origin or (config.path, index)
            raise located_error(config, "sources", index, f'source "{source.name}"', "path",
                                f": {folder} {problem}", path=path)


def _folder_problem(path: Path) -> str | None:
    """Why the daemon could not list `path`, or None."""
    try:
        with os.scandir(path):
            return None
    except FileNotFoundError:
        return "does not exist (create the folder, or disable the source)"
    except NotADirectoryError:
        return "is not a directory"
    except OSError as exc:
        return f"cannot be listed: {exc.strerror or exc}"


def _check_web(config: Config) -> None:
    """The console's certificate and key load (a path that does not exist, a key that is not
    the certificate's): refused here rather than logged once the daemon runs without it."""
    web = config.web
    if web is None or web.tls_cert is None:
        return
    from .web.app import tls_context

    try:
        tls_context(web)
    except ValueError as exc:
        problem = str(exc).removeprefix("[web] tls_cert ")
        raise located_error(config, "web", None, "[web]", "tls_cert", f": {problem}") from None


def _check_alert_targets(config: Config, alerts: AlertSettings) -> None:
    """apprise parses every URL and the config file (its plugins load: about half a second)."""
    from .alerts.settings import alerts_error
    from .alerts.targets import TargetError, load_targets

    if not alerts.has_targets:
        return
    try:
        load_targets(alerts, strict=True)
    except TargetError as exc:
        raise alerts_error(config, exc.key, exc.detail) from None
