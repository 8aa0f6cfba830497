"""Keep identifiers out of every output: keyed fingerprints and masks.

A fingerprint is HMAC-SHA256(secret, "kind:normalized value"), hex-encoded. The secret is
per installation, created once with mode 0600; without it a fingerprint cannot be reversed
by brute force over the (small) NIR space. Masks keep only what an analyst needs to triage.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

BULLET = "\u2022"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
PRIVATE_BITS = 0o077      # group and others: none may be set on the key file


class SecretKeyError(ValueError):
    """The installation secret cannot be read, created or used; `str()` is one line,
    `path: problem`, for the operator (never the key itself)."""


def read_secret(path: Path) -> bytes | None:
    """The installation secret at `path`, or None when there is none yet. A key that group or
    others may read (any of the 0o077 bits) is refused: see the module's docstring."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read()
            mode = os.fstat(handle.fileno()).st_mode & 0o777
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretKeyError(f"{path}: cannot read the secret key: {exc.strerror or exc}") from None
    if len(data) < MIN_SECRET_BYTES:
        raise SecretKeyError(f"{path}: secret key is too short ({len(data)} bytes); delete it to regenerate")
    if mode & PRIVATE_BITS:
        raise SecretKeyError(f"{path}: mode {mode:04o} lets other users read the secret key: chmod 600 it "
                             "(if someone may have read it: watcher rekey --forget)")
    return data


def load_or_create_secret(path: Path) -> bytes:
    """Return the installation secret at `path`, creating it (0600) on first use.

    The key is written whole to a temporary file, then linked to `path`: a full disk or a crash
    never leaves a short key behind, and two processes racing on first use never overwrite
    each other's key (the link fails for the second, which reads the first one's).
    """
    path = Path(path)
    existing = read_secret(path)
    if existing is not None:
        return existing
    data = secrets.token_bytes(SECRET_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_new(path, data)
    except FileExistsError:
        return load_or_create_secret(path)
    except OSError as exc:
        raise SecretKeyError(f"{path}: cannot create the secret key: {exc.strerror or exc}") from None
    return data


def replace_secret(path: Path) -> None:
    """Put a new secret at `path` (0600), replacing any old one atomically (`watcher rekey`).

    The caller forgets the fingerprints made with the old key first: a crash in between leaves
    the old key and no fingerprints, which is consistent."""
    path = Path(path)
    try:
        _write_new(path, secrets.token_bytes(SECRET_BYTES), replace=True)
    except OSError as exc:
        raise SecretKeyError(f"{path}: cannot write the new secret key: {exc.strerror or exc}") from None


def _write_new(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write `data` to `path` (mode 0600) atomically: a new file (FileExistsError if it
    exists), or with `replace` in place of the old one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")   # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


@dataclass(frozen=True)
class Fingerprinter:
    """Keyed, one-way fingerprints of normalized identifiers."""

    secret: bytes

    def __call__(self, kind: str, value: str) -> str:
        return hmac.digest(self.secret, f"{kind}:{value}".encode(), "sha256").hex()


def _bullets(text: str) -> str:
    return "".join(BULLET if ch.isalnum() else ch for ch in text)


def mask_nir(nir: str) -> str:
    """`184127512345678` -> `1 84 12 •• ••• ••• ••` (sex, year and month only)."""
    return f"{nir[0]} {nir[1:3]} {nir[3:5]} {_bullets('00 000 000 00')}"


def mask_digits(value: str, keep_start: int, keep_end: int = 0) -> str:
    """Keep the first `keep_start` and last `keep_end` characters; bullets elsewhere."""
    end = len(value) - keep_end
    return value[:keep_start] + _bullets(value[keep_start:end]) + value[end:]


def mask_email(email: str) -> str:
    """`jean.dupont@mutuelle.fr` -> `j•••@mutuelle.fr` (the domain helps attribute a leak)."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{BULLET * 3}@{domain}"


def mask_iban(iban: str) -> str:
    """Country and check digits, then bullets in groups of four, and the last two characters."""
    body = mask_digits(iban, 4, 2)
    return " ".join(body[i : i + 4] for i in range(0, len(body), 4))
