"""`StateDB`, the state database with every query of the store, and `Store`, the daemon's
asyncio door to it: one writer thread, one generic `call`.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from .connection import connect_read_only, utc_now
from .findings import FindingQueries
from .items import ItemQueries, is_seen_query
from .sources import SourceQueries

__all__ = ["StateDB", "Store", "StoreClosedError"]

P = ParamSpec("P")
R = TypeVar("R")


class StoreClosedError(RuntimeError):
    """A `Store` method was called after `close()`."""


class StateDB(SourceQueries, ItemQueries, FindingQueries):
    """The state database: `StateDB(path)` opens the writer, `StateDB.read_only(path)` a reader
    (`watcher.store.connection`); the queries come from one class per area (sources, items,
    findings). Used from the one thread that opened it.

    Every method is a plain function of the state, so the daemon runs any of them on its store
    thread as `await store.call(StateDB.record_poll, name, ...)`.
    """


if TYPE_CHECKING:
    import asyncio


def _running_loop() -> asyncio.AbstractEventLoop:
    """The daemon's loop. asyncio is imported here, not with the module: the commands that
    only read the store (and `watcher scan --watchlist`) never start a loop, and its import
    costs them 18 ms."""
    import asyncio

    return asyncio.get_running_loop()


class Store:
    """The daemon's asyncio door to its `StateDB`: every call runs on one dedicated worker thread.

    The worker thread opens the connection and is the only one to use it, so calls from any
    number of tasks are serialized in submission order and never block the event loop. A call
    whose awaiting task is cancelled still completes (its transaction is not left half-done).
    """

    def __init__(self, executor: ThreadPoolExecutor, state: StateDB, reader: sqlite3.Connection) -> None:
        """Use `await Store.open(path)`."""
        self._executor = executor
        self._state = state
        self._reader = reader
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, clock: Callable[[], datetime] = utc_now) -> Store:
        """Open (create, migrate) the state database at `path` on a new worker thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-store")
        loop = _running_loop()
        try:
            state = await loop.run_in_executor(executor, functools.partial(StateDB, path, clock=clock))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        # A read-only connection of the event loop's own thread, for `is_seen`: a point query
        # on the primary key (tens of microseconds) costs less than a trip to the writer
        # thread, and WAL lets it read while the writer writes.
        reader = connect_read_only(path, idle_snapshot=False)
        return cls(executor, state, reader)

    async def close(self) -> None:
        """Finish queued calls, close the connection, stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        loop = _running_loop()
        try:
            await loop.run_in_executor(self._executor, self._state.close)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._closed:
            raise StoreClosedError("the store is closed")
        loop = _running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    async def call(self, function: Callable[Concatenate[StateDB, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`function(state, *args, **kwargs)` on the store thread, with the store's StateDB.

        Any query of the store (`StateDB.record_items`, `StateDB.sources_health`...) or of a
        module that keeps its own tables in this database (watcher.alerts, watcher.retention):
        all go through the daemon's one connection, serialized with every other call.
        """
        return await self._run(function, self._state, *args, **kwargs)

    async def is_seen(self, source: str, item_id: str, version: str) -> bool:
        """`StateDB.is_seen`, read on the loop's own read-only connection (see `open`): the
        daemon asks it for every listed item, so it skips the trip to the store thread."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        return is_seen_query(self._reader, source, item_id, version)
