"""The item pipeline: what happens to an item once a source has fetched it.

    item -> [worker pool: extract -> detect -> score] -> [evidence: seal] -> store (+ alert)

Items travel to the pool and to the store in batches (up to BATCH_WINDOW seconds of them): one
pool task and one transaction for many items, as the event-loop process is the daemon's
bottleneck; the workers also mask what the store keeps of each item (its URL, title, author).
A document at or above `[evidence] min_severity` is sealed before its item is recorded
(watcher.evidence_stage), so a crash never leaves a recorded item without its evidence. A
finding and its alert are written in one transaction (the alert sender delivers from that
outbox). An item whose analysis fails is recorded as failed (retried next poll, parked after
`item_tries`); only an item that can be neither analysed nor recorded raises, so that its
poll fails and it is fetched again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .alerts import AlertSender
from .config import DB_NAME, Config
from .evidence_stage import EvidenceStage
from .logs import log_event
from .privacy import Fingerprinter
from .redact import keyed_id
from .report import Report
from .score import severity_rank
from .sources.base import Item, SourceError
from .store import ItemFailure, ItemRecord, ItemResult, StateDB, Store
from .worker import AnalysisFailed, AnalysisPool, AnalysisUnavailable, Init, Job

log = logging.getLogger("watcher.daemon")

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


class ItemPipeline:
    """Analyses, seals and records the items the sources fetch, in batches (see the module's
    docstring). One per daemon; `reconfigure` on a reload, `close` at the end."""

    def __init__(self, config: Config, store: Store, alerts: AlertSender, evidence: EvidenceStage | None,
                 secret: bytes, *, workers: int | None = None, on_finding: FindingHook | None = None) -> None:
        self.config = config
        self.store, self.alerts, self.evidence = store, alerts, evidence
        self.workers, self.on_finding = workers, on_finding
        self._secret = secret
        self._sources = {source.name: source for source in config.sources}     # by name, for per-item look-ups
        self.pool = self._new_pool()
        self._retiring: dict[asyncio.Task[None], AnalysisPool] = {}     # old pools finishing their batches
        # Items go to the worker pool and to the store in batches: a pool task and a store
        # transaction cost the event-loop process ~0.3 ms each, whatever their size.
        self._batches: Batcher[Item, Outcome] = Batcher(
            self.analyze_and_record, window=BATCH_WINDOW, max_items=BATCH_MAX_ITEMS,
            max_size=BATCH_MAX_BYTES, size=_batch_size)

    def _new_pool(self) -> AnalysisPool:
        config = self.config
        return AnalysisPool(Init(config.rules, config.policy, self._secret, str(config.watcher.state_dir / DB_NAME)),
                            self.workers, document_timeout=config.watcher.document_timeout)

    def renew_workers(self) -> None:
        """New workers, which load the member watchlists again (they changed); the old pool is
        closed once its batches under way are done (`close` stops it if that comes first)."""
        old, self.pool = self.pool, self._new_pool()
        retiring = asyncio.create_task(old.retire())
        self._retiring[retiring] = old
        retiring.add_done_callback(lambda task: self._retiring.pop(task, None))

    async def reconfigure(self, config: Config) -> None:
        """A reloaded configuration: new workers when the rules or the scoring changed
        (batches under way on the old ones fail unrecorded, and are fetched again)."""
        rules_changed = (config.rules, config.policy) != (self.config.rules, self.config.policy)
        self.config = config
        self._sources = {source.name: source for source in config.sources}
        if rules_changed:
            old, self.pool = self.pool, self._new_pool()
            await old.close()

    async def close(self) -> None:
        """Stop the workers (a batch under way fails unrecorded: retried later), then wait for
        the batches."""
        for retiring, old in list(self._retiring.items()):
            retiring.cancel()
            await old.close()
        await self.pool.close()
        await self._batches.close()

    def key(self, text: str) -> str:
        """An item id or version as the store keeps it: no identifier in it (`redact.keyed_id`)."""
        return keyed_id(str(text), Fingerprinter(self._secret))

    def start(self, item: Item) -> asyncio.Future[Outcome]:
        """`process(item)` under way: the batch's own future when there is no finding hook
        (no task per item: the event loop is the daemon's bottleneck)."""
        if self.on_finding is None:
            return self._batches.enqueue(item)
        return asyncio.ensure_future(self.process(item))

    async def process(self, item: Item) -> Outcome:
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

    async def record_unanalysed(self, item: Item) -> None:
        """Record `item` as seen with no analysis (no sha256, no finding): older than its
        source's `backfill`."""
        record = ItemRecord(item.source, self.key(item.item_id), self.key(item.version), item.url, item.title,
                            None, item.posted_at, item.author)
        await self.store.call(StateDB.record_items, [record])

    async def analyze_and_record(self, items: list[Item]) -> list[Outcome | Exception]:
        """A batch of items: analysed in one pool task, recorded in one transaction (failures
        in another)."""
        answers = await self.analyze(items)
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

    async def analyze(self, items: list[Item]) -> list[tuple[Analysed, Masked]]:
        """The items' reports from one pool task, each with its item's texts masked by the
        worker (`_job`); an AnalysisFailed for a document that raised, ran over its budget or
        killed its worker; a SourceError for all when no worker runs."""
        jobs = [_job(item) for item in items]
        try:
            answers = await self.pool.analyze_masking(jobs)
        except AnalysisUnavailable as exc:
            log_event(log, "error", "analysis unavailable", reason=str(exc), items=len(items))
            return [(SourceError(f"{exc}; the item is retried next poll"), None) for _ in jobs]
        return [(_report(item, job, outcome), texts)
                for item, job, (outcome, texts) in zip(items, jobs, answers, strict=True)]

    async def record(self, analysed: list[tuple[Item, Report]],
                     masked: Sequence[Masked] = ()) -> list[ItemResult | Exception]:
        """Record analysed items in one transaction (one at a time if it fails, so that an item
        that cannot be recorded fails its own poll only); log the findings, wake the alerts.
        `masked`: each item's (url, title, author) as its worker masked them, or None (then the
        store masks them)."""
        store, alerts = self.store, self.alerts
        records = [_record_of(item, report, self.key(item.item_id), self.key(item.version),
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

    def _tor(self, name: str) -> bool:
        """Whether the source `name` fetches through Tor (a custody record says so)."""
        source = self._sources.get(name)
        return source is not None and source.tor

    async def _record_failures(self, failed: list[tuple[Item, AnalysisFailed]]) -> list[ItemFailed | Exception]:
        """Record the items whose analysis failed (one line each in the log)."""
        if not failed:
            return []
        failures = [ItemFailure(i.source, self.key(i.item_id), self.key(i.version), i.url, i.title, f.error)
                    for i, f in failed]
        try:
            recorded = await self.store.call(StateDB.record_failures, failures, self.config.watcher.item_tries)
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
            return await self.record(analysed, masked)
        sealed = await evidence.seal(analysed, self._tor)
        results = await self.record(analysed, masked)
        await evidence.record(analysed, sealed, results)
        return results

    async def _record_alone(self, record: ItemRecord) -> ItemResult | Exception:
        try:
            (result,) = await self.store.call(StateDB.record_items, [record], self.alerts.policy)
        except Exception as exc:
            return exc
        return result


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
