"""Items analysed and recorded in batches: the `Batcher`, the workers' `analyze_batch`, and
how the daemon keeps a failure to the items it concerns (a dead worker, an item the store
refuses)."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from watcher import worker
from watcher.alerts import AlertSender, alert_settings
from watcher.analyze import Analyzer
from watcher.config import load_config
from watcher.daemon import Batcher, Daemon
from watcher.report import Report
from watcher.sources.base import Item, SourceError
from watcher.store import ItemResult, Store


# --------------------------------------------------------------------------- Batcher

class Recorder:
    """A batch function that records its batches: value -> value * 10, ValueError on 13."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, values: list[int]) -> list[int | BaseException]:
        self.batches.append(values)
        await asyncio.sleep(0)
        return [ValueError(value) if value == 13 else value * 10 for value in values]


async def test_values_submitted_together_share_one_batch() -> None:
    run = Recorder()
    batcher = Batcher(run, window=0.05, max_items=100)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert run.batches == [[0, 1, 2, 3, 4]]


async def test_a_full_batch_leaves_without_waiting() -> None:
    run = Recorder()
    batcher = Batcher(run, window=3600, max_items=3, max_size=100, size=lambda value: value)
    assert await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3))), 5) == [10, 20, 30]
    assert await asyncio.wait_for(batcher.submit(150), 5) == 1500       # over max_size alone
    assert run.batches == [[1, 2, 3], [150]]


async def test_a_failed_value_fails_alone() -> None:
    batcher = Batcher(Recorder(), window=0.01, max_items=100)
    results = await asyncio.gather(*(batcher.submit(n) for n in (12, 13, 14)), return_exceptions=True)
    assert results[0] == 120 and results[2] == 140
    assert isinstance(results[1], ValueError)


async def test_a_failing_batch_fails_each_of_its_values() -> None:
    async def broken(values: list[int]) -> list[int | BaseException]:
        raise OSError("disk full")

    batcher = Batcher(broken, window=0.01, max_items=100)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]

    async def short(values: list[int]) -> list[int | BaseException]:
        return []

    with pytest.raises(RuntimeError, match="0 results for a batch of 1"):
        await asyncio.wait_for(Batcher(short, window=0.01, max_items=100).submit(1), 5)


async def test_a_cancelled_value_is_dropped_and_close_sends_the_rest() -> None:
    run = Recorder()
    batcher = Batcher(run, window=3600, max_items=100)
    dropped = asyncio.create_task(batcher.submit(1))
    kept = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    dropped.cancel()
    await batcher.close()
    assert await kept == 20
    assert run.batches == [[2]]


# --------------------------------------------------------------------------- workers

def test_analyze_batch_returns_a_failure_in_place(analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setitem(worker._WORKER, "analyzer", analyzer)
    jobs = [worker.Job(b"hello", None, "a", "text/plain"), worker.Job(None, str(tmp_path / "gone"), "b", None),
            worker.Job(b"world", None, "c", None)]
    first, failed, last = worker.analyze_batch(jobs)
    assert isinstance(first, Report) and first.path == "a" and first.severity == "none"
    assert isinstance(failed, worker.AnalysisFailed) and "FileNotFoundError" in failed.error
    assert "Traceback" in failed.traceback
    assert isinstance(last, Report) and last.path == "c"


# --------------------------------------------------------------------------- the daemon

def items(*ids: str, source: str = "inbox") -> list[Item]:
    return [Item(source=source, item_id=item_id, url=f"http://paste.example/{item_id}", content=b"text")
            for item_id in ids]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    path = tmp_path / "sources.toml"
    path.write_text(f'[watcher]\nstate_dir = "{tmp_path / "state"}"\n\n[[sources]]\nname = "inbox"\n'
                    f'kind = "directory"\npath = "{tmp_path}"\n', encoding="utf-8")
    config = load_config(path)
    daemon = Daemon(config, once=True)
    daemon.store = await Store.open(tmp_path / "state.db")
    daemon.alerts = AlertSender(daemon.store, alert_settings(config))
    await daemon.store.upsert_source("inbox", "directory")
    yield daemon
    await daemon.store.close()


class BrokenPool:
    """A process pool whose workers are dead."""

    def submit(self, *args: object) -> Future[object]:
        future: Future[object] = Future()
        future.set_exception(BrokenProcessPool("a worker died"))
        return future


async def test_a_dead_worker_fails_its_batch_and_the_pool_is_replaced_once(daemon: Daemon) -> None:
    replacements: list[object] = []

    def replace_pool() -> None:
        daemon.pool = object()  # type: ignore[assignment]
        replacements.append(daemon.pool)

    daemon.pool = BrokenPool()  # type: ignore[assignment]
    daemon._replace_pool = replace_pool  # type: ignore[method-assign]
    first, second = await asyncio.gather(daemon._analyze(items("a", "b")), daemon._analyze(items("c")))
    assert [type(outcome) for outcome in first + second] == [SourceError] * 3
    assert "retried next poll" in str(first[0])
    assert len(replacements) == 1


async def test_an_item_the_store_refuses_fails_alone(daemon: Daemon) -> None:
    good, bad = (Report(path=name, sha256=name * 64, size=4) for name in "ab")
    bad.severity = "apocalyptic"       # record_items refuses the whole batch before writing
    results = await daemon._record(list(zip(items("a", "b"), (good, bad))))
    assert isinstance(results[0], ItemResult) and results[0].new_item
    assert isinstance(results[1], ValueError)
    assert await daemon.store.is_seen("inbox", "a", "")
    assert not await daemon.store.is_seen("inbox", "b", "")


async def test_a_batch_that_does_not_finish_stops_the_workers_and_fails_its_items(daemon: Daemon) -> None:
    """Real worker processes: a batch over its time limit (here 50 ms, less than a worker takes
    to start) fails its items and the pool is replaced; the next batch is analysed."""
    daemon._secret = b"k" * 32
    daemon.pool = worker.worker_pool(daemon.config, daemon._secret, 1)
    first_pool = daemon.pool
    daemon.analysis_timeout = 0.05
    outcomes = await daemon._analyze(items("slow"))
    assert [type(outcome) for outcome in outcomes] == [SourceError]
    assert "did not finish within 0.05 s" in str(outcomes[0])
    assert daemon.pool is not first_pool
    for _ in range(50):                            # the stuck worker was killed, not left running
        if not multiprocessing.active_children():
            break
        await asyncio.sleep(0.1)
    assert multiprocessing.active_children() == []
    daemon.analysis_timeout = 120
    (report,) = await daemon._analyze(items("next"))
    assert isinstance(report, Report)
    daemon.pool.shutdown()


def test_kill_workers_stops_a_task_that_would_run_for_minutes() -> None:
    import time
    from concurrent.futures import ProcessPoolExecutor

    from watcher.daemon import _kill_workers

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    future = pool.submit(time.sleep, 300)
    for _ in range(100):                                  # until the worker has it
        if future.running():
            break
        time.sleep(0.05)
    started = time.monotonic()
    _kill_workers(pool)
    with pytest.raises(BrokenProcessPool):
        future.result(timeout=30)
    assert time.monotonic() - started < 10
    pool.shutdown()
