"""The daemon's side of the watchlists: notice a change, have the workers load them again.

A worker loads the lists when it starts (`worker_watchlists`), so a change (`watcher watchlist
import` or `remove`, from another process) means new workers: `check` compares the lists'
generation (one query: the highest id and the count) with what the workers were started with,
every `every` seconds and on SIGHUP, and calls `renew` when it moved. No numpy here: the
daemon's own process never holds the members.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..logs import log_event
from .store import WatchlistRow, rows

if TYPE_CHECKING:
    from ..store import StateDB, Store

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0       # seconds between two looks at the watchlists table


def _rows(state: StateDB) -> list[WatchlistRow]:
    return rows(state.db)


class WatchlistMonitor:
    """Watches the watchlists table for `renew` (the item pipeline's new workers)."""

    def __init__(self, store: Store, renew: Callable[[], None], every: float = CHECK_EVERY) -> None:
        self.store = store
        self.renew = renew
        self.every = every
        self.generation: tuple[int, int] | None = None

    async def check(self) -> bool:
        """Look once; True when the lists changed since the last look (the workers renewed)."""
        found = await self.store.call(_rows)
        generation = (max((row.id for row in found), default=0), len(found))
        if generation == self.generation:
            return False
        first = self.generation is None
        self.generation = generation
        if found or not first:
            log_event(log, "info", "watchlists loaded" if first else "watchlists changed: workers reloading them",
                      lists=",".join(f"{row.name}:{row.members}" for row in found) or "none")
        if not first:
            self.renew()
        return not first

    async def run(self) -> None:
        """`check` every `every` seconds, until cancelled; a failed look is logged and retried."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check()
            except Exception as exc:        # a busy or broken database: the next look may work
                log_event(log, "warning", "watchlists not checked", reason=str(exc))
