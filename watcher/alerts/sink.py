"""The JSON-lines sink: every alert appended once, as one line, for SIEM agents to tail.

Exactly once across crashes: the sender appends a line, fsyncs, then marks the alert emitted
in the database. A crash between the two leaves a line whose alert is not marked; on its first
round after a restart the sender reads the file's tail (`written_ids`) and marks those alerts
without writing them again. A line torn by a crash (no final newline) is closed before the
next append, so one bad line never glues itself to a good one.

The file is created 0600: it holds masked samples and source names, which are not for
everyone on the machine.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["JsonlSink"]

log = logging.getLogger(__name__)

FILE_MODE = 0o600
TAIL_BYTES = 4 * 1024 * 1024


class JsonlSink:
    """Appends alert records to one file (blocking calls: run them off the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def written_ids(self, alert_ids: Iterable[str], tail_bytes: int = TAIL_BYTES) -> set[str]:
        """Which of `alert_ids` already have a line in the file's last `tail_bytes` bytes.

        Only alerts not yet marked emitted are asked about, and those are the newest lines,
        so the tail suffices.
        """
        wanted = set(alert_ids)
        if not wanted:
            return set()
        try:
            with self.path.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - tail_bytes))
                tail = handle.read()
        except FileNotFoundError:
            return set()
        except OSError as exc:  # unreadable: appending will fail too, and say so
            log.warning("cannot read the JSONL sink %s to reconcile it: %s", self.path, exc)
            return set()
        found = set()
        for line in tail.splitlines():
            try:
                alert_id = json.loads(line).get("alert_id")
            except (ValueError, AttributeError):
                continue  # a torn line, or the partial first line of the tail
            if alert_id in wanted:
                found.add(alert_id)
        return found

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Append one line per record and fsync (creating the file and its folder if needed)."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            if self._torn(fd):
                os.write(fd, b"\n")
            for record in records:
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _torn(fd: int) -> bool:
        """True when the file is not empty and does not end with a newline."""
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
