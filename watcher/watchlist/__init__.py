"""Member watchlists: "are our members in this leak?", without the member list in clear.

An insurer or a mutuelle imports its members' NIRs once (`watcher watchlist import`); only
keyed 64-bit fingerprints are kept, and every document then reports, per watchlist, how many
distinct NIRs in it are members (`watchlist_hits`). A hit raises the document to `high`.

**Member fingerprint** (`members.MemberHasher`): the first 8 bytes, read as a big-endian
unsigned 64-bit integer (16 hex digits), of AES-256-CMAC (NIST SP 800-38B, RFC 4493) under the
watchlist key K_w of the NIR written as its 15 ASCII characters (13 + key, no separator,
`2A`/`2B` upper-case); K_w = HMAC-SHA256(installation secret, "leak-watcher/watchlist/1"). CMAC
rather than the store's HMAC because a whole document's NIRs go through AES in one call
(908,528 NIRs: 0.06 s) where one HMAC call per NIR costs 0.67-1.4 us in Python (0.6-1.3 s,
34-70% of `watcher scan`'s CPU on the 200 MB bench corpus). K_w computes member fingerprints
and nothing else (not the store's fingerprints, not the export ids): it is what an organisation
gets to fingerprint its list on its own machine (`watcher watchlist key`, `fingerprint`).

**Structure** (measured, see bench/bench_watchlist.py): a list is its members, sorted 64-bit
integers (20M members: 160 MB), mapped from a flat file beside the database; a document's
fingerprints are sorted and looked up in one walk through it (`members.hits`: compiled,
galloping from one answer to the next, 908,528 look-ups in 20M in 0.02-0.03 s; numpy's
`searchsorted` by ranges without a compiler). The slices of a big file hand their NIRs over
as one string each, fingerprinted as they arrive (`watcher.parallel`). Stored in SQLite as
one BLOB per 1M members (`watchlist_chunks`), so a 20M import is one sort and 20 inserts.
Two NIRs share a 64-bit fingerprint with probability 2**-64: a non-member matches a list of
N members with probability about N / 2**64 (20M: ~1.1e-12 per NIR looked up).

Modules: `files` (reading NIR and fingerprint files), `members` (the key, the fingerprints,
the look-up, loading the lists; cryptography and the compiled helpers, no numpy: scanning
and the daemon's workers do not import it), `arrays` (numpy: what an import stores, and the
look-up without a compiler), `store` (the SQL: the daemon's process and the alerting stage
import it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .members import Watchlists

log = logging.getLogger(__name__)

# numpy sorts and searches here (`arrays`: imports, and the look-up without a compiler), it
# never multiplies matrices: its OpenBLAS thread pool (one thread per core, started when numpy
# is imported) cost 0.12 s of CPU each time. Set before any module of this package imports it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def worker_watchlists(db_path: Path, secret: bytes) -> Watchlists | None:
    """The watchlists of the state database for a daemon's analysis worker; None when there is
    none (nothing of the lists is then imported). A list that cannot be read is logged, never
    fatal: the worker analyses without it (the daemon logs the lists it expects at each load)."""
    from .store import generation

    try:
        from ..store.connection import connect_read_only

        db = connect_read_only(db_path, idle_snapshot=False)
        try:
            if generation(db)[1] == 0:
                return None
        finally:
            db.close()
        from .members import open_watchlists

        loaded, other_key = open_watchlists(db_path, secret, beside_writer=True)
    except (OSError, sqlite3.Error, ValueError) as exc:
        log.error("watchlists not loaded in an analysis worker: %s", exc)
        return None
    if other_key:
        log.error("watchlists made with another key, not matched (import them again): %s", ", ".join(other_key))
    return loaded
