"""The daemon: schedules the sources and wires the pipeline stages together.

    sources (poll: watcher.polling) -> fetch -> [item pipeline (watcher.pipeline): worker pool:
    extract -> detect -> score -> evidence: seal -> store] -> alert (watcher.alerts, from the outbox)

Each enabled source runs in its own task: poll, then sleep until the poll's planned next one
(its interval with jitter, a backoff after a failure, a 429/503 Retry-After), also across a
restart. At most one poll of a source runs at a time; a global semaphore bounds simultaneous
fetches. Extraction and detection are CPU-bound: they run in a pool of worker processes so a
10 MB page never stalls the event loop. SIGHUP reloads the configuration (an invalid one keeps
the running one); a reload or a stop lets the polls under way record their items in flight
first. A failing source costs that source one poll, never the daemon. Identifiers never reach
the log: only counts, masked samples and reasons do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .alerts import AlertSender, AlertSettings, alert_settings
from .config import DB_NAME, SECRET_NAME, Config, ConfigError, SourceConfig, load_config
from .evidence import VAULT_DIR
from .evidence_stage import EvidenceStage
from .fetch import Fetcher, tor_preflight
from .logs import log_event
from .metrics import Metrics
from .metrics import serve as serve_metrics
from .notify import Notifier
from .preflight import check_runtime, lost_key
from .pipeline import FindingHook, ItemPipeline
from .polling import Poll, PollOutcome
from .privacy import SecretKeyError, load_or_create_secret, read_secret
from .retention import EvidenceRetention, retention_pass, retention_task, store_runner
from .sources import SOURCE_CLASSES, build_source
from .sources.base import Source
from .sources.pages import PageParser
from .store import StateDB, Store
from .store.connection import holds_keyed_values
from .watchlist.monitor import WatchlistMonitor
from .timestamps import parse_time

log = logging.getLogger(__name__)

# A reload or a stop lets a poll under way finish its items in flight and record its outcome for
# this long (seconds; systemd's TimeoutStopSec is 30 s), then cancels it.
DRAIN_GRACE = 10.0

MAX_PLANNED_WAIT = 86400.0    # a stored next poll further away than a day is not trusted


# --------------------------------------------------------------------------- scheduling

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


class Daemon:
    """One configuration's worth of polling; `run()` until stopped (or once)."""

    def __init__(self, config: Config, *, once: bool = False, notifier: Notifier | None = None,
                 workers: int | None = None, on_finding: FindingHook | None = None) -> None:
        self.config = config
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
        self.pipeline: ItemPipeline | None = None     # items: analysed, sealed, recorded
        self.watchlists: WatchlistMonitor | None = None   # member watchlists changed: new workers
        self.parser: PageParser | None = None      # listing/board/feed pages, in child processes
        self._next_poll: dict[str, str] = {}        # source -> next poll planned by the last run
        self.limiter: asyncio.Semaphore | None = None

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
            secret = await self._secret_key(state_dir / SECRET_NAME)
            self.parser = PageParser()
            self.alerts = AlertSender(self.store, alerts, on_outcome=self.metrics.alert)
            self.evidence = EvidenceStage(self.config.evidence, state_dir / VAULT_DIR, self.store)
            await self.evidence.open()
            self.watchlists = WatchlistMonitor(self.store, lambda: self.pipeline.renew_workers())  # type: ignore[union-attr]
            await self.watchlists.check()      # before the workers start: they load these lists
            self.pipeline = ItemPipeline(self.config, self.store, self.alerts, self.evidence, secret,
                                         workers=self.workers, on_finding=self.on_finding)
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
            if self.pipeline is not None:
                await self.pipeline.close()
            await self.store.close()

    async def _secret_key(self, path: Path) -> bytes:
        """The installation key; a new one only while no fingerprint was made with a lost one
        (`watcher run` checks this first; here it holds for any way in)."""
        if read_secret(path) is None and await self.store.call(_holds_keyed_values):  # type: ignore[union-attr]
            raise SecretKeyError(lost_key(path, self.config.watcher.state_dir / DB_NAME, self.config.path))
        return load_or_create_secret(path)

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
        self.config = config
        self.alerts.reconfigure(alerts)  # type: ignore[union-attr]
        await self.evidence.reconfigure(config.evidence)  # type: ignore[union-attr]
        await self.pipeline.reconfigure(config)  # type: ignore[union-attr]
        await self.watchlists.check()  # type: ignore[union-attr]
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
            asyncio.create_task(self.watchlists.run(), name="watchlists"),  # type: ignore[union-attr]
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
        """One poll (watcher.polling), counted: (succeeded, seconds until the next one)."""
        assert self.store is not None and self.pipeline is not None
        poll = Poll(source, self.store, self.pipeline, self.parser, draining=lambda: self._draining, rng=self._rng)
        outcome = await poll.run(fetcher, failures)
        self._count_poll(source.name, outcome)
        return outcome.error is None, outcome.delay

    def _fetcher(self, source: SourceConfig) -> _NullFetcher | Fetcher:
        """The source's HTTP client; the directory source fetches nothing."""
        if not SOURCE_CLASSES[source.kind].uses_network:
            return _NullFetcher()
        return Fetcher.for_source(source, self.config.tor, limiter=self.limiter)

    def _count_poll(self, name: str, outcome: PollOutcome) -> None:
        error, tally, health = outcome.error, outcome.tally, outcome.health
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
                  seconds=round(outcome.took, 2))



def _holds_keyed_values(state: StateDB) -> bool:
    return holds_keyed_values(state.db)


class _NullFetcher:
    """The directory source fetches nothing: an async context giving None."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None
