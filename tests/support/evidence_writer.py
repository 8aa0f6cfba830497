"""A process sealing one big piece slowly, for the kill -9 test of tests/test_evidence.py.

    python -m tests.support.evidence_writer FOLDER RECIPIENT SIZE

Writes SIZE random (incompressible) bytes to the vault in FOLDER, 64 KiB at a time, sleeping
50 ms after each chunk; prints "writing" once the first chunk is on disk, so the test knows
when to kill it, and "done" if nobody did.
"""

from __future__ import annotations

import os
import sys
import time

from watcher.evidence import EvidenceVault


def main(folder: str, recipient: str, size: int) -> None:
    started = False

    def slowly(written: int, total: int) -> None:
        nonlocal started
        if not started:
            started = True
            print("writing", flush=True)
        time.sleep(0.05)

    vault = EvidenceVault(folder, [recipient], chunk_size=64 * 1024, on_chunk=slowly)
    vault.write("piece-1", os.urandom(size), source="paste", url="https://paste.example/x",
                fetched_at="2026-01-01T00:00:00Z")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
