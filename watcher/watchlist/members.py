"""Member fingerprints (AES-256-CMAC under the watchlist key, first 8 bytes) and the look-up.

See the package docstring for the construction and why. Everything here works on whole
documents: a document's NIRs go through AES in one call (`MemberHasher.blocks`), and their
fingerprints are sorted and looked up in one walk through each list (`sorted_keys`, `hits`:
the compiled `_speedups.block_keys` and `sorted_hits`, numpy's `arrays` where they are not
built), never one Python call per NIR. A list is the bytes of its sorted little-endian uint64
members, mapped from its flat file: scanning imports no numpy.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import mmap
import os
import sqlite3
import struct
import sys
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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

Members = bytes | mmap.mmap     # a list: its members sorted, distinct, as little-endian uint64
# The compiled helpers read native integers, the lists are little-endian.
_COMPILED = speedups if speedups and sys.byteorder == "little" else None

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
    _k2_padded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("a watchlist key is 32 bytes")
        zero = self._encrypt(bytes(_BLOCK))
        k2 = _double(_double(int.from_bytes(zero, "big")))
        padded = bytearray(k2.to_bytes(_BLOCK, "big"))
        padded[-1] ^= 0x80                  # K2 XOR the padding byte of a 15-byte message
        object.__setattr__(self, "_k2_padded", bytes(padded))

    @classmethod
    def from_secret(cls, secret: bytes) -> MemberHasher:
        return cls(watchlist_key(secret))

    def _encrypt(self, data: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()  # noqa: S305 (CMAC's blocks)
        return encryptor.update(data) + encryptor.finalize()

    def blocks(self, nirs: Collection[str]) -> bytes:
        """The AES blocks of normalized NIRs, 16 bytes each, in order: a member's fingerprint
        is the first 8 bytes of its block read big-endian (`sorted_keys`, `arrays.keys_of`).
        A NIR is one incomplete block: CMAC pads it with 0x80 and XORs the subkey K2 before
        the single AES encryption, so a batch is one XOR and one ECB call (batches of PIECE
        NIRs: the buffers stay a few MB). ValueError if a value is not 15 ASCII characters."""
        values = iter(nirs)                 # a set is not copied to a list first
        pieces = []
        for _ in range(0, len(nirs), PIECE):
            piece = list(itertools.islice(values, PIECE))
            pieces.append(self._cmac_blocks(("\x00".join(piece) + "\x00").encode("ascii"), len(piece), 0))
        return b"".join(pieces)

    def blocks_of_lines(self, lines: str) -> bytes:
        """The AES blocks of the 15-character values of `lines`, NIRs joined by newlines (a
        slice's values: see `watcher.parallel`), split only when some value is not (the rarer
        forms, marked: the caller decides whether they count). ValueError as `blocks`."""
        data = (lines + "\n").encode("ascii")
        try:
            return self._cmac_blocks(data, len(data) // _BLOCK, ord("\n"))
        except ValueError:
            return self.blocks([v for v in lines.split("\n") if len(v) == NIR_LENGTH])

    def _cmac_blocks(self, data: bytes, count: int, separator: int) -> bytes:
        # `count` NIRs, each followed by `separator` (encoded as ASCII, which refuses anything
        # else): exactly `count` separators, each at the end of a 16-byte block, prove every
        # NIR 15 ASCII characters. The separator becomes CMAC's 0x80 padding in the XOR with
        # K2 (`_k2_padded`, its last byte XOR the separator): compiled, or on one big integer.
        pad = self._k2_padded[:-1] + bytes([self._k2_padded[-1] ^ separator])
        xored = None
        if len(data) == count * _BLOCK and _COMPILED:
            xored = _COMPILED.cmac_input(data, separator, pad)
        elif len(data) == count * _BLOCK and data.count(separator) == count \
                and data[_BLOCK - 1::_BLOCK] == bytes([separator]) * count:
            mixed = int.from_bytes(data, "little") ^ int.from_bytes(pad * count, "little")
            xored = mixed.to_bytes(len(data), "little")
        if xored is None:
            raise ValueError("a member fingerprint takes normalized 15-character NIRs")
        return self._encrypt(xored)

    def key_check(self) -> str:
        """16 hex digits that name the key without revealing it (a key check value): stored
        with each list and written in fingerprint files, so a list made under another key is
        refused instead of silently never matching."""
        mac = CMAC(algorithms.AES(self.key))
        mac.update(KEY_CHECK_TEXT)
        return mac.finalize()[:8].hex()


def sorted_keys(blocks: bytes) -> bytes:
    """The member fingerprints of AES blocks (`MemberHasher.blocks`), sorted and distinct, as
    little-endian uint64 (two NIRs share one with probability 2^-64)."""
    if _COMPILED:
        return _COMPILED.block_keys(blocks)
    from .arrays import sorted_keys as with_numpy

    return with_numpy(blocks)


def hits(members: Members, keys: bytes) -> bytes:
    """The `keys` (sorted, little-endian uint64) found among a list's `members`, in order."""
    if _COMPILED:
        return _COMPILED.sorted_hits(members, keys)
    from .arrays import hits as with_numpy

    return with_numpy(members, keys)


def signed(values: bytes) -> list[int]:
    """Little-endian uint64 fingerprints as SQLite integers (signed 64-bit, same bits)."""
    return list(struct.unpack(f"<{len(values) // 8}q", values))


@dataclass
class Watchlists:
    """The loaded watchlists of an installation: name -> sorted member fingerprints."""

    hasher: MemberHasher
    lists: dict[str, Members] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.lists)

    def match(self, nirs: Collection[str], blocks: Sequence[bytes] = ()) -> dict[str, list[int]]:
        """Per watchlist with a hit, the distinct member fingerprints (signed, see `signed`)
        among those of `nirs` (normalized NIRs) and of the AES `blocks` made already (by the
        slices of a big file: one look-up of them all here, since a list's look-up costs a
        small batch several times more per NIR than a big one)."""
        if not self.lists or not (nirs or blocks):
            return {}
        keys = sorted_keys(b"".join([self.hasher.blocks(nirs), *blocks]))
        matched: dict[str, list[int]] = {}
        for name, members in self.lists.items():
            found = hits(members, keys)
            if found:
                matched[name] = signed(found)
        return matched

    def members_among(self, nirs: Sequence[str]) -> list[str]:
        """The NIRs of `nirs` (normalized) that are members of at least one list."""
        if not nirs or not self.lists:
            return []
        blocks = self.hasher.blocks(nirs)
        keys = sorted_keys(blocks)
        found = {key for members in self.lists.values() for key in signed(hits(members, keys))}
        return [nir for at, nir in enumerate(nirs)
                if int.from_bytes(blocks[_BLOCK * at:_BLOCK * at + 8], "big", signed=True) in found]


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


def _read_members(db: sqlite3.Connection, row: WatchlistRow) -> bytes:
    data = b"".join(chunks(db, row.id))
    if len(data) != 8 * row.members:
        raise ValueError(f"watchlist holds {len(data) // 8} fingerprints, its row says {row.members}")
    return data


def mapped_members(db: sqlite3.Connection, row: WatchlistRow, folder: Path) -> Members:
    """A list's members mapped read-only from its flat file in `folder` (little-endian uint64,
    as the chunks), written once from the chunks: the analysis workers of a daemon then share
    its pages (the page cache) instead of holding a copy each, and `watcher scan` opens a 20M
    list without reading it. A list's id is new at every import, so its file never goes
    stale. Where the folder cannot be written (a read-only state directory, a full disk) the
    chunks are read into memory, as without `folder`."""
    path = folder / file_name(row)
    if not row.members:
        return b""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 8 * row.members:
                return mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
    except OSError:
        pass
    members = _read_members(db, row)
    try:
        _write_file(path, members)
    except OSError as exc:
        log.info("watchlist %s: members read into memory (cannot write %s: %s)", row.name, path,
                 exc.strerror or exc)
    return members


def _write_file(path: Path, members: bytes) -> None:
    """`members` to `path`, whole or not at all (a temporary file renamed; 0600, like the
    database: fingerprints only, but keyed ones of a member list)."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".members-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(members)
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
