"""numpy's side of the watchlists: a member file's fingerprints, a batch at a time, made into
the sorted, distinct list an import stores (`watcher watchlist import|fingerprint|
import-fingerprints|export-fingerprints`), and the look-up where the compiled helpers are not
built (`members.sorted_keys`, `members.hits`).

Scanning never imports this module when `_speedups` is built: numpy's import alone took 33 ms
of `watcher scan --watchlist` (and a share of every daemon worker's memory).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np

from .members import MemberHasher, Members

BUCKET_BITS = 10                 # a big document's look-ups go by the top bits of their fingerprints...
BUCKETED_FROM = 1 << 16          # ...from this many distinct NIRs (`in_list`)


def fingerprints(hasher: MemberHasher, nirs: Collection[str]) -> np.ndarray:
    """One uint64 per normalized NIR, in order (ValueError as `MemberHasher.blocks`)."""
    return keys_of(hasher.blocks(nirs))


def keys_of(blocks: bytes) -> np.ndarray:
    """The fingerprints of AES blocks, in order: the first 8 bytes of each, big-endian."""
    return np.frombuffer(blocks, ">u8")[::2].astype(np.uint64)


def distinct(parts: list[np.ndarray]) -> np.ndarray:
    """The sorted, distinct fingerprints of `parts` (emptied), sorted in place: a 20M list
    costs its array and a mask, not np.unique's copies."""
    merged = np.concatenate(parts) if parts else np.empty(0, np.uint64)
    parts.clear()
    merged.sort()
    if len(merged) < 2:
        return merged
    keep = np.empty(len(merged), bool)
    keep[0] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged if keep.all() else merged[keep]


def to_blob(members: np.ndarray) -> bytes:
    """Little-endian bytes of a uint64 array (the chunks' and the flat files' order)."""
    return members.astype("<u8", copy=False).tobytes()


def from_blobs(blobs: Iterable[bytes], count: int) -> np.ndarray:
    """One uint64 array from the chunks' bytes, filled in place (no second copy)."""
    out = np.empty(count, np.uint64)
    at = 0
    for blob in blobs:
        chunk = np.frombuffer(blob, "<u8")
        out[at:at + len(chunk)] = chunk
        at += len(chunk)
    if at != count:
        raise ValueError(f"watchlist holds {at} fingerprints, its row says {count}")
    return out


# -- the look-up without the compiled helpers (`members.sorted_keys`, `members.hits`) -------------

def sorted_keys(blocks: bytes) -> bytes:
    """`_speedups.block_keys`: the sorted, distinct fingerprints of AES blocks, little-endian."""
    return to_blob(np.unique(keys_of(blocks)))


def hits(members: Members, keys: bytes) -> bytes:
    """`_speedups.sorted_hits`: the `keys` found among `members` (little-endian, sorted)."""
    queries = np.frombuffer(keys, "<u8")
    return to_blob(queries[in_list(np.frombuffer(members, "<u8"), queries)])


def in_list(members: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Which of `queries` (sorted) are in `members`: one `searchsorted`, or for a big document
    one per range of the top BUCKET_BITS bits, in the slice of the list holding those bits (a
    20M list's slice is ~20,000 values, which the cache holds: the 908,528 NIRs of the bench
    corpus in 0.045 s instead of 0.086)."""
    found = np.zeros(len(queries), bool)
    if not len(members) or not len(queries):
        return found
    if len(queries) < BUCKETED_FROM:
        at = np.minimum(np.searchsorted(members, queries), len(members) - 1)
        return np.asarray(members[at] == queries)
    starts = np.arange(1 << BUCKET_BITS, dtype=np.uint64) << np.uint64(64 - BUCKET_BITS)
    list_edges = np.append(np.searchsorted(members, starts), len(members))
    query_edges = np.append(np.searchsorted(queries, starts), len(queries))
    for bucket in np.flatnonzero((query_edges[1:] > query_edges[:-1]) & (list_edges[1:] > list_edges[:-1])):
        part = members[list_edges[bucket]:list_edges[bucket + 1]]
        low, high = query_edges[bucket], query_edges[bucket + 1]
        at = np.minimum(np.searchsorted(part, queries[low:high]), len(part) - 1)
        found[low:high] = part[at] == queries[low:high]
    return found
