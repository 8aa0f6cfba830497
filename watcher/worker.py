"""The analysis worker processes: extract -> detect -> score, off the event loop.

Kept apart from the daemon so a worker imports only the pipeline (no aiohttp, no SQLite): it
starts faster and holds less memory. A worker is a child process (`python -m watcher.worker`)
speaking length-prefixed pickles on its stdin and stdout with the daemon's `AnalysisPool`:

    daemon -> worker   Init(rules, policy, secret)        once; the worker answers READY
    daemon -> worker   [Job, Job, ...]                     a batch
    worker -> daemon   (Report | AnalysisFailed, texts)    one per job, in order, as each ends

`texts` are the job's `texts` (the item's URL, title, author: what the store keeps of it) with
every identifier masked (`watcher.redact`): masking costs a scan per text, done here in parallel
rather than in the daemon's one process, whose GIL is its bottleneck.

One answer per document lets the daemon time each document: one that holds its worker longer
than its budget (a parser that loops on a hostile input, a regex engine in C that Python cannot
interrupt) gets the worker killed and only that document fails; the rest of its batch goes to
a fresh worker. A worker that dies (segfault, OOM killer) fails the document it was on, the
same way. Workers die with the daemon (watcher.childproc: no orphan after a kill -9 of the
daemon), and they exit at EOF on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .analyze import Analyzer
from .childproc import frame, read_frame, read_frame_async, serve_stdio, write_frame_async
from .detect.rules import Rule
from .redact import redact
from .report import Report
from .score import Policy

log = logging.getLogger(__name__)

READY = "ready"
START_TIMEOUT = 120.0          # seconds a new worker may take to compile its patterns
BUDGET_BYTES_PER_SECOND = 5 * 1024 * 1024   # a big file earns time beyond the budget at this rate


@dataclass(frozen=True)
class Job:
    """One document to analyse: its bytes, or a file streamed from `path`."""

    content: bytes | None
    path: str | None
    label: str
    content_type: str | None
    size: int = 0          # bytes, for the time budget (a file's size, else len(content))
    texts: tuple[str | None, ...] = ()     # to mask for the store (`redact`), answered with the report


@dataclass(frozen=True)
class AnalysisFailed:
    """A document whose analysis failed: it raised (a bug, a hostile input), ran over its
    budget, or killed its worker. `error` is one line; `traceback` may be empty."""

    error: str
    traceback: str = ""


@dataclass(frozen=True)
class Init:
    """What a worker needs to build its Analyzer."""

    rules: tuple[Rule, ...]
    policy: Policy
    secret: bytes
    state_db: str | None = None        # the state database: its member watchlists (watcher.watchlist)


# What a worker answers for a job: its outcome and its texts masked (None: no answer came).
Answer = tuple[Report | AnalysisFailed, tuple[str | None, ...] | None]


class AnalysisUnavailable(Exception):
    """No worker could be started (the documents are not to blame: retry them later)."""


# --------------------------------------------------------------------------- the worker side

def analyze(analyzer: Analyzer, job: Job) -> Report:
    """The report of one document."""
    if job.path is not None:
        return analyzer.analyze_path(Path(job.path), job.label)
    return analyzer.analyze_bytes(job.content or b"", job.label, job.content_type)


def analyze_one(analyzer: Analyzer, job: Job) -> Report | AnalysisFailed:
    """A report, or the failure in its place: a document costs itself only."""
    try:
        return analyze(analyzer, job)
    except Exception as exc:
        return AnalysisFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def analyze_batch(analyzer: Analyzer, jobs: list[Job]) -> list[Report | AnalysisFailed]:
    """The reports of several documents, a failure in its document's place."""
    return [analyze_one(analyzer, job) for job in jobs]


def masked(texts: tuple[str | None, ...]) -> tuple[str | None, ...] | None:
    """`texts` as the store keeps them: every identifier masked; None if masking raised (the
    store then masks them itself, and fails that item alone if it raises again)."""
    try:
        return tuple(None if text is None else redact(text) for text in texts)
    except Exception:
        return None


def _pickled(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def main() -> None:
    """`python -m watcher.worker PARENT_PID`: analyse the batches read on stdin."""
    requests, answers = serve_stdio(int(sys.argv[1]))
    payload = read_frame(requests)
    init = pickle.loads(payload) if payload is not None else None  # noqa: S301 (our own parent)
    if not isinstance(init, Init):
        return
    from .detect import Scanner
    from .privacy import Fingerprinter

    watchlists = None
    if init.state_db is not None:
        from .watchlist import worker_watchlists

        watchlists = worker_watchlists(Path(init.state_db), init.secret)
    analyzer = Analyzer(Scanner(init.rules), policy=init.policy, fingerprinter=Fingerprinter(init.secret),
                        watchlists=watchlists)
    answers.write(frame(_pickled(READY)))
    answers.flush()
    while (payload := read_frame(requests)) is not None:
        for job in pickle.loads(payload):  # noqa: S301
            answers.write(frame(_pickled((analyze_one(analyzer, job), masked(job.texts)))))
            answers.flush()


# --------------------------------------------------------------------------- the daemon side

def budget(job: Job, seconds: float) -> float:
    """A document's time budget: `seconds`, more for a big file (5 MB/s beyond it)."""
    return max(seconds, job.size / BUDGET_BYTES_PER_SECOND)


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, init: Init) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watcher.worker", str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        worker = cls(process)
        try:
            worker.send(init)
            answer = await asyncio.wait_for(worker.receive(), START_TIMEOUT)
        except BaseException:
            worker.kill()
            raise
        if answer != READY:
            code = await worker.wait(5)
            worker.kill()
            raise AnalysisUnavailable(f"an analysis worker did not start (exit status {code})")
        return worker

    def send(self, value: object) -> None:
        assert self.process.stdin is not None
        write_frame_async(self.process.stdin, _pickled(value))

    async def receive(self) -> object:
        """The next answer; None when the worker is gone."""
        assert self.process.stdout is not None
        payload = await read_frame_async(self.process.stdout)
        return None if payload is None else pickle.loads(payload)  # noqa: S301

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def wait(self, seconds: float) -> int | None:
        try:
            return await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            return None

    def why_gone(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}" if code is not None else "pipe closed"


class AnalysisPool:
    """Up to `size` worker processes; `analyze(jobs)` runs a batch on one of them.

    Each document has `document_timeout` seconds (more for a big file, see `budget`); a worker
    over it is killed, that document fails, the rest of the batch goes to a new worker.
    Workers start on demand and are reused; `close()` stops them.
    """

    def __init__(self, init: Init, size: int | None = None, document_timeout: float = 60.0) -> None:
        self._init = init
        self.size = size or max(1, min(2, os.cpu_count() or 1))
        self.document_timeout = document_timeout
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._free = asyncio.Semaphore(self.size)
        self._closed = False

    async def analyze(self, jobs: list[Job]) -> list[Report | AnalysisFailed]:
        """One outcome per job, in order. AnalysisUnavailable when no worker can start."""
        return [outcome for outcome, _ in await self.analyze_masking(jobs)]

    async def analyze_masking(self, jobs: list[Job]) -> list[Answer]:
        """One (outcome, the job's texts masked) per job, in order; the texts are None when
        the worker did not answer (over its budget, dead). AnalysisUnavailable when no worker
        can start."""
        outcomes: list[Answer] = []
        async with self._free:
            while len(outcomes) < len(jobs):
                worker = await self._take()
                healthy = False          # a batch left half-way (cancelled) leaves answers in the pipe
                try:
                    healthy = await self._run(worker, jobs[len(outcomes):], outcomes)
                finally:
                    self._give_back(worker, healthy)
        return outcomes

    async def _run(self, worker: _Worker, jobs: list[Job], outcomes: list[Answer]) -> bool:
        """Send `jobs` to `worker`, append what comes back; False once the worker is lost
        (its current document then failed, the others are left for the next worker)."""
        worker.send(jobs)
        for job in jobs:
            started = time.monotonic()
            allowed = budget(job, self.document_timeout)
            try:
                answer = await asyncio.wait_for(worker.receive(), allowed)
            except TimeoutError:
                worker.kill()
                await worker.wait(5)
                log.error("analysis of %s exceeded its %.0f s budget: worker killed", job.label, allowed)
                outcomes.append((AnalysisFailed(f"analysis exceeded its time budget ({allowed:.0f} s): "
                                                "worker killed"), None))
                return False
            if answer is None:
                if self._closed:            # stopped by `close()`: not the document's fault
                    raise AnalysisUnavailable("the analysis pool was closed")
                await worker.wait(5)
                reason = worker.why_gone()
                log.error("analysis worker died (%s) on %s after %.1f s", reason, job.label,
                          time.monotonic() - started)
                outcomes.append((AnalysisFailed(f"analysis worker died ({reason})"), None))
                return False
            outcomes.append(answer)  # type: ignore[arg-type]     # (outcome, masked texts)
        return True

    async def _take(self) -> _Worker:
        if self._closed:
            raise AnalysisUnavailable("the analysis pool is closed")
        if self._idle:
            return self._idle.pop()
        try:
            worker = await _Worker.start(self._init)
        except (OSError, TimeoutError) as exc:
            raise AnalysisUnavailable(f"an analysis worker did not start: {exc}") from None
        self._all.add(worker)
        return worker

    def _give_back(self, worker: _Worker, healthy: bool) -> None:
        if healthy and not self._closed:
            self._idle.append(worker)
            return
        worker.kill()
        self._all.discard(worker)

    async def retire(self) -> None:
        """`close` once the batches under way are done (a new pool took over)."""
        for _ in range(self.size):
            await self._free.acquire()
        await self.close()

    async def close(self) -> None:
        """Stop every worker: idle ones at once (EOF), busy ones killed."""
        self._closed = True
        for worker in list(self._all):
            if worker.process.stdin is not None:
                worker.process.stdin.close()
            if worker not in self._idle:
                worker.kill()
        for worker in list(self._all):
            if await worker.wait(5) is None:
                worker.kill()
                await worker.wait(5)
        self._all.clear()
        self._idle.clear()


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s): what crosses the pipe pickles as
    # watcher.worker.Job / AnalysisFailed on both sides.
    from watcher import worker as _module

    _module.main()
