"""Items analysed and recorded in batches: the `Batcher`, the worker processes of the
`AnalysisPool` (a document over its time budget, a worker that dies), and how the daemon keeps
a failure to the item it concerns (recorded as failed, retried, parked; an item the store
refuses)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.daemon import daemon_parts
from watcher import worker
from watcher.analyze import Analyzer
from watcher.daemon import Daemon
from watcher.pipeline import Batcher
from watcher.report import Report
from watcher.score import Policy
from watcher.sources.directory import DirectoryOptions
from watcher.sources.base import Item, PollContext, Source
from watcher.store import ItemResult, StateDB


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

def test_analyze_batch_returns_a_failure_in_place(analyzer: Analyzer, tmp_path: Path) -> None:
    jobs = [worker.Job(b"hello", None, "a", "text/plain"), worker.Job(None, str(tmp_path / "gone"), "b", None),
            worker.Job(b"world", None, "c", None)]
    first, failed, last = worker.analyze_batch(analyzer, jobs)
    assert isinstance(first, Report) and first.path == "a" and first.severity == "none"
    assert isinstance(failed, worker.AnalysisFailed) and "FileNotFoundError" in failed.error
    assert "Traceback" in failed.traceback
    assert isinstance(last, Report) and last.path == "c"


def stuck_file(tmp_path: Path, name: str = "stuck") -> Path:
    """A document whose analysis never ends: a FIFO nobody writes to (reading it blocks in C,
    where no Python-level timeout reaches; only killing the worker stops it)."""
    path = tmp_path / name
    os.mkfifo(path)
    return path


def worker_pids() -> set[int]:
    """Live `python -m watcher.worker` processes of this test process."""
    found = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "watcher.worker"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


async def no_workers_left(timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while worker_pids() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return not worker_pids()


def new_pool(document_timeout: float = 60, size: int = 1) -> worker.AnalysisPool:
    return worker.AnalysisPool(worker.Init((), Policy(), b"k" * 32), size, document_timeout=document_timeout)


def text_job(label: str) -> worker.Job:
    return worker.Job(label.encode(), None, label, "text/plain", len(label))


async def test_a_document_over_its_budget_fails_alone_and_its_worker_is_replaced(tmp_path: Path) -> None:
    pool = new_pool(document_timeout=1)
    stuck = stuck_file(tmp_path)
    try:
        started = time.monotonic()
        outcomes = await pool.analyze([text_job("before"), worker.Job(None, str(stuck), "stuck", None),
                                       text_job("after")])
        took = time.monotonic() - started
        assert [type(o) for o in outcomes] == [Report, worker.AnalysisFailed, Report]
        assert outcomes[0].path == "before" and outcomes[2].path == "after"
        assert "time budget (1 s)" in outcomes[1].error and "worker killed" in outcomes[1].error
        assert took < 30                     # 1 s budget + a worker start, not a hung batch
        assert len(worker_pids()) == 1       # the killed worker is gone, its replacement idles
        (again,) = await pool.analyze([text_job("next")])
        assert isinstance(again, Report)
    finally:
        await pool.close()
    assert await no_workers_left()


async def test_a_worker_that_dies_fails_the_document_it_was_on(tmp_path: Path) -> None:
    pool = new_pool()
    stuck = stuck_file(tmp_path)
    try:
        await pool.analyze([text_job("warm-up")])            # the worker is up
        (pid,) = worker_pids()
        batch = asyncio.create_task(pool.analyze([worker.Job(None, str(stuck), "stuck", None), text_job("rest")]))
        await asyncio.sleep(0.5)
        os.kill(pid, 9)                                       # as the OOM killer would
        died, rest = await asyncio.wait_for(batch, 60)
        assert isinstance(died, worker.AnalysisFailed) and "worker died (killed by SIGKILL)" in died.error
        assert isinstance(rest, Report) and rest.path == "rest"
    finally:
        await pool.close()
    assert await no_workers_left()


async def test_closing_the_pool_stops_a_busy_worker_at_once_and_blames_no_document(tmp_path: Path) -> None:
    pool = new_pool()
    stuck = stuck_file(tmp_path)
    batch = asyncio.create_task(pool.analyze([worker.Job(None, str(stuck), "stuck", None)]))
    for _ in range(100):
        if worker_pids():
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await pool.close()
    assert time.monotonic() - started < 3
    with pytest.raises(worker.AnalysisUnavailable):
        await batch
    assert await no_workers_left()


def test_a_worker_dies_with_its_parent(tmp_path: Path) -> None:
    """kill -9 of the daemon leaves no worker behind (they asked for SIGKILL at parent death)."""
    script = (
        "import asyncio, sys\n"
        "from watcher import worker\n"
        "from watcher.score import Policy\n"
        "async def main():\n"
        "    pool = worker.AnalysisPool(worker.Init((), Policy(), b'k' * 32), 1)\n"
        "    await pool.analyze([worker.Job(b'x', None, 'x', None, 1)])\n"
        "    print(pool._idle[0].process.pid, flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())   # type: ignore[union-attr]
        os.kill(parent.pid, 9)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists(), "the worker outlived its parent"
    finally:
        parent.kill()


# --------------------------------------------------------------------------- the daemon

def items(*ids: str, source: str = "inbox") -> list[Item]:
    return [Item(source=source, item_id=item_id, url=f"http://paste.example/{item_id}", content=b"text")
            for item_id in ids]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with daemon_parts(tmp_path, "document_timeout = 1\nitem_tries = 2\n") as opened:
        yield opened


class Drop(Source):
    """A source yielding the items it is given (what a directory source yields for its files)."""

    kind = "directory"
    uses_network = False
    Options = DirectoryOptions

    def __init__(self, daemon: Daemon, files: list[Path], version: str = "v1") -> None:
        super().__init__(daemon.config.sources[0])
        self.files, self.version = files, version

    async def poll(self, ctx: PollContext):  # type: ignore[override]
        for path in self.files:
            if not await ctx.is_seen(path.name, self.version):
                yield Item(source=self.name, item_id=path.name, url=str(path), path=path, version=self.version)


async def test_an_item_that_fails_analysis_is_recorded_retried_then_parked(daemon: Daemon, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("nothing to see\n")
    stuck = stuck_file(tmp_path, "stuck.csv")
    source = Drop(daemon, [good, stuck])
    store = daemon.store
    assert store is not None

    ok, _ = await daemon._poll(source, None, 0)
    assert ok                                            # one bad document does not fail the poll
    assert await store.is_seen("inbox", "good.txt", "v1")
    assert not await store.is_seen("inbox", "stuck.csv", "v1")     # failed: retried next poll
    (row,) = await store.call(StateDB.failed_items)
    assert (row["item_id"], row["tries"], row["parked"]) == ("stuck.csv", 1, 0)
    assert "time budget" in row["error"]
    (health,) = await store.call(StateDB.sources_health)
    assert (health["state"], health["failed_items"], health["parked_items"]) == ("ok", 1, 0)
    assert "stuck.csv failed (try 1)" in health["last_notice"]

    ok, _ = await daemon._poll(source, None, 0)          # the second try parks it (item_tries = 2)
    assert ok and await store.is_seen("inbox", "stuck.csv", "v1")
    (health,) = await store.call(StateDB.sources_health)
    assert (health["failed_items"], health["parked_items"]) == (0, 1)
    assert daemon.counters.failed_items == 2 and daemon.counters.items == 3

    config = str(daemon.config.path)                    # what an operator sees
    listed = cli("items", "--failed", "--config", config)
    assert "parked" in listed and "stuck.csv" in listed and "time budget" in listed
    (row,) = [json.loads(line) for line in cli("items", "--failed", "--format", "json", "--config", config).splitlines()]
    assert (row["source"], row["tries"], row["parked"]) == ("inbox", 2, 1)
    assert "stuck.csv" in cli("items", "--failed", "--since", "1h", "--config", config)
    assert "stuck.csv" not in cli("items", "--failed", "--since", "2999-01-01", "--config", config)
    table = cli("sources", "--config", config)
    assert "last failed item: analysis exceeded its time budget" in table

    stuck.unlink()                                        # the file is replaced: analysed, unparked
    stuck.write_text("nom;nir\n")
    source.files, source.version = [stuck], "v2"
    ok, _ = await daemon._poll(source, None, 0)
    assert ok and await store.is_seen("inbox", "stuck.csv", "v2")
    assert await store.call(StateDB.failed_items) == []


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "watcher", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_no_worker_fails_the_poll_and_records_nothing(daemon: Daemon) -> None:
    await daemon.pipeline.pool.close()                             # type: ignore[union-attr]
    outcomes = await daemon.pipeline.analyze(items("a", "b"))
    assert all("retried next poll" in str(outcome) for outcome in outcomes)
    assert await daemon.store.call(StateDB.failed_items) == []     # type: ignore[union-attr]


async def test_an_item_the_store_refuses_fails_alone(daemon: Daemon) -> None:
    good, bad = (Report(path=name, sha256=name * 64, size=4) for name in "ab")
    bad.severity = "apocalyptic"       # record_items refuses the whole batch before writing
    results = await daemon.pipeline.record(list(zip(items("a", "b"), (good, bad), strict=False)))
    assert isinstance(results[0], ItemResult) and results[0].new_item
    assert isinstance(results[1], ValueError)
    assert await daemon.store.is_seen("inbox", "a", "")
    assert not await daemon.store.is_seen("inbox", "b", "")
