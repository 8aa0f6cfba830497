"""Sealed evidence: raw documents kept compressed and encrypted to the analysts' age keys.

Pastes and forum posts vanish within hours, and the DPO who notifies the CNIL (72 hours) or
legal needs what was exposed. So a document at or above `[evidence] min_severity` is kept as
fetched, but sealed: gzip-compressed, then encrypted with age (X25519, through `pyrage`) to
the public recipients of `[evidence] recipients`. The daemon's host never holds an identity:
it can write evidence and never read it back, and a stolen disk or backup reveals nothing. A
piece is a standard age file around a gzip stream, so an analyst opens it without
leak-watcher too: `age -d -i key.txt PIECE.age | gunzip > document`.

    [evidence]
    recipients      = []          age X25519 recipients ("age1..."); none: dry mode, evidence off
    min_severity    = "medium"    documents of findings from this severity up are kept (as alerts)
    max_bytes       = 50 MiB      per piece: a larger document is sealed truncated (see below)
    max_total_bytes = 5 GiB       the vault's size: past it, new pieces are refused (see below)
    evidence_days   = 90          a piece is deleted this many days after it was sealed

Two decisions, and why:

- **A document larger than `max_bytes` is sealed truncated**, its first `max_bytes` bytes, and
  its custody record says so (`truncated`, `size` of the whole, `kept_bytes`, and two digests:
  `sha256` of the document as fetched, the one the finding knows, and `kept_sha256` of what
  the piece holds, which `export` verifies). Refusing would keep nothing of precisely the big
  dumps; a head shows what categories of data leaked and for whom, which is what a CNIL
  notification needs, and archives and dumps are readable from their start (gzip and tar
  streams, zip members through their local headers, SQL and CSV lines).
- **A full vault refuses new pieces; it never deletes old ones to make room.** The first
  sealed copy of a leak is the one closest to its publication, the one legal relies on; the
  pieces after it are mostly reposts. Deleting the oldest first would let a flood of reposts
  (or a noisy source) wash the original evidence out without anyone deciding it. A refusal is
  a custody record with `status = "refused"` and a note the daemon can log and alert on;
  `evidence_days` frees room as pieces age.

The vault (`EvidenceVault`) is a folder (mode 0700) of pieces named
`<sha256 of the raw bytes>-<8 hex of the recipients and kept length>.age`: no identifier is
ever in a name, the same document sealed to the same keys is stored once (a second write
reuses the file and restarts its retention clock), and a change of keys seals anew. A piece
is written to a temporary file in the same folder, fsynced, renamed to its final name and the
folder fsynced: only final names count as evidence, so a kill -9 mid-write leaves none, and
the temporary files of dead writers are deleted when a vault is opened. The custody records
(`CustodyRecord`) belong to the state database; the vault counts and ages its files itself.

The analyst's side: `open_sealed(path, identity)` decrypts with age identities (the
`AGE-SECRET-KEY-1...` lines of an age key file) and decompresses; `export(...)` also verifies
the sha256 and writes atomically, never to a terminal.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyrage

from .options import option, option_keys, read_options
from .redact import redact
from .score import severity_rank
from .timestamps import format_time

if TYPE_CHECKING:
    from .config import Validator, Where

__all__ = [
    "CustodyRecord", "EvidenceError", "EvidenceReaders", "EvidenceSettings", "EvidenceVault", "VaultFile",
    "evidence_settings", "export", "open_sealed", "parse_identities", "parse_recipients", "seal",
]

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 50 * MIB
DEFAULT_MAX_TOTAL_BYTES = 5 * 1024 * MIB
MAX_MAX_BYTES = 1024 * MIB          # as a source's max_bytes: no document is larger
DEFAULT_EVIDENCE_DAYS = 90          # as [retention] items_days: long past a 72-hour notification
GZIP_LEVEL = 6                      # zlib's default: most of level 9's ratio at a third of its time
SUFFIX = ".age"
VAULT_DIR = "evidence"              # in state_dir: the daemon's vault
TEMP_PREFIX = ".partial-"           # .partial-<writer pid>-<random>: never a final name
_PIECE_NAME = re.compile(r"[0-9a-f]{64}-[0-9a-f]{8}\.age")
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[0-9a-f]+")
_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


class EvidenceError(Exception):
    """A piece that cannot be sealed, opened or exported; the message says why, never a key."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EvidenceSettings:
    """The `[evidence]` table, validated (see the module docstring)."""

    recipients: tuple[str, ...] = option("age_recipients", (), doc='age X25519 recipients ("age1..."); '
                                         "none: dry mode, no evidence kept")
    min_severity: str = option("severity", "medium", doc="documents of findings from this severity up are kept")
    max_bytes: int = option("integer", DEFAULT_MAX_BYTES, maximum=MAX_MAX_BYTES,
                            why=" (1 GiB, the largest document a source fetches)",
                            doc="bytes of one document sealed; a larger one is sealed truncated")
    max_total_bytes: int = option("integer", DEFAULT_MAX_TOTAL_BYTES,
                                  doc="bytes of the whole vault; past it new pieces are refused, old ones kept")
    evidence_days: int = option("integer", DEFAULT_EVIDENCE_DAYS, doc="days a piece is kept after it was sealed")

    def __post_init__(self) -> None:
        if self.max_total_bytes < self.max_bytes:
            raise ValueError(f"max_total_bytes must be at least max_bytes ({self.max_bytes}), "
                             f"not {self.max_total_bytes}")

    @property
    def enabled(self) -> bool:
        """False in dry mode (no recipients): nothing is kept but the sha256 the store has anyway."""
        return bool(self.recipients)

    def keeps(self, severity: str) -> bool:
        """Whether the document of a finding of `severity` is sealed."""
        return self.enabled and severity_rank(severity) >= severity_rank(self.min_severity)

    def notice(self) -> str:
        """One line for the daemon's start (said once): what is kept, or that evidence is off."""
        if not self.enabled:
            return ("evidence: off (dry mode: no [evidence] recipients), documents are not kept, "
                    "only their sha256")
        count = len(self.recipients)
        return (f"evidence: documents from {self.min_severity} up are sealed to {count} "
                f"recipient{'s' if count != 1 else ''}, at most {_size(self.max_bytes)} a piece, "
                f"{_size(self.max_total_bytes)} in all, kept {self.evidence_days} days")


class EvidenceReaders:
    """The configuration validator's reader of `recipients` (mix it into `config.Validator`,
    or let `evidence_settings` wrap a validator that lacks it)."""

    def fail(self, where: Where, key: str | None, message: str) -> Exception:
        raise NotImplementedError

    def read_age_recipients(self, where: Where, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """A list of age X25519 recipients ("age1..."), each parsed by age, duplicates dropped. A
        typo is refused at load, not found when the first leak is to be sealed; an identity
        (a secret key) put here by mistake is refused without being echoed."""
        raw = data[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail(where, key, 'must be a list of age recipients like ["age1..."]')
        try:
            return parse_recipients(raw)
        except EvidenceError as exc:
            raise self.fail(where, key, str(exc)) from None


class _WithEvidenceReaders(EvidenceReaders):
    """A validator seen with `EvidenceReaders` added (every other attribute is the validator's)."""

    def __init__(self, validator: Validator) -> None:
        self._validator = validator

    def __getattr__(self, name: str) -> Any:
        return getattr(self._validator, name)

    def fail(self, where: Where, key: str | None, message: str) -> Exception:
        return self._validator.fail(where, key, message)


def evidence_settings(validator: Validator, value: object) -> EvidenceSettings:
    """`[evidence]` (`value`: the raw table, None when absent: dry mode) read by the
    configuration's validator, errors in its `file:line: [evidence]: key "k" ...` form."""
    from .config import Where

    if value is None:
        return EvidenceSettings()
    where = Where("evidence", None, "[evidence]")
    data = validator.table(where, value)
    reader = validator if hasattr(validator, "read_age_recipients") else _WithEvidenceReaders(validator)
    required, optional = option_keys(EvidenceSettings)
    validator.check_keys(where, data, required + optional)
    return read_options(EvidenceSettings, reader, where, data)


def parse_recipients(values: Iterable[object]) -> tuple[str, ...]:
    """Age X25519 recipient strings, checked by age, in order, duplicates dropped."""
    recipients: list[str] = []
    for number, value in enumerate(values, 1):
        if not isinstance(value, str):
            raise EvidenceError(f'entry {number} must be a string ("age1...")')
        text = value.strip()
        if text.upper().startswith(_IDENTITY_PREFIX):
            raise EvidenceError(f"entry {number} is an age identity, a secret key: put its public "
                                "recipient (age1..., `age-keygen -y key.txt`) here, and keep the "
                                "identity off this host")
        if not _RECIPIENT.fullmatch(text):
            raise EvidenceError(f'entry {number} is not an age X25519 recipient ("age1" and 58 '
                                f"characters), not {text[:12]!r}...")
        try:
            pyrage.x25519.Recipient.from_str(text)
        except pyrage.RecipientError as exc:
            raise EvidenceError(f"entry {number} is not a valid age recipient ({exc})") from None
        if text not in recipients:
            recipients.append(text)
    return tuple(recipients)


def _size(count: int) -> str:
    """50 MiB, 5 GiB, 300 B (for messages)."""
    for unit, scale in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


# --------------------------------------------------------------------------- sealing


def seal(raw: bytes, recipients: Sequence[str]) -> bytes:
    """`raw` gzip-compressed (no name, mtime 0: nothing about the host) then age-encrypted to
    `recipients`; only their identities open it."""
    if not recipients:
        raise EvidenceError("no recipients: a piece sealed to nobody could never be opened")
    try:
        keys = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    except pyrage.RecipientError as exc:
        raise EvidenceError(f"a recipient is not a valid age X25519 recipient ({exc})") from None
    return pyrage.encrypt(_gzip(raw), keys)


def _gzip(raw: bytes) -> bytes:
    """`raw` as one gzip member (mtime 0, no name), compressed a MiB at a time: zlib lets
    other threads run while it deflates, but `gzip.compress` on a whole 50 MB document holds
    the interpreter's lock for the copies of its output (the daemon's event loop stalled up to
    160 ms, measured; a MiB at a time: under 10 ms)."""
    deflater = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    view = memoryview(raw)
    parts = [deflater.compress(view[start:start + MIB]) for start in range(0, len(raw), MIB)]
    parts.append(deflater.flush())
    return b"".join(parts)


def parse_identities(identity_text: str) -> list[pyrage.x25519.Identity]:
    """The `AGE-SECRET-KEY-1...` lines of an age key file (comments and blank lines skipped)."""
    identities = []
    for number, line in enumerate(identity_text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith(_IDENTITY_PREFIX):
            raise EvidenceError(f"identity line {number} is not an AGE-SECRET-KEY-1... line "
                                "(only X25519 identities, as age-keygen writes them, are read)")
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise EvidenceError(f"identity line {number} is not a valid age identity") from None
    if not identities:
        raise EvidenceError("the identity holds no AGE-SECRET-KEY-1... line")
    return identities


def open_sealed(path: str | os.PathLike[str], identity_text: str, limit: int = MAX_MAX_BYTES) -> bytes:
    """The raw bytes of the piece at `path`, decrypted with the identities of `identity_text`
    and decompressed (at most `limit` bytes: a piece holds no more than max_bytes)."""
    name = Path(path).name
    identities = parse_identities(identity_text)
    try:
        sealed = Path(path).read_bytes()
    except OSError as exc:
        raise EvidenceError(f"cannot read {name}: {exc.strerror}") from None
    try:
        compressed = pyrage.decrypt(sealed, identities)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise EvidenceError(f"{name} was not sealed to this identity: none of its keys is among "
                                "the piece's recipients") from None
        raise EvidenceError(f"{name} is not a readable age file (damaged or not a piece): {exc}") from None
    return _gunzip(compressed, limit, name)


def _gunzip(data: bytes, limit: int, name: str) -> bytes:
    """One gzip member, at most `limit` bytes once decompressed."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise EvidenceError(f"{name} decrypts, but its content is not gzip ({exc})") from None
    if len(raw) > limit:
        raise EvidenceError(f"{name} holds more than {limit} bytes: not a piece this vault sealed")
    if not inflater.eof:
        raise EvidenceError(f"{name} decrypts, but its gzip stream is cut short")
    return raw


# --------------------------------------------------------------------------- custody


@dataclass(frozen=True)
class CustodyRecord:
    """What supports one piece in court or in a CNIL notification: where the document came
    from and when, its digests and sizes, the finding and incident it supports, who can open
    it. `status`: "sealed" (a new file), "reused" (the same document, already sealed to the
    same keys: `file_name` is that file), "refused" (vault full: no file; `note` says so)."""

    piece_id: str
    status: str
    sha256: str                 # of the document as fetched (the finding's)
    size: int                   # of the document as fetched
    kept_sha256: str            # of the bytes sealed: sha256 unless truncated (export verifies this one)
    kept_bytes: int
    truncated: bool
    fetched_at: str
    sealed_at: str
    source: str
    url: str                    # masked (watcher.redact)
    tor: bool
    finding_id: int | str | None
    incident_id: int | str | None
    recipients: tuple[str, ...]
    file_name: str | None = None
    sealed_size: int | None = None
    file_sha256: str | None = None  # of the sealed file: checked without any key (`EvidenceVault.verify`)
    note: str = ""

    @property
    def kept(self) -> bool:
        """Whether a sealed file holds this piece."""
        return self.file_name is not None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (recipients as a list)."""
        record = asdict(self)
        record["recipients"] = list(self.recipients)
        return record


@dataclass(frozen=True)
class VaultFile:
    """A piece on disk: its final name, size and when it was sealed (its mtime)."""

    name: str
    size: int
    sealed_at: float


class EvidenceVault:
    """A folder of sealed pieces (see the module docstring). `recipients` may be empty for a
    vault only listed, verified or aged; `write` then refuses. `chunk_size` and `on_chunk`
    (called with bytes written and total after each chunk) are how a test stops a write
    half-way."""

    def __init__(self, folder: str | os.PathLike[str], recipients: Sequence[str] = (), *,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 chunk_size: int = MIB, on_chunk: Callable[[int, int], None] | None = None) -> None:
        self.folder = Path(folder)
        self.recipients = parse_recipients(recipients)
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self.chunk_size = chunk_size
        self.on_chunk = on_chunk
        self._lock = threading.Lock()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.cleaned = self._clean_partials()

    @classmethod
    def from_settings(cls, folder: str | os.PathLike[str], settings: EvidenceSettings) -> EvidenceVault:
        """The vault `[evidence]` describes."""
        return cls(folder, settings.recipients, max_bytes=settings.max_bytes,
                   max_total_bytes=settings.max_total_bytes)

    # -- what is there -----------------------------------------------------------------------

    def pieces(self) -> list[VaultFile]:
        """The pieces (final names only), oldest first."""
        found = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if _PIECE_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    found.append(VaultFile(entry.name, info.st_size, info.st_mtime))
        return sorted(found, key=lambda piece: (piece.sealed_at, piece.name))

    def total_bytes(self) -> int:
        """Bytes the pieces take (temporary files do not count)."""
        return sum(piece.size for piece in self.pieces())

    def path(self, name: str) -> Path:
        """The path of the piece `name` (a final name, nothing else: no path escapes the folder)."""
        if not _PIECE_NAME.fullmatch(name):
            raise EvidenceError(f"{name!r} is not the name of a piece")
        return self.folder / name

    def verify(self, record: CustodyRecord) -> bool:
        """Whether the record's file is there and unchanged (its sha256; no key needed)."""
        if record.file_name is None or record.file_sha256 is None:
            return False
        try:
            return _file_sha256(self.path(record.file_name)) == record.file_sha256
        except FileNotFoundError:
            return False

    # -- writing -----------------------------------------------------------------------------

    def write(self, piece_id: str, raw: bytes, *, source: str, url: str, fetched_at: str, tor: bool = False,
              finding_id: int | str | None = None, incident_id: int | str | None = None,
              now: float | None = None, whole: tuple[int, str] | None = None) -> CustodyRecord:
        """Seal `raw` (the document as fetched) and return its custody record: "sealed",
        "reused" (already there) or "refused" (the vault is full). EvidenceError in dry mode.
        `whole`: (size, sha256) of the document when `raw` is only its head (a big file read
        up to max_bytes, hashed whole as it was read), so the record names the document."""
        if not self.recipients:
            raise EvidenceError("evidence is off (dry mode): no recipients to seal to")
        now = time.time() if now is None else now
        kept = raw[:self.max_bytes]
        size, sha256 = whole if whole is not None else (len(raw), hashlib.sha256(raw).hexdigest())
        truncated = len(kept) < size
        kept_sha256 = hashlib.sha256(kept).hexdigest() if truncated else sha256
        record = CustodyRecord(
            piece_id=piece_id, status="refused", sha256=sha256, size=size, kept_sha256=kept_sha256,
            kept_bytes=len(kept), truncated=truncated, fetched_at=fetched_at,
            sealed_at=format_time(datetime.fromtimestamp(now, UTC)), source=source, url=redact(url), tor=tor,
            finding_id=finding_id, incident_id=incident_id, recipients=self.recipients,
            note=f"truncated: the first {len(kept)} of {size} bytes are sealed (max_bytes)" if truncated else "",
        )
        name = f"{sha256}-{self._tag(len(kept))}{SUFFIX}"
        with self._lock:
            return self._write_locked(name, kept, now, record)

    def _write_locked(self, name: str, kept: bytes, now: float, record: CustodyRecord) -> CustodyRecord:
        """`record` (refused, until proven otherwise) completed by sealing `kept` as `name`."""
        path = self.folder / name
        if path.exists():
            os.utime(path, (now, now))   # its retention clock restarts: a repost still needs it
            return replace(record, status="reused", file_name=name, sealed_size=path.stat().st_size,
                           file_sha256=_file_sha256(path), note=_join(record.note, "already sealed"))
        total = self.total_bytes()
        if total < self.max_total_bytes:
            sealed = seal(kept, self.recipients)
            if total + len(sealed) <= self.max_total_bytes:
                self._write_atomic(path, sealed, now)
                return replace(record, status="sealed", file_name=name, sealed_size=len(sealed),
                               file_sha256=hashlib.sha256(sealed).hexdigest())
        full = (f"not sealed: the vault is full ({_size(total)} of max_total_bytes {_size(self.max_total_bytes)}); "
                "the first copies are kept, none deleted to make room (raise max_total_bytes or lower "
                "evidence_days)")
        return replace(record, note=_join(record.note, full))

    def _tag(self, kept_bytes: int) -> str:
        """8 hex digits naming the recipients and the kept length: the same name means the same
        bytes sealed to the same keys."""
        text = "\n".join(sorted(self.recipients)) + f"\n{kept_bytes}"
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def _write_atomic(self, path: Path, sealed: bytes, now: float) -> None:
        """Temporary file, fsync, rename, fsync of the folder: the final name appears whole or not at all."""
        partial = self.folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        try:
            _write_fd(partial, sealed, self.chunk_size, self.on_chunk)
            os.utime(partial, (now, now))
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(self.folder)

    # -- deleting ----------------------------------------------------------------------------

    def delete(self, name: str) -> bool:
        """Delete the piece `name`; False when it was not there."""
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.folder)
        return True

    def expire(self, days: int, now: float | None = None) -> list[str]:
        """Delete the pieces sealed (or last reused) more than `days` days ago; their names."""
        cutoff = (time.time() if now is None else now) - days * 86400
        gone = [piece.name for piece in self.pieces() if piece.sealed_at < cutoff]
        for name in gone:
            (self.folder / name).unlink(missing_ok=True)
        if gone:
            _fsync_dir(self.folder)
        return gone

    def _clean_partials(self) -> list[str]:
        """Delete the temporary files of writers that are gone (a kill -9 mid-write); those of
        a live process (the daemon writing while `watcher evidence list` opens the vault) stay."""
        cleaned = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                match = _TEMP_NAME.fullmatch(entry.name)
                if match and not _alive(int(match[1])):
                    Path(entry.path).unlink(missing_ok=True)
                    cleaned.append(entry.name)
        return cleaned


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists (this one included)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_fd(path: Path, data: bytes, chunk_size: int,
              on_chunk: Callable[[int, int], None] | None = None, overwrite: bool = False) -> None:
    """`data` into a new file (mode 0600), in chunks, fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        written = 0
        while written < len(data):
            written += os.write(fd, view[written:written + chunk_size])
            if on_chunk is not None:
                on_chunk(written, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- export


def export(path: str | os.PathLike[str], identity_text: str, expected_sha256: str, out: str | os.PathLike[str],
           *, stdout: BinaryIO | None = None, overwrite: bool = False) -> int:
    """Open the piece at `path` on the analyst's machine, check its sha256 against the custody
    record's `kept_sha256`, and write it to `out` ("-": `stdout`, sys.stdout's by default);
    the bytes written. Never to a terminal (a leaked document's identifiers would stay in a
    scrollback, a tmux log, a screen share): `out` a tty, /dev/tty, or "-" on a tty is refused
    before anything is decrypted. A file is written atomically (mode 0600) and not over an
    existing one unless `overwrite`; a pipe or another non-terminal device is written as is."""
    target = _Target.of(out, stdout, overwrite)
    try:
        raw = open_sealed(path, identity_text)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != expected_sha256.strip().lower():
            raise EvidenceError(f"sha256 mismatch: {Path(path).name} holds {digest}, the custody record "
                                f"says {expected_sha256.strip().lower()}: nothing written")
        target.write(raw)
    finally:
        target.close()
    return len(raw)


class _Target:
    """Where `export` writes: a stream (stdout, a pipe, a device) or a file written atomically."""

    def __init__(self, stream: BinaryIO | None = None, fd: int | None = None, file: Path | None = None,
                 overwrite: bool = False) -> None:
        self.stream, self.fd, self.file, self.overwrite = stream, fd, file, overwrite

    @classmethod
    def of(cls, out: str | os.PathLike[str], stdout: BinaryIO | None, overwrite: bool) -> _Target:
        """The target of `out`; EvidenceError for a terminal or an existing file (no overwrite)."""
        if os.fspath(out) == "-":
            stream = stdout if stdout is not None else sys.stdout.buffer
            if stream.isatty():
                raise _terminal("standard output")
            return cls(stream=stream)
        file = Path(out)
        if os.path.realpath(file) == "/dev/tty":
            raise _terminal(str(file))
        try:
            mode = os.stat(file).st_mode
        except FileNotFoundError:
            return cls(file=file, overwrite=overwrite)
        if stat.S_ISREG(mode):
            if not overwrite:
                raise EvidenceError(f"{file} exists: not overwritten (remove it, or choose another --out)")
            return cls(file=file, overwrite=True)
        fd = os.open(file, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        if os.isatty(fd):
            os.close(fd)
            raise _terminal(str(file))
        return cls(fd=fd)

    def write(self, raw: bytes) -> None:
        if self.stream is not None:
            self.stream.write(raw)
            self.stream.flush()
        elif self.fd is not None:
            view = memoryview(raw)
            written = 0
            while written < len(raw):
                written += os.write(self.fd, view[written:])
        else:
            assert self.file is not None
            _write_file_atomic(self.file, raw, self.overwrite)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _terminal(what: str) -> EvidenceError:
    return EvidenceError(f"refusing to write a piece to a terminal ({what}): its identifiers would stay "
                         "in a scrollback or a screen share; give --out FILE or pipe it")


def _write_file_atomic(file: Path, raw: bytes, overwrite: bool) -> None:
    """`raw` to `file` through a temporary file in its folder, fsynced, then renamed (over an
    existing file only when `overwrite`)."""
    folder = file.parent if str(file.parent) else Path(".")
    partial = folder / f".{file.name}{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        _write_fd(partial, raw, MIB)
        if overwrite:
            os.replace(partial, file)
        else:
            try:
                os.link(partial, file)      # fails if `file` appeared meanwhile: never clobbered
            except FileExistsError:
                raise EvidenceError(f"{file} exists: not overwritten") from None
    finally:
        partial.unlink(missing_ok=True)
    _fsync_dir(folder)
