"""Member fingerprints (AES-256-CMAC under the watchlist key, first 8 bytes) and the lookup.

See the package docstring for the construction and why. Everything here works on whole
arrays: a document's NIRs are fingerprinted in one AES call and looked up with one
`np.searchsorted` per watchlist, never one Python call per NIR.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import os
import sqlite3
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from ..detect.compiled import speedups
from .store import MAPPED_DIR, WatchlistError, WatchlistRow, chunks, file_name, forget_files, rows

KEY_LABEL = b"leak-watcher/watchlist/1"
KEY_CHECK_TEXT = b"leak-watcher watchlist key check"
NIR_LENGTH = 15
_BLOCK = 16
_RB = 0x87                      # CMAC's constant for a 128-bit block (SP 800-38B)
_MASK = (1 << 128) - 1
PIECE = 1 << 16                 # NIRs fingerprinted per AES call
MMAP_BYTES = 1 << 30            # how much of the state database a list's reader maps

Members = np.ndarray             # sorted, distinct, dtype uint64
BUCKET_BITS = 10                 # a big document's look-ups go by the top bits of their fingerprints...
BUCKETED_FROM = 1 << 16          # ...from this many distinct NIRs (`in_list`)

log = logging.getLogger("watcher.watchlist")


def watchlist_key(secret: bytes) -> bytes:
    """K_w, the 32-byte watchlist key derived from the installation secret."""
    return hmac.digest(secret, KEY_LABEL, "sha256")


def _double(value: int) -> int:
    """Multiplication by x in GF(2^128), CMAC's subkey step."""
    return ((value << 1) & _MASK) ^ (_RB if value >> 127 else 0)


@dataclass(frozen=True)
class MemberHasher:
    """Member fingerprints under one watchlist key (`watchlist_key`)."""

    key: bytes
    _k2_padded: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("a watchlist key is 32 bytes")
        zero = self._encrypt(bytes(_BLOCK))
        k2 = _double(_double(int.from_bytes(zero, "big")))
        padded = bytearray(k2.to_bytes(_BLOCK, "big"))
        padded[-1] ^= 0x80                  # K2 XOR the padding byte of a 15-byte message
        object.__setattr__(self, "_k2_padded", np.frombuffer(bytes(padded), np.uint8))

    @classmethod
    def from_secret(cls, secret: bytes) -> MemberHasher:
        return cls(watchlist_key(secret))

    def _encrypt(self, data: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()  # noqa: S305 (CMAC's blocks)
        return encryptor.update(data) + encryptor.finalize()

    def fingerprints(self, nirs: Collection[str]) -> np.ndarray:
        """One uint64 per normalized NIR, in order. A NIR is one incomplete block: CMAC pads it
        with 0x80 and XORs the subkey K2 before the single AES encryption, so a batch is one
        XOR and one ECB call (batches of PIECE NIRs: the buffers stay a few MB). ValueError if
        a value is not 15 ASCII characters."""
        out = np.empty(len(nirs), np.uint64)
        values = iter(nirs)                 # a set is not copied to a list first (908,528 NIRs: 0.03 s)
        for at in range(0, len(nirs), PIECE):
            piece = list(itertools.islice(values, PIECE))
            out[at:at + PIECE] = self._blocks(("\x00".join(piece) + "\x00").encode("ascii"), len(piece), 0)
        return out

    def fingerprints_of_lines(self, lines: str) -> np.ndarray:
        """The fingerprints of the 15-character values of `lines`, NIRs joined by newlines (a
        slice's values: see `watcher.parallel`), split only when some value is not (the rarer
        forms, marked: the caller decides whether they count). ValueError as `fingerprints`."""
        data = (lines + "\n").encode("ascii")
        try:
            return self._blocks(data, len(data) // _BLOCK, ord("\n"))
        except ValueError:
            return self.fingerprints([v for v in lines.split("\n") if len(v) == NIR_LENGTH])

    def _blocks(self, data: bytes, count: int, separator: int) -> np.ndarray:
        # `count` NIRs, each followed by `separator` (encoded as ASCII, which refuses anything
        # else): exactly `count` separators, each at the end of a 16-byte block, prove every
        # NIR 15 ASCII characters. The separator becomes CMAC's 0x80 padding in the XOR with
        # K2 (`_k2_padded`, its last byte XOR the separator).
        blocks = np.frombuffer(data, np.uint8).reshape(-1, _BLOCK) if len(data) == count * _BLOCK else None
        if blocks is None or data.count(separator) != count or (blocks[:, -1] != separator).any():
            raise ValueError("a member fingerprint takes normalized 15-character NIRs")
        pad = self._k2_padded.copy()
        pad[-1] ^= separator
        cipher = bytearray(len(data) + _BLOCK)
        encryptor = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()  # noqa: S305 (CMAC's blocks)
        encryptor.update_into(blocks ^ pad, cipher)
        return np.frombuffer(cipher, ">u8", count=2 * count)[::2]

    def key_check(self) -> str:
        """16 hex digits that name the key without revealing it (a key check value): stored
        with each list and written in fingerprint files, so a list made under another key is
        refused instead of silently never matching."""
        mac = CMAC(algorithms.AES(self.key))
        mac.update(KEY_CHECK_TEXT)
        return mac.finalize()[:8].hex()


def distinct(parts: list[np.ndarray]) -> Members:
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


def to_blob(members: Members) -> bytes:
    """Little-endian bytes of a uint64 array (the chunks' storage order)."""
    return members.astype("<u8", copy=False).tobytes()


def from_blobs(blobs: Iterable[bytes], count: int) -> Members:
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


def signed(members: np.ndarray) -> list[int]:
    """uint64 fingerprints as SQLite integers (signed 64-bit, same bits)."""
    return members.astype(np.uint64, copy=False).view(np.int64).tolist()


@dataclass
class Watchlists:
    """The loaded watchlists of an installation: name -> sorted member fingerprints."""

    hasher: MemberHasher
    lists: dict[str, Members] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.lists)

    def match(self, nirs: Collection[str], fingerprinted: Sequence[np.ndarray] = ()) -> dict[str, list[int]]:
        """Per watchlist with a hit, the distinct member fingerprints (signed, see `signed`)
        among the fingerprints of `nirs` (normalized NIRs) and those `fingerprinted` already
        (by the slices of a big file: one look-up of them all here, since a list's look-up
        costs a small batch 2-3 times more per NIR than a big one)."""
        if not self.lists or not (nirs or fingerprinted):
            return {}
        queries = self.hasher.fingerprints(nirs) if nirs else np.empty(0, np.uint64)
        if fingerprinted:
            queries = np.concatenate([queries, *fingerprinted])
        queries.sort()
        matched: dict[str, list[int]] = {}
        for name, members in self.lists.items():
            hits = distinct([queries[in_list(members, queries)]])
            if len(hits):
                matched[name] = signed(hits)
        return matched

    def members_among(self, nirs: Sequence[str]) -> list[str]:
        """The NIRs of `nirs` (normalized) that are members of at least one list."""
        if not nirs or not self.lists:
            return []
        queries = self.hasher.fingerprints(list(nirs))
        hit = np.zeros(len(queries), bool)
        order = np.argsort(queries)
        for members in self.lists.values():
            hit[order] |= in_list(members, queries[order])
        return [nir for nir, member in zip(nirs, hit.tolist(), strict=True) if member]


def in_list(members: Members, queries: np.ndarray) -> np.ndarray:
    """Which of `queries` (sorted) are in `members`. Compiled (`_speedups.sorted_in`), one
    walk through the list galloping from query to query: the 908,528 NIRs of the bench corpus
    against 20M members in 0.021 s. Else one `searchsorted`, or for a big document one per
    range of the top BUCKET_BITS bits, in the slice of the list holding those bits (a 20M
    list's slice is ~20,000 values, which the cache holds: 0.045 s instead of 0.086)."""
    if speedups:
        native = np.ascontiguousarray(members, np.uint64).data, np.ascontiguousarray(queries, np.uint64).data
        return np.frombuffer(speedups.sorted_in(*native), bool)
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


def load_watchlists(db: sqlite3.Connection, hasher: MemberHasher,
                    mapped: Path | None = None) -> tuple[Watchlists, list[str]]:
    """The stored lists made under `hasher`'s key, and the names of those made under another
    (after `watcher rekey`: they would never match; import them again). With `mapped` (a
    folder), each list is mapped from its flat file there (`mapped_members`)."""
    check = hasher.key_check()
    loaded = Watchlists(hasher)
    other_key = []
    stored = rows(db)
    for row in stored:
        if row.key_check != check:
            other_key.append(row.name)
            continue
        loaded.lists[row.name] = mapped_members(db, row, mapped) if mapped else _read_members(db, row)
    if mapped:
        forget_files(mapped, {file_name(row) for row in stored})
    return loaded, other_key


def _read_members(db: sqlite3.Connection, row: WatchlistRow) -> Members:
    return from_blobs(chunks(db, row.id), row.members)


def mapped_members(db: sqlite3.Connection, row: WatchlistRow, folder: Path) -> Members:
    """A list's members mapped read-only from its flat file in `folder` (little-endian uint64,
    as the chunks), written once from the chunks: the analysis workers of a daemon then share
    its pages (the page cache) instead of holding a copy each, and `watcher scan` opens a 20M
    list without reading it. A list's id is new at every import, so its file never goes
    stale. Where the folder cannot be written (a read-only state directory, a full disk) the
    chunks are read into memory, as without `folder`."""
    path = folder / file_name(row)
    if not row.members:
        return np.empty(0, np.uint64)
    try:
        if path.stat().st_size == row.members * 8:
            return np.memmap(path, dtype="<u8", mode="r")
    except OSError:
        pass
    members = _read_members(db, row)
    try:
        _write_file(path, members)
    except OSError as exc:
        log.info("watchlist %s: members read into memory (cannot write %s: %s)", row.name, path,
                 exc.strerror or exc)
    return members


def _write_file(path: Path, members: Members) -> None:
    """`members` to `path`, whole or not at all (a temporary file renamed; 0600, like the
    database: fingerprints only, but keyed ones of a member list)."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".members-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            members.astype("<u8", copy=False).tofile(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def open_watchlists(db_path: Path, secret: bytes, *, beside_writer: bool = False) -> tuple[Watchlists, list[str]]:
    """`load_watchlists` from the state database at `db_path`, opened read-only (the daemon's
    workers with `beside_writer`, `watcher scan --watchlist`)."""
    from ..store.connection import connect_read_only

    db = connect_read_only(db_path, idle_snapshot=not beside_writer)
    try:
        db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")      # chunks read from the mapping: 20M in 0.05 s, not 0.1
        return load_watchlists(db, MemberHasher.from_secret(secret), db_path.parent / MAPPED_DIR)
    finally:
        db.close()


def chosen(loaded: Watchlists, other_key: list[str], names: list[str]) -> Watchlists:
    """The lists `names` of `loaded` (`watcher scan --watchlist`); WatchlistError names the
    one missing or made under another key."""

    for name in names:
        if name in other_key:
            raise WatchlistError(f"watchlist {name} was made with another key (before a rekey): import it again")
        if name not in loaded.lists:
            known = ", ".join(sorted(loaded.lists)) or "none"
            raise WatchlistError(f"no watchlist {name} (stored: {known})")
    return Watchlists(loaded.hasher, {name: loaded.lists[name] for name in names})
