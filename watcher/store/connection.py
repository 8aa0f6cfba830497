"""Opening the state database: the writer's connection (created private, migrated) and the
one read-only way for everyone else.

- `Connection(path)` (the base of `StateDB`) is the writer: it creates the file 0600, refuses
  a database written by newer code before touching it, sets the per-connection pragmas
  (foreign keys, `secure_delete`, busy timeout), switches to WAL and applies pending
  migrations. Only the daemon's store thread and the CLI commands that change the state
  (`alerts ack|retry`, `rekey`) open it.
- `Connection.read_only(path)` (so `StateDB.read_only(path)`) is for readers: an
  `mode=ro` URI connection that never creates, migrates or locks the file for writing; a
  missing file, a foreign database or a schema other than this code's is one clear error.
  `watcher findings|sources|items|alerts list|incidents`, `watcher status` and the daemon's
  loop-side `is_seen` reader open it so (`connect_read_only`).

Plain `sqlite3`, in autocommit mode (`isolation_level=None`): a statement outside
`transaction()` commits on its own, and `transaction()` is an explicit `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..timestamps import format_time
from .schema import (
    SCHEMA_VERSION,
    NotAStateDatabaseError,
    SchemaTooOldError,
    check_not_newer,
    migrate,
    schema_version,
    table_names,
)

__all__ = ["Connection", "connect_read_only", "dict_rows", "table_names"]

logger = logging.getLogger("watcher.store")

FILE_MODE = 0o600
DIR_MODE = 0o700
BUSY_TIMEOUT_MS = 5000

C = TypeVar("C", bound="Connection")


def utc_now() -> datetime:
    return datetime.now(UTC)


def dict_rows(db: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
    """The rows of a query as dicts keyed by column name."""
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def holds_keyed_values(db: sqlite3.Connection) -> bool:
    """Whether the database holds values made with the installation key: the store's NIR
    fingerprints or member watchlists (a new key would match neither). A table an older
    schema lacks holds nothing."""
    for table in ("fingerprints", "watchlists"):
        try:
            if db.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:
                return True
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("no such table"):
                raise
    return False


def connect_read_only(path: str | os.PathLike[str], *, idle_snapshot: bool = True) -> sqlite3.Connection:
    """A read-only connection (`mode=ro`): nothing is created, migrated or locked for writing.

    FileNotFoundError when there is no file. `idle_snapshot`: when no -wal file exists (no
    writer has the database open), open it `immutable=1` too, so SQLite creates no -wal/-shm
    files: made by root while the service is stopped, they would belong to root and lock the
    service's dynamic user out of its own database. A long-lived reader beside a running
    writer (the daemon's `is_seen`) passes False.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such state database", str(path))
    wal = path.with_name(path.name + "-wal")
    options = "mode=ro&immutable=1" if idle_snapshot and not wal.exists() else "mode=ro"
    db = sqlite3.connect(f"{path.resolve().as_uri()}?{options}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                         isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return db


def _prepare_file(path: Path) -> None:
    """Create `path` (and its directory) private to the owner before SQLite opens it.

    SQLite creates -wal and -shm with the database file's permissions, so 0600 here covers
    them too. An existing file readable by others is tightened, with a warning.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=DIR_MODE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            logger.warning("%s had mode %o; tightening to %o", path, mode, FILE_MODE)
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _tighten_sidecars(path: Path) -> None:
    """chmod 0600 the -wal/-shm files if present (they inherit the mode; this is a backstop)."""
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(sidecar.stat().st_mode) != FILE_MODE:
                sidecar.chmod(FILE_MODE)
        except FileNotFoundError:
            continue


class Connection:
    """The state database on one sqlite3 connection (`db`), used from the thread that opened it.

    `StateDB(path)` opens the writer (see the module docstring); `StateDB.read_only(path)` a
    reader. Every write method of the query classes is one `transaction()`.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], datetime] = utc_now):
        self.path = Path(path)
        self._clock = clock
        self.writable = True
        _prepare_file(self.path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._configure()
            check_not_newer(self.db, self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            migrate(self.db, self.path, self.now(), self.transaction)
            _tighten_sidecars(self.path)
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def read_only(cls: type[C], path: str | os.PathLike[str], *, any_version: bool = False,
                  clock: Callable[[], datetime] = utc_now) -> C:
        """A reader of the database at `path` (see `connect_read_only`); no migration.

        FileNotFoundError, NotAStateDatabaseError, SchemaTooNewError, or SchemaTooOldError (a
        database the daemon has not migrated yet), unless `any_version` (a reader that checks
        the tables it needs itself, such as `watcher status`).
        """
        state = cls.__new__(cls)
        state.path = Path(path)
        state._clock = clock
        state.writable = False
        state.db = connect_read_only(state.path)
        try:
            version = schema_version(state.db, state.path) if any_version else check_not_newer(state.db, state.path)
            if version == 0:
                raise NotAStateDatabaseError(f"{state.path} holds no tables: not a leak-watcher state database")
            if version < SCHEMA_VERSION and not any_version:
                raise SchemaTooOldError(
                    f"{state.path} has schema version {version}, older than this leak-watcher's "
                    f"{SCHEMA_VERSION}: run the daemon once (watcher run --once) to migrate it"
                )
        except BaseException:
            state.db.close()
            raise
        return state

    def _configure(self) -> None:
        """Per-connection settings: SQLite forgets them on every open."""
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA secure_delete=ON")     # a deleted or rewritten row leaves no trace
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def close(self) -> None:
        """Let SQLite refresh its planner statistics (writer), then close the connection."""
        try:
            if self.writable:
                self.db.execute("PRAGMA optimize")
        finally:
            self.db.close()

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        IMMEDIATE takes the write lock up front, so a transaction that reads then writes never
        fails half-way on a lock. Modules that keep their own tables here (watcher.alerts,
        watcher.retention) use it too.
        """
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.rollback()
            raise
        try:
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def now(self) -> str:
        """The current time as stored (from the clock this database was opened with)."""
        return format_time(self._clock())

    def schema_version(self) -> int:
        """The version of the open database (0 for a new, empty file)."""
        return schema_version(self.db, self.path)
