"""The analysis worker processes: extract -> detect -> score, off the event loop.

Kept apart from the daemon so a worker imports only the pipeline (no aiohttp, no SQLite):
it starts faster and holds less memory. Workers are spawned fresh (no inherited threads,
locks or sockets) and build their `Analyzer` once, in the initializer. The daemon sends
documents in batches (`analyze_batch`), one pool task for several documents.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .analyze import Analyzer
from .config import Config
from .detect import Scanner
from .detect.rules import Rule
from .privacy import Fingerprinter
from .report import Report
from .score import Policy

_WORKER: dict[str, Analyzer] = {}     # one Analyzer per worker process, built by the initializer


def _init_worker(rules: tuple[Rule, ...], policy: Policy, secret: bytes) -> None:
    # The daemon stops its workers itself: a Ctrl-C or a SIGTERM sent to the whole process
    # group (systemd's default) must not kill one in the middle of a document.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WORKER["analyzer"] = Analyzer(Scanner(rules), policy=policy, fingerprinter=Fingerprinter(secret))


@dataclass(frozen=True)
class Job:
    """One document to analyse: its bytes, or a file streamed from `path`."""

    content: bytes | None
    path: str | None
    label: str
    content_type: str | None


@dataclass(frozen=True)
class AnalysisFailed:
    """What a worker returns for a document whose analysis raised (a bug, a hostile input)."""

    error: str
    traceback: str


def analyze(job: Job) -> Report:
    """Run in a worker: the report of one document."""
    analyzer = _WORKER["analyzer"]
    if job.path is not None:
        return analyzer.analyze_path(Path(job.path), job.label)
    return analyzer.analyze_bytes(job.content or b"", job.label, job.content_type)


def analyze_batch(jobs: list[Job]) -> list[Report | AnalysisFailed]:
    """Run in a worker: the reports of several documents, in one pool task (a task costs the
    daemon's event-loop process more than pickling a document). A failure is returned in
    its document's place, so it costs that document only."""
    outcomes: list[Report | AnalysisFailed] = []
    for job in jobs:
        try:
            outcomes.append(analyze(job))
        except Exception as exc:  # a bug or a hostile document: reported, fails that poll only
            outcomes.append(AnalysisFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    return outcomes


def worker_pool(config: Config, secret: bytes, workers: int | None = None) -> ProcessPoolExecutor:
    """Up to two worker processes (one per core of the machines this runs on)."""
    count = workers or max(1, min(2, os.cpu_count() or 1))
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(config.rules, config.policy, secret),
    )
