"""The analysis worker processes: extract -> detect -> score, off the event loop.

Kept apart from the daemon so a worker imports only the pipeline (no aiohttp, no SQLite):
it starts faster and holds less memory. Workers are spawned fresh (no inherited threads,
locks or sockets) and build their `Analyzer` once, in the initializer.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
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


def analyze(content: bytes | None, path: str | None, label: str, content_type: str | None) -> Report:
    """Run in a worker: the report of one document (bytes, or a file streamed from `path`)."""
    analyzer = _WORKER["analyzer"]
    if path is not None:
        return analyzer.analyze_path(Path(path), label)
    return analyzer.analyze_bytes(content or b"", label, content_type)


def worker_pool(config: Config, secret: bytes, workers: int | None = None) -> ProcessPoolExecutor:
    """Up to two worker processes (one per core of the machines this runs on)."""
    count = workers or max(1, min(2, os.cpu_count() or 1))
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(config.rules, config.policy, secret),
    )
