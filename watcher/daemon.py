"""The daemon: schedules the sources and wires the pipeline stages together.

    sources (poll) -> fetch -> [worker pool: extract -> detect -> score] -> [evidence: seal] -> store -> alert

A finding and its alert are written in one transaction; the alert sender (watcher.alerts)
delivers from that outbox, so an alert is never lost to a crash. A document at or above
`[evidence] min_severity` is sealed before its item is recorded (watcher.evidence_stage), so
a crash never leaves a recorded item without its evidence.

Each enabled source runs in its own task: poll, then sleep its interval (with jitter), or back
off exponentially (with jitter, capped) after a failure, or as long as a 429/503 Retry-After
asks. At most one poll of a source runs at a time and fetches one item at a time; a global
semaphore bounds simultaneous fetches. A poll's items are pipelined: up to PIPELINE_DEPTH of
them are analysed and recorded while the source fetches the next. Extraction and detection are
CPU-bound: they run in a pool of worker processes so a 10 MB page never stalls the event loop.
Items travel to the pool and to the store in batches (up to BATCH_WINDOW seconds of them): one
pool task and one transaction for many items, as the event-loop process is the daemon's
bottleneck; the workers also mask what the store keeps of each item (its URL, title, author).
A failing source costs that source one poll, never the daemon. Identifiers never reach the
log: only counts, masked samples and reasons do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Generic, TypeVar
from collections.abc import Awaitable, Callable, Sequence

from .alerts import AlertSender, AlertSettings, alert_settings
from .config import DB_NAME, SECRET_NAME, Config, ConfigError, SourceConfig, load_config
from .dates import normalise as normalise_date
from .evidence import VAULT_DIR
from .evidence_stage import EvidenceStage
from .fetch import Fetcher, FetchError, RetryLater, tor_preflight
from .logs import log_event
from .metrics import Metrics
from .metrics import serve as serve_metrics
from .notify import Notifier
from .preflight import check_runtime, lost_key
from .privacy import Fingerprinter, SecretKeyError, load_or_create_secret, read_secret
from .redact import keyed_id
from .report import Report
from .score import severity_rank
from .retention import EvidenceRetention, retention_pass, retention_task, store_runner
from .sources import SOURCE_CLASSES, build_source
from .sources.base import Item, PollContext, Source, SourceError
from .sources.pages import PageParser
from .sources.pastes import followed_documents, linked_pastes
from .store import ItemFailure, ItemRecord, ItemResult, PollHealth, StateDB, Store
from .timestamps import format_time, parse_time
from .worker import AnalysisFailed, AnalysisPool, AnalysisUnavailable, Init, Job

log = logging.getLogger(__name__)

# A poll that took `max_items` new items comes back this soon for the rest (seconds, at most
# the source's interval).
CAPPED_POLL_DELAY = 60.0
# Items of one poll analysed while the source fetches the next (its fetches stay one at a time).
PIPELINE_DEPTH = 4
# A reload or a stop lets a poll under way finish its items in flight and record its outcome for
# this long (seconds; systemd's TimeoutStopSec is 30 s), then cancels it.
DRAIN_GRACE = 10.0

MAX_BACKOFF = 3600.0          # seconds: a failing source is retried at least hourly
MAX_PLANNED_WAIT = 86400.0    # a stored next poll further away than a day is not trusted
JITTER = 0.1                  # +-10% on every interval
BATCH_WINDOW = 0.02           # seconds an item waits for others to share its pool task and transaction
BATCH_MAX_ITEMS = 32
BATCH_MAX_BYTES = 1024 * 1024

# A finding hook: called with the item, its report and what recording it did. The alerting
# stage plugs in here.
FindingHook = Callable[[Item, Report, ItemResult], Awaitable[None]]


@dataclass(frozen=True)
class ItemFailed:
    """An item whose analysis failed and was recorded so: retried next poll, or parked."""

    error: str
    tries: int
    parked: bool


Outcome = tuple[Report, ItemResult] | ItemFailed
Analysed = Report | AnalysisFailed | Exception     # what the pool gives for one item
Masked = tuple[str | None, ...] | None             # an item's (url, title, author) masked by its worker

T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- scheduling

def jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


def backoff(interval: float, failures: int, rng: random.Random) -> float:
    """Delay after `failures` consecutive failures: doubling, capped, jittered."""
    cap = max(interval, MAX_BACKOFF)
    return jittered(min(interval * 2 ** min(failures, 16), cap), rng)


@dataclass
class Counters:
    """Live figures for STATUS= and the logs."""

    polls: int = 0
    items: int = 0
    findings: int = 0
    failed_items: int = 0
    failing: set[str] = field(default_factory=set)

    def status(self) -> str:
        failing = f", {len(self.failing)} failing" if self.failing else ""
        failed = f", {self.failed_items} items failed" if self.failed_items else ""
        return f"{self.polls} polls, {self.items} items, {self.findings} findings{failing}{failed}"


# --------------------------------------------------------------------------- batches

class Batcher(Generic[T, R]):
    """Gathers the values submitted within `window` seconds into one call of `run`.

    `run(values)` returns one result per value, an exception in place of a failed one; each
    `submit` gets its own. A batch is sent as soon as it holds `max_items` values or
    `max_size` (by `size`). A value whose caller was cancelled before its batch left is
    dropped; a batch that left runs to its end.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]], *, window: float,
                 max_items: int, max_size: int = 0, size: Callable[[T], int] = lambda value: 0) -> None:
        self._run = run
        self.window, self.max_items, self.max_size, self._size = window, max_items, max_size, size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._pending_size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, value: T) -> R:
        """The result of `value` once its batch has run."""
        return await self.enqueue(value)

    def enqueue(self, value: T) -> asyncio.Future[R]:
        """The future result of `value` (cancel it to drop the value before its batch leaves)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((value, future))
        self._pending_size += self._size(value)
        if len(self._pending) >= self.max_items or (self.max_size and self._pending_size >= self.max_size):
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return future

    async def close(self) -> None:
        """Send what is pending and wait for every batch under way."""
        self._flush()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [(value, future) for value, future in self._pending if not future.done()]
        self._pending, self._pending_size = [], 0
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([value for value, _ in batch])
            if len(results) != len(batch):      # never leave a caller waiting forever
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=False):
            if future.done():           # its caller was cancelled meanwhile
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


# --------------------------------------------------------------------------- the daemon

class Daemon:
    """One configuration's worth of polling; `run()` until stopped (or once)."""

    def __init__(self, config: Config, *, once: bool = False, notifier: Notifier | None = None,
                 workers: int | None = None, on_finding: FindingHook | None = None) -> None:
        self.config = config
        self._sources = {source.name: source for source in config.sources}     # by name, for per-item look-ups
        self.once = once
        self.notifier = notifier or Notifier()
        self.workers = workers
        self.on_finding = on_finding
        self.counters = Counters()
        self.metrics = Metrics()
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._serving = False             # past start-up, in the polling loop of `run` (not --once)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._polling: set[str] = set()             # sources whose poll is under way
        self._draining = False                      # stopping sources: polls end after their items in flight
        self.store: Store | None = None
        self.alerts: AlertSender | None = None
        self.evidence: EvidenceStage | None = None     # seals the documents of findings (watcher.evidence)
        self.pool: AnalysisPool | None = None
        self.parser: PageParser | None = None      # listing/board/feed pages, in child processes
        self._secret = b""
        self._next_poll: dict[str, str] = {}        # source -> next poll planned by the last run
        self.limiter: asyncio.Semaphore | None = None
        # Items go to the worker pool and to the store in batches: a pool task and a store
        # transaction cost the event-loop process ~0.3 ms each, whatever their size.
        self._batches: Batcher[Item, Outcome] = Batcher(
            self._analyze_and_record, window=BATCH_WINDOW, max_items=BATCH_MAX_ITEMS,
            max_size=BATCH_MAX_BYTES, size=_batch_size)

    # -- life cycle ----------------------------------------------------------------------------
    async def run(self, stopped: threading.Event | None = None) -> int:
        """Run until SIGTERM/SIGINT (or one pass with `once`); the exit status. `stopped`: set
        by a SIGTERM that came before this installed its handlers (the command's early flag).

        A stop signal is honoured at any moment: during start-up or a `--once` pass the work
        is cancelled where it is; in the polling loop the daemon winds down. Either way the
        sources stop, the workers are stopped, what was analysed is recorded and the database
        closed (in-flight writes finish). `--once` exits 1 when a source or an item failed.
        """
        alerts = alert_settings(self.config)          # a broken [alerts] fails before anything opens
        loop = asyncio.get_running_loop()
        signals = {signal.SIGTERM: self._stop.set, signal.SIGINT: self._stop.set, signal.SIGHUP: self._reload.set}
        for number, handler in signals.items():
            loop.add_signal_handler(number, handler)
        if stopped is not None and stopped.is_set():
            self._stop.set()
        work = asyncio.create_task(self._main(alerts))
        stop_asked = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({work, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and not self._serving:
                log_event(log, "info", "stop requested: stopping now")
                work.cancel()
            (outcome,) = await asyncio.gather(work, return_exceptions=True)
        finally:
            stop_asked.cancel()
            for number in signals:
                loop.remove_signal_handler(number)
        if isinstance(outcome, asyncio.CancelledError):
            return 0
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _main(self, alerts: AlertSettings) -> int:
        state_dir = self.config.watcher.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = await Store.open(state_dir / DB_NAME)
        try:
            secret = self._secret = await self._secret_key(state_dir / SECRET_NAME)
            self.pool = self._new_pool(secret)
            self.parser = PageParser()
            self.alerts = AlertSender(self.store, alerts, on_outcome=self.metrics.alert)
            self.evidence = EvidenceStage(self.config.evidence, state_dir / VAULT_DIR, self.store)
            await self.evidence.open()
            self.limiter = asyncio.Semaphore(self.config.watcher.concurrency)
            await self._preflight()
            if self.once:
                return await self._run_once()
            return await self._run_forever()
        finally:
            self.notifier.stopping()
            await self._stop_sources()
            if self.parser is not None:
                await self.parser.close()
            if self.pool is not None:
                await self.pool.close()        # a batch under way fails unrecorded: retried later
            await self._batches.close()
            await self.store.close()

    async def _secret_key(self, path: Path) -> bytes:
        """The installation key; a new one only while no fingerprint was made with a lost one
        (`watcher run` checks this first; here it holds for any way in)."""
        if read_secret(path) is None and await self.store.call(_holds_fingerprints):  # type: ignore[union-attr]
            raise SecretKeyError(lost_key(path, self.config.watcher.state_dir / DB_NAME, self.config.path))
        return load_or_create_secret(path)

    def _mentioned(self, item: Item, outcome: Analysed) -> Analysed:
        """A watched name on a source whose `mention_severity` says what a mention there means
        (a ransomware victim feed naming a mutuelle: high) raises the report to it."""
        if not isinstance(outcome, Report) or not outcome.insurers:
            return outcome
        source = self._sources.get(item.source)
        if source is None:
            return outcome
        if severity_rank(source.mention_severity) > severity_rank(outcome.severity):
            outcome.severity = source.mention_severity
            outcome.reasons.append(f"named on {source.name} (mention_severity {source.mention_severity})")
        return outcome

    def _key(self, text: str) -> str:
        """An item id or version as the store keeps it: no identifier in it (`redact.keyed_id`)."""
        return keyed_id(str(text), Fingerprinter(self._secret))

    def _new_pool(self, secret: bytes) -> AnalysisPool:
        watcher = self.config.watcher
        return AnalysisPool(Init(self.config.rules, self.config.policy, secret), self.workers,
                            document_timeout=watcher.document_timeout)

    async def _preflight(self) -> None:
        """One clear line when Tor is needed but its SOCKS port does not answer."""
        needs_tor = [s.name for s in self.config.enabled_sources if s.tor]
        if needs_tor and self.config.tor is not None:
            problem = await tor_preflight(self.config.tor.socks)
            if problem:
                log_event(log, "error", "tor unreachable: tor sources will retry with backoff",
                          socks=self.config.tor.socks, reason=problem, sources=",".join(needs_tor))
        await self._sync_sources()

    async def _run_once(self) -> int:
        """`--once`: every enabled source polled once, then exit: 0 when every poll and item
        went through, 1 when a source or an item failed."""
        async def once(source: Source) -> None:
            async with self._fetcher(source.config) as fetcher:
                await self._poll(source, fetcher, 0)

        await asyncio.gather(*(once(build_source(s)) for s in self.config.enabled_sources))
        await self.alerts.run_once()  # type: ignore[union-attr]
        await retention_pass(store_runner(self.store), self.config.retention,  # type: ignore[arg-type]
                             evidence=self._evidence_retention())
        counters = self.counters
        log_event(log, "info", "pass done", polls=counters.polls, items=counters.items,
                  findings=counters.findings, failing=len(counters.failing), failed_items=counters.failed_items)
        return 1 if counters.failing or counters.failed_items else 0

    async def _run_forever(self) -> int:
        self._serving = True
        self._start_sources()
        self.notifier.ready(f"watching {len(self._tasks)} sources")
        log_event(log, "info", "daemon ready", sources=len(self._tasks), config=str(self.config.path))
        watchdog = asyncio.create_task(self._watchdog())
        background = self._start_background()
        try:
            while not self._stop.is_set():
                stop = asyncio.create_task(self._stop.wait())
                reload = asyncio.create_task(self._reload.wait())
                await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                reload.cancel()
                if self._reload.is_set() and not self._stop.is_set():
                    self._reload.clear()
                    await self._reload_config()
        finally:
            for task in [watchdog, *background]:
                task.cancel()
            await asyncio.gather(watchdog, *background, return_exceptions=True)
        log_event(log, "info", "daemon stopping", polls=self.counters.polls, items=self.counters.items)
        return 0

    async def _reload_config(self) -> None:
        """SIGHUP: re-read sources.toml; an invalid file keeps the running configuration."""
        self.notifier.reloading()
        try:
            config = load_config(self.config.path)
            alerts = alert_settings(config)
            await asyncio.to_thread(check_runtime, config)     # refused as `watcher run` would refuse it
        except (ConfigError, OSError) as exc:
            log_event(log, "error", "reload refused, keeping the running configuration", reason=str(exc))
            self.notifier.ready(f"reload refused: {exc}")
            return
        await self._stop_sources()
        rules_changed = (config.rules, config.policy) != (self.config.rules, self.config.policy)
        self.config = config
        self._sources = {source.name: source for source in config.sources}
        self.alerts.reconfigure(alerts)  # type: ignore[union-attr]
        await self.evidence.reconfigure(config.evidence)  # type: ignore[union-attr]
        if rules_changed:
            old, self.pool = self.pool, self._new_pool(self._secret)
            if old is not None:
                await old.close()           # batches under way on the old rules fail unrecorded
        self.limiter = asyncio.Semaphore(config.watcher.concurrency)
        await self._sync_sources()
        self.counters.failing &= {s.name for s in config.enabled_sources}
        self._start_sources()
        log_event(log, "info", "configuration reloaded", sources=len(self._tasks))
        self.notifier.ready(self.counters.status())

    async def _sync_sources(self) -> None:
        """Source rows follow the configuration: enabled ones upserted, disabled or removed
        ones marked disabled (so they are not reported failing forever)."""
        store = self.store
        assert store is not None
        health = await store.call(StateDB.sources_health)
        known = {row["name"]: row["state"] for row in health}
        self._next_poll = {row["name"]: row["next_poll"] for row in health if row.get("next_poll")}
        enabled = {s.name for s in self.config.enabled_sources}
        for source in self.config.sources:
            if source.enabled or source.name not in known:
                await store.call(StateDB.upsert_source, source.name, source.kind)
        for name in (set(known) | {s.name for s in self.config.sources}) - enabled:
            if known.get(name) != "disabled":
                await store.call(StateDB.disable_source, name)

    def _start_background(self) -> list[asyncio.Task[None]]:
        """The alert sender, hourly retention passes, and the metrics endpoint and the web
        console (`watcher.web`, on the daemon's store for its writes) if configured."""
        run = store_runner(self.store)  # type: ignore[arg-type]
        tasks = [
            asyncio.create_task(self.alerts.run(), name="alerts"),  # type: ignore[union-attr]
            asyncio.create_task(retention_task(run, lambda: self.config.retention,
                                               evidence=self._evidence_retention), name="retention"),
        ]
        if self.config.metrics is not None:
            tasks.append(asyncio.create_task(serve_metrics(self.config.metrics, self.metrics, run), name="metrics"))
        if self.config.web is not None:
            from .web.app import serve as serve_web     # here: aiohttp-jinja2 only when the console is on

            tasks.append(asyncio.create_task(serve_web(self.config, self.store), name="web"))  # type: ignore[arg-type]
        return tasks

    def _evidence_retention(self) -> EvidenceRetention:
        """The vault and how long its pieces are kept (read at every pass: a reload applies)."""
        return EvidenceRetention(self.config.watcher.state_dir / VAULT_DIR, self.config.evidence.evidence_days)

    def _start_sources(self) -> None:
        for source_config in self.config.enabled_sources:
            source = build_source(source_config)
            self._tasks[source.name] = asyncio.create_task(self._source_loop(source), name=source.name)

    async def _stop_sources(self) -> None:
        """Stop every source loop. A loop between polls is cancelled; a poll under way ends
        after its items in flight and records its outcome (a Retry-After just received, a
        backoff) before its loop returns, so a reload or a stop loses no plan; one that takes
        longer than DRAIN_GRACE is cancelled."""
        tasks = dict(self._tasks)
        self._tasks.clear()
        self._draining = True
        try:
            for name, task in tasks.items():
                if name not in self._polling:
                    task.cancel()
            _, late = await asyncio.wait(tasks.values(), timeout=DRAIN_GRACE) if tasks else (set(), set())
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        finally:
            self._draining = False

    async def _watchdog(self) -> None:
        """WATCHDOG=1 while the loop turns, with STATUS= and live counts in the same datagram.
        A wedged loop sends neither, and systemd restarts the service."""
        interval = self.notifier.watchdog_interval()
        while True:
            status = f"STATUS={self.counters.status()}"
            self.notifier.notify(*(("WATCHDOG=1", status) if interval else (status,)))
            await asyncio.sleep(interval or 10.0)

    # -- one source ----------------------------------------------------------------------------
    async def _source_loop(self, source: Source) -> None:
        """Poll `source` until cancelled, with one fetcher (one Tor circuit) for its lifetime."""
        failures = 0
        await asyncio.sleep(self._wait_planned(source.name))
        async with self._fetcher(source.config) as fetcher:
            while not self._draining:
                self._polling.add(source.name)
                try:
                    ok, delay = await self._poll(source, fetcher, failures)
                finally:
                    self._polling.discard(source.name)
                failures = 0 if ok else failures + 1
                if self._draining:
                    return
                await asyncio.sleep(delay)

    def _wait_planned(self, name: str) -> float:
        """Seconds until the poll planned before a restart or reload (a Retry-After, a
        backoff): honoured, so a rate-limited site is not hit again at once."""
        planned = self._next_poll.get(name)
        if not planned:
            return 0.0
        wait = (parse_time(planned) - datetime.now(UTC)).total_seconds()
        return min(max(wait, 0.0), MAX_PLANNED_WAIT)

    async def _poll(self, source: Source, fetcher: Fetcher | None, failures: int) -> tuple[bool, float]:
        """One poll: (succeeded, seconds until the next one).

        Next poll: the interval (jittered) after a success, what Retry-After asked after a
        429/503, an exponential backoff after a failure. An item whose analysis fails is
        recorded as failed (retried next poll, parked after `item_tries`) and the poll goes
        on: one document never costs its source a poll.
        """
        name, interval = source.name, source.config.interval
        store = self.store
        assert store is not None
        started = time.monotonic()
        tally = _Tally()
        error: str | None = None
        delay = jittered(interval, self._rng)

        window = _Window(self._start, tally, PIPELINE_DEPTH)

        async def seen(item_id: str, version: str) -> bool:
            if window.holds(item_id, version):      # taken this poll, maybe not recorded yet
                return True
            return await store.is_seen(name, self._key(item_id), self._key(version))

        ctx = PollContext(fetcher=fetcher, seen=seen, validators=await store.call(StateDB.source_validators, name),
                          previous_links=await store.call(StateDB.source_links, name), parser=self.parser)
        cap = source.config.max_items
        try:
            if await self._take(source, ctx, tally, window):
                await store.call(StateDB.save_validators, name, dict(ctx.validators))
            else:                           # capped, or a reload or a stop: the rest at the next
                delay = min(delay, jittered(min(interval, CAPPED_POLL_DELAY), self._rng))   # polls, soon
                if not self._draining:      # (the pages are read again: no validators kept)
                    tally.notice = f"{cap} new items taken (max_items); the rest at the next polls"
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
        self._count_poll(name, error, tally, health, time.monotonic() - started)
        return error is None, delay

    async def _take(self, source: Source, ctx: PollContext, tally: _Tally, window: _Window) -> bool:
        """Analyse the new items of one poll, oldest first, each with the pastes it links to:
        True when the poll saw them all, False when it stopped at `max_items` or because the
        sources are being stopped (nothing is dropped: the rest comes at the next polls). An
        item posted before the source's `backfill` is recorded as seen, not analysed.

        Pipelined: up to PIPELINE_DEPTH items of the poll are analysed while the source
        fetches the next one (its fetches stay one at a time, under its politeness limits).
        Whatever ends the poll (all taken, `max_items`, a drain, an error of the source or of
        an item) waits for the items in flight, so each records its outcome and counts in the
        tally; only a cancellation (past DRAIN_GRACE) drops them (fetched again next poll)."""
        config = source.config
        too_old = await self._backfill_cutoff(config)
        polled = source.poll(ctx)
        complete = False
        try:
            async for item in polled:
                if too_old and item.posted_at and (normalise_date(item.posted_at) or too_old) < too_old:
                    await self._record_unanalysed(item)
                    tally.old += 1
                    continue
                await window.submit(item)
                async for child in linked_pastes(ctx, item, config.max_bytes):
                    await window.submit(child)
                async for child in followed_documents(ctx, item, config.follow_links):
                    await window.submit(child)
                if window.taken >= config.max_items or self._draining or window.failure is not None:
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

    async def _backfill_cutoff(self, source: SourceConfig) -> str | None:
        """With `backfill`: the post date (normalised, `watcher.dates`) before which an item
        is not analysed: `backfill` before the source was first declared in this database, so
        the polls that take a first poll's backlog (`max_items`) keep the same limit."""
        if source.backfill is None:
            return None
        added = await self.store.call(StateDB.source_added, source.name)  # type: ignore[union-attr]
        since = parse_time(added) if added else datetime.now(UTC)
        return format_time(since - timedelta(seconds=source.backfill))

    async def _record_unanalysed(self, item: Item) -> None:
        """Record `item` as seen with no analysis (no sha256, no finding)."""
        record = ItemRecord(item.source, self._key(item.item_id), self._key(item.version), item.url, item.title,
                            None, item.posted_at, item.author)
        await self.store.call(StateDB.record_items, [record])  # type: ignore[union-attr]

    def _fetcher(self, source: SourceConfig) -> _NullFetcher | Fetcher:
        """The source's HTTP client; the directory source fetches nothing."""
        if not SOURCE_CLASSES[source.kind].uses_network:
            return _NullFetcher()
        return Fetcher.for_source(source, self.config.tor, limiter=self.limiter)

    def _count_poll(self, name: str, error: str | None, tally: _Tally, health: PollHealth, took: float) -> None:
        self.metrics.poll(name, error is None, tally.items, tally.findings)
        self.metrics.item_trouble(name, retried=tally.retried, parked=tally.parked, refused=tally.refused,
                                  skipped=health.skipped)
        counters = self.counters
        counters.polls += 1
        counters.items += tally.items
        counters.findings += tally.findings
        counters.failed_items += tally.retried + tally.parked
        if error is not None:
            counters.failing.add(name)
            log_event(log, "warning", "poll failed", source=name, error=error)
            return
        counters.failing.discard(name)
        if health.warning:
            log_event(log, "warning", "source degraded", source=name, reason=health.warning)
        log_event(log, "info", "poll done", source=name, items=tally.items, findings=tally.findings, old=tally.old,
                  failed=tally.retried + tally.parked, refused=tally.refused, skipped=health.skipped,
                  seconds=round(took, 2))

    def _start(self, item: Item) -> asyncio.Future[Outcome]:
        """`_process(item)` under way: the batch's own future when there is no finding hook
        (no task per item: the event loop is the daemon's bottleneck)."""
        if self.on_finding is None:
            return self._batches.enqueue(item)
        return asyncio.ensure_future(self._process(item))

    async def _process(self, item: Item) -> Outcome:
        """Analyse one item in the pool and record it (in a batch); alert hook on a new or
        escalated finding. Raises only when the item could be neither analysed nor recorded
        (no worker, the database): then its poll fails and it is tried again next poll."""
        outcome = await self._batches.submit(item)
        if isinstance(outcome, ItemFailed):
            return outcome
        report, result = outcome
        if (result.new_finding or result.escalated) and self.on_finding is not None:
            await self.on_finding(item, report, result)
        return outcome

    def _tor(self, name: str) -> bool:
        """Whether the source `name` fetches through Tor (a custody record says so)."""
        source = self._sources.get(name)
        return source is not None and source.tor

    async def _analyze_and_record(self, items: list[Item]) -> list[Outcome | Exception]:
        """A batch of items: analysed in one pool task, recorded in one transaction (failures
        in another)."""
        answers = await self._analyze(items)
        outcomes = [self._mentioned(item, outcome) for item, (outcome, _) in zip(items, answers, strict=True)]
        pairs = list(zip(items, outcomes, strict=True))
        reported = [(item, outcome, texts) for item, outcome, (_, texts) in zip(items, outcomes, answers, strict=True)
                    if isinstance(outcome, Report)]
        recorded = iter(await self._seal_and_record([(item, report) for item, report, _ in reported],
                                                    [texts for _, _, texts in reported]))
        failed = iter(await self._record_failures([(i, o) for i, o in pairs if isinstance(o, AnalysisFailed)]))
        results: list[Outcome | Exception] = []
        for outcome in outcomes:
            if isinstance(outcome, Report):
                result = next(recorded)
                results.append(result if isinstance(result, Exception) else (outcome, result))
            elif isinstance(outcome, AnalysisFailed):
                results.append(next(failed))
            else:
                results.append(outcome)
        return results

    async def _analyze(self, items: list[Item]) -> list[tuple[Analysed, Masked]]:
        """The items' reports from one pool task, each with its item's texts masked by the
        worker (`_job`); an AnalysisFailed for a document that raised, ran over its budget or
        killed its worker; a SourceError for all when no worker runs."""
        pool = self.pool
        assert pool is not None
        jobs = [_job(item) for item in items]
        try:
            answers = await pool.analyze_masking(jobs)
        except AnalysisUnavailable as exc:
            log_event(log, "error", "analysis unavailable", reason=str(exc), items=len(items))
            return [(SourceError(f"{exc}; the item is retried next poll"), None) for _ in jobs]
        return [(_report(item, job, outcome), texts)
                for item, job, (outcome, texts) in zip(items, jobs, answers, strict=True)]

    async def _record_failures(self, failed: list[tuple[Item, AnalysisFailed]]) -> list[ItemFailed | Exception]:
        """Record the items whose analysis failed (one line each in the log)."""
        if not failed:
            return []
        store = self.store
        assert store is not None
        failures = [ItemFailure(i.source, self._key(i.item_id), self._key(i.version), i.url, i.title, f.error)
                    for i, f in failed]
        try:
            recorded = await store.call(StateDB.record_failures, failures, self.config.watcher.item_tries)
        except Exception as exc:
            return [exc] * len(failed)
        results: list[ItemFailed | Exception] = []
        for (item, failure), (tries, parked) in zip(failed, recorded, strict=True):
            log_event(log, "warning", "item failed", source=item.source, item=item.item_id, url=item.url,
                      error=failure.error, tries=tries, parked=parked)
            if failure.traceback:
                log.debug("analysis of %s raised:\n%s", item.url or item.item_id, failure.traceback)
            results.append(ItemFailed(failure.error, tries, parked))
        return results

    async def _seal_and_record(self, analysed: list[tuple[Item, Report]],
                               masked: Sequence[Masked]) -> list[ItemResult | Exception]:
        """Seal the documents `[evidence]` keeps (in a thread), record the items, then write
        the custody records: sealed first, so a crash never leaves a recorded item unsealed."""
        evidence = self.evidence
        if evidence is None or evidence.vault is None or not analysed:
            return await self._record(analysed, masked)
        sealed = await evidence.seal(analysed, self._tor)
        results = await self._record(analysed, masked)
        await evidence.record(analysed, sealed, results)
        return results

    async def _record(self, analysed: list[tuple[Item, Report]],
                      masked: Sequence[Masked] = ()) -> list[ItemResult | Exception]:
        """Record analysed items in one transaction (one at a time if it fails, so that an item
        that cannot be recorded fails its own poll only); log the findings, wake the alerts.
        `masked`: each item's (url, title, author) as its worker masked them, or None (then the
        store masks them)."""
        store, alerts = self.store, self.alerts
        assert store is not None and alerts is not None
        records = [_record_of(item, report, self._key(item.item_id), self._key(item.version),
                              masked[n] if n < len(masked) else None)
                   for n, (item, report) in enumerate(analysed)]
        results: list[ItemResult | Exception]
        try:
            results = list(await store.call(StateDB.record_items, records, alerts.policy)) if records else []
        except Exception as exc:
            results = [exc] if len(records) == 1 else [await self._record_alone(record) for record in records]
        for (item, report), result in zip(analysed, results, strict=True):
            if isinstance(result, ItemResult) and (result.new_finding or result.escalated):
                _log_finding(item, report, result)      # here: logged even if its poll was stopped since
            if report.errors:
                log_event(log, "warning", "parts refused", source=item.source, item=item.item_id, url=item.url,
                          refused=len(report.errors), reasons="; ".join(report.errors[:3]))
        if any(isinstance(result, ItemResult) and result.alert is not None for result in results):
            alerts.wake()       # the alert was written with its finding: the sender delivers it
        return results

    async def _record_alone(self, record: ItemRecord) -> ItemResult | Exception:
        store, alerts = self.store, self.alerts
        assert store is not None and alerts is not None
        try:
            (result,) = await store.call(StateDB.record_items, [record], alerts.policy)
        except Exception as exc:
            return exc
        return result


@dataclass
class _Tally:
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


class _Window:
    """The items of one poll in flight (see `Daemon._take`): at most `depth` at once, each
    a future from `start` (`Daemon._start`); its outcome goes to the tally as it ends, the
    first exception (an item neither analysed nor recorded) is kept for the poll to fail with."""

    def __init__(self, start: Callable[[Item], asyncio.Future[Outcome]], tally: _Tally, depth: int) -> None:
        self._start, self._tally = start, tally
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
            self._tally.add(item, task.result())
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


def _holds_fingerprints(state: StateDB) -> bool:
    return bool(state.db.execute("SELECT EXISTS (SELECT 1 FROM fingerprints)").fetchone()[0])


def _batch_size(item: Item) -> int:
    """An item's weight in a batch: its bytes; a file (maybe huge, read by the worker) fills a
    batch alone, so that big files still spread over the workers."""
    return BATCH_MAX_BYTES if item.path is not None else len(item.content or b"")


def _record_of(item: Item, report: Report, item_id: str, version: str, masked: Masked) -> ItemRecord:
    """An analysed item as the store records it, with the texts its worker masked if any."""
    if masked is not None and len(masked) == 3:
        url, title, author = masked
        return ItemRecord(item.source, item_id, version, url, title, report, item.posted_at, author, masked=True)
    return ItemRecord(item.source, item_id, version, item.url, item.title, report, item.posted_at, item.author)


def _job(item: Item) -> Job:
    """What a worker needs of an item (its bytes, or the path of a file to stream, and its size
    for the time budget)."""
    if item.path is not None:
        try:
            size = item.path.stat().st_size
        except OSError:
            size = 0                # the worker reports the missing file
        return Job(None, str(item.path), item.url or item.item_id, item.content_type, size, _texts(item))
    content = item.content or b""
    return Job(content, None, item.url or item.item_id, item.content_type, len(content), _texts(item))


def _texts(item: Item) -> tuple[str | None, ...]:
    """What the store keeps of an item besides its ids, for its worker to mask (see `_record_of`)."""
    return (item.url, item.title, item.author)


def _report(item: Item, job: Job, outcome: Report | AnalysisFailed) -> Report | AnalysisFailed:
    """An item's report (noting a cut at max_bytes), or its failure as it came."""
    if isinstance(outcome, AnalysisFailed):
        return outcome
    if item.truncated:
        outcome.errors.append(f"{job.label}: cut at the source's max_bytes ({item.source}); the rest was not read")
    return outcome


def _log_finding(item: Item, report: Report, result: ItemResult) -> None:
    log_event(
        log, "warning", "finding", source=item.source, severity=report.severity, url=item.url,
        item=item.item_id, finding=result.finding_id, nirs=report.counts.get("nir", 0),
        records=report.records, insurers=",".join(report.insurers), reasons="; ".join(report.reasons),
    )


class _NullFetcher:
    """The directory source fetches nothing: an async context giving None."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None
