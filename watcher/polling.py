"""One poll of one source: its new items, oldest first, through the item pipeline.

A poll asks the source for its items (`Source.poll`), skips those seen before, records as
seen without analysis those posted before the source's `backfill`, and hands the others, with
the pastes they link to and the pages they follow, to the pipeline (watcher.pipeline).
Pipelined: up to PIPELINE_DEPTH items of the poll are analysed and recorded while the source
fetches the next (its fetches stay one at a time, under its politeness limits). The poll ends
with the delay until the next one: the interval (jittered) after a success, what Retry-After
asked after a 429/503, an exponential backoff after a failure.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .dates import normalise as normalise_date
from .fetch import Fetcher, FetchError, RetryLater
from .pipeline import ItemFailed, ItemPipeline, Outcome
from .sources.base import Item, PollContext, Source, SourceError
from .sources.pages import PageParser
from .sources.pastes import followed_documents, linked_pastes
from .store import PollHealth, StateDB, Store
from .timestamps import format_time, parse_time

log = logging.getLogger("watcher.daemon")

# A poll that took `max_items` new items comes back this soon for the rest (seconds, at most
# the source's interval).
CAPPED_POLL_DELAY = 60.0
# Items of one poll analysed while the source fetches the next (its fetches stay one at a time).
PIPELINE_DEPTH = 4
MAX_BACKOFF = 3600.0          # seconds: a failing source is retried at least hourly
JITTER = 0.1                  # +-10% on every interval


def jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


def backoff(interval: float, failures: int, rng: random.Random) -> float:
    """Delay after `failures` consecutive failures: doubling, capped, jittered."""
    cap = max(interval, MAX_BACKOFF)
    return jittered(min(interval * 2 ** min(failures, 16), cap), rng)


@dataclass
class Tally:
    """What one poll's items came to, and the last thing worth telling about them."""

    items: int = 0
    findings: int = 0
    retried: int = 0
    parked: int = 0
    refused: int = 0
    old: int = 0            # older than the source's backfill: recorded, not analysed
    notice: str | None = None

    def add(self, item: Item, outcome: Outcome) -> None:
        self.items += 1
        if isinstance(outcome, ItemFailed):
            self.parked += outcome.parked
            self.retried += not outcome.parked
            state = "parked" if outcome.parked else f"try {outcome.tries}"
            self.notice = f"item {item.item_id} failed ({state}): {outcome.error}"
            return
        report, result = outcome
        self.findings += bool(result.new_finding or result.escalated)
        if report.errors:
            self.refused += 1
            self.notice = f"item {item.item_id}: {report.errors[0]}"

    def health(self, ctx: PollContext) -> PollHealth:
        notice = self.notice
        if ctx.skipped:
            url, reason = ctx.skipped[-1]
            notice = f"item {url} skipped (retried next poll): {reason}"
        return PollHealth(warning="; ".join(ctx.warnings) or None, links=ctx.links, skipped=len(ctx.skipped),
                          refused=self.refused, notice=notice)


@dataclass(frozen=True)
class PollOutcome:
    """How a poll ended: its error (None: it succeeded), the seconds until the next one,
    what its items came to and the source's health, and how long it took."""

    error: str | None
    delay: float
    tally: Tally
    health: PollHealth
    took: float


class Poll:
    """One poll of `source` (see the module's docstring). `draining()` is true while the
    daemon stops its sources (a reload, a stop): the poll then ends after the item it is
    fetching, once its items in flight are recorded."""

    def __init__(self, source: Source, store: Store, pipeline: ItemPipeline, parser: PageParser | None, *,
                 draining: Callable[[], bool], rng: random.Random) -> None:
        self.source, self.store, self.pipeline, self.parser = source, store, pipeline, parser
        self._draining, self._rng = draining, rng

    async def run(self, fetcher: Fetcher | None, failures: int) -> PollOutcome:
        """Poll once, after `failures` consecutive failed polls. An item whose analysis fails
        is recorded as failed and the poll goes on: one document never costs its source a poll."""
        source, store = self.source, self.store
        name, interval = source.name, source.config.interval
        started = time.monotonic()
        tally = Tally()
        error: str | None = None
        delay = jittered(interval, self._rng)
        window = _Window(self.pipeline.start, tally, PIPELINE_DEPTH)
        key = self.pipeline.key

        async def seen(item_id: str, version: str) -> bool:
            if window.holds(item_id, version):      # taken this poll, maybe not recorded yet
                return True
            return await store.is_seen(name, key(item_id), key(version))

        ctx = PollContext(fetcher=fetcher, seen=seen, validators=await store.call(StateDB.source_validators, name),
                          previous_links=await store.call(StateDB.source_links, name), parser=self.parser)
        try:
            if await self._take(ctx, window):
                await store.call(StateDB.save_validators, name, dict(ctx.validators))
            else:                           # capped, or a reload or a stop: the rest at the next
                delay = min(delay, jittered(min(interval, CAPPED_POLL_DELAY), self._rng))   # polls, soon
                if not self._draining():    # (the pages are read again: no validators kept)
                    tally.notice = f"{source.config.max_items} new items taken (max_items); the rest at the next polls"
        except RetryLater as exc:
            error, delay = f"rate limited, asked to wait {exc.seconds:.0f} s: {exc}", max(exc.seconds, interval)
        except (FetchError, SourceError, OSError) as exc:
            error, delay = str(exc), backoff(interval, failures + 1, self._rng)
        except asyncio.CancelledError:
            raise
        except Exception as exc:     # a bug or a hostile page: costs this poll, never the daemon
            log.exception("source %s: poll crashed", name)
            error, delay = f"{type(exc).__name__}: {exc}", backoff(interval, failures + 1, self._rng)
        health = tally.health(ctx)
        await store.call(StateDB.record_poll, name, error is None, error,
                         datetime.now(UTC) + timedelta(seconds=delay), health)
        return PollOutcome(error, delay, tally, health, time.monotonic() - started)

    async def _take(self, ctx: PollContext, window: _Window) -> bool:
        """Analyse the new items of the poll, oldest first, each with the pastes it links to:
        True when the poll saw them all, False when it stopped at `max_items` or because the
        sources are being stopped (nothing is dropped: the rest comes at the next polls). An
        item posted before the source's `backfill` is recorded as seen, not analysed.

        Whatever ends the poll (all taken, `max_items`, a drain, an error of the source or of
        an item) waits for the items in flight, so each records its outcome and counts in the
        tally; only a cancellation (past the daemon's drain grace) drops them (fetched again
        next poll)."""
        config = self.source.config
        too_old = await self._backfill_cutoff()
        polled = self.source.poll(ctx)
        complete = False
        try:
            async for item in polled:
                if too_old and item.posted_at and (normalise_date(item.posted_at) or too_old) < too_old:
                    await self.pipeline.record_unanalysed(item)
                    window.tally.old += 1
                    continue
                await window.submit(item)
                async for child in linked_pastes(ctx, item, config.max_bytes):
                    await window.submit(child)
                async for child in followed_documents(ctx, item, config.follow_links):
                    await window.submit(child)
                if window.taken >= config.max_items or self._draining() or window.failure is not None:
                    break
            else:
                complete = True
        except asyncio.CancelledError:
            window.cancel()
            raise
        finally:
            await polled.aclose()  # type: ignore[attr-defined]
            await window.settle()
        window.raise_failure()
        return complete

    async def _backfill_cutoff(self) -> str | None:
        """With `backfill`: the post date (normalised, `watcher.dates`) before which an item
        is not analysed: `backfill` before the source was first declared in this database, so
        the polls that take a first poll's backlog (`max_items`) keep the same limit."""
        config = self.source.config
        if config.backfill is None:
            return None
        added = await self.store.call(StateDB.source_added, config.name)
        since = parse_time(added) if added else datetime.now(UTC)
        return format_time(since - timedelta(seconds=config.backfill))


class _Window:
    """The items of one poll in flight (see `Poll._take`): at most `depth` at once, each a
    future from `start` (`ItemPipeline.start`); its outcome goes to the tally as it ends, the
    first exception (an item neither analysed nor recorded) is kept for the poll to fail with."""

    def __init__(self, start: Callable[[Item], asyncio.Future[Outcome]], tally: Tally, depth: int) -> None:
        self._start, self.tally = start, tally
        self._slots = asyncio.Semaphore(depth)
        self._tasks: set[asyncio.Future[Outcome]] = set()
        self._keys: set[tuple[str, str]] = set()
        self.taken = 0                              # items submitted (children included): max_items
        self.failure: Exception | None = None

    def holds(self, item_id: str, version: str) -> bool:
        """Whether this poll took that item already (so a link seen twice is taken once)."""
        return (item_id, version) in self._keys

    async def submit(self, item: Item) -> None:
        """Start processing `item` once a place is free."""
        await self._slots.acquire()
        self.taken += 1
        self._keys.add((item.item_id, item.version))
        task = self._start(item)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, item))

    def _done(self, item: Item, task: asyncio.Future[Outcome]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.tally.add(item, task.result())
        elif self.failure is None and isinstance(error, Exception):
            self.failure = error

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def settle(self) -> None:
        """Wait for every item in flight."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure
