"""The console's analysts: passwords, server-side sessions, CSRF tokens, the login rate limit.

- A password is kept as `scrypt$N$r$p$<salt hex>$<hash hex>` (hashlib.scrypt, 16 random bytes
  of salt per user, N=2^15, r=8, p=1: ~70 ms and 32 MiB a check, the parameters kept with the
  hash so they can grow). scrypt is in the standard library (OpenSSL): no new dependency for
  a memory-hard hash. Verified with `hmac.compare_digest`; an unknown user costs the same
  scrypt as a known one (`DUMMY_HASH`), so timing does not tell who exists.
- A session is a random 32-byte id in the cookie; the database keeps only its sha256
  (`web_sessions.id_hash`), with the user, a per-session CSRF token, the client address and
  its expiry. Signing out or deleting the user deletes the row.
- `LoginLimiter` counts failed sign-ins per user name and per client address in a sliding
  window (in memory: a restart forgets them, and the window is minutes).

Every function that touches the database takes the `StateDB` first, like `watcher.alerts.records`,
so the daemon runs it on its store thread (`Store.call`) and the CLI on its own connection.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from ..timestamps import format_time, parse_time

if TYPE_CHECKING:
    from ..store import StateDB

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
MIN_PASSWORD = 10                 # characters
MAX_PASSWORD = 1024               # a longer one is refused before hashing (no hashing a megabyte)
SESSION_BYTES = 32
SEEN_EVERY = 60.0                 # seconds between two updates of a session's seen_at
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class AuthError(ValueError):
    """A user command that cannot apply (bad name, short password, no such user): says why."""


# --------------------------------------------------------------------------- passwords


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)


def hash_password(password: str) -> str:
    """The stored form of `password` (a fresh salt each time)."""
    check_password(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * SALT_BYTES}${'00' * 32}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches `stored` (None, an unknown user: checked against DUMMY_HASH,
    same cost, always False)."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        scheme, n, r, p, salt, digest = (stored or DUMMY_HASH).split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed, bytes.fromhex(digest)) and stored is not None


def check_password(password: str) -> None:
    """AuthError unless `password` is usable (length; no control character)."""
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"the password must have at most {MAX_PASSWORD} characters")
    if any(not c.isprintable() for c in password):
        raise AuthError("the password must not hold control characters")


def check_name(name: str) -> str:
    """`name` if it is a valid user name (1-64 letters, digits, '.', '_', '@', '-'), else AuthError."""
    if not _NAME_RE.fullmatch(name):
        raise AuthError(f"a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter "
                        f"or digit, not {name!r}")
    return name


# --------------------------------------------------------------------------- users


def add_user(state: StateDB, name: str, password_hash: str, *, replace: bool = False) -> bool:
    """Store a user (`password_hash` from hash_password); False if the name exists and not
    `replace`. Replacing a password ends the user's sessions."""
    check_name(name)
    now = state.now()
    with state.transaction():
        exists = state.db.execute("SELECT 1 FROM web_users WHERE name = ?", (name,)).fetchone() is not None
        if exists and not replace:
            return False
        if exists:
            state.db.execute("UPDATE web_users SET password = ?, changed_at = ? WHERE name = ?",
                             (password_hash, now, name))
            state.db.execute("DELETE FROM web_sessions WHERE user = ?", (name,))
        else:
            state.db.execute("INSERT INTO web_users (name, password, created_at, changed_at) VALUES (?, ?, ?, ?)",
                             (name, password_hash, now, now))
    return True


def delete_user(state: StateDB, name: str) -> bool:
    """Delete a user and their sessions; False if there was none."""
    with state.transaction():
        return state.db.execute("DELETE FROM web_users WHERE name = ?", (name,)).rowcount > 0


def user_names(state: StateDB) -> list[tuple[str, str]]:
    """(name, created_at) of every user, by name."""
    return [(str(n), str(c)) for n, c in state.db.execute("SELECT name, created_at FROM web_users ORDER BY name")]


def password_hash(state: StateDB, name: str) -> str | None:
    """The stored hash of `name`, None for an unknown user."""
    row = state.db.execute("SELECT password FROM web_users WHERE name = ?", (name,)).fetchone()
    return str(row[0]) if row else None


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its user, its CSRF token, when it ends. `token` (the cookie's value)
    is known only right after `open_session`, never read back from the database."""

    user: str
    csrf: str
    expires_at: str
    seen_at: str
    id_hash: str
    token: str = field(default="", repr=False)


def token_hash(token: str) -> str:
    """What the database keeps of a session id."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def open_session(state: StateDB, user: str, address: str | None, lifetime: float) -> Session:
    """A new session of `user` for `lifetime` seconds; expired sessions are purged on the way."""
    token = secrets.token_urlsafe(SESSION_BYTES)
    csrf = secrets.token_urlsafe(SESSION_BYTES)
    now = state.now()
    expires = format_time(parse_time(now) + timedelta(seconds=lifetime))
    digest = token_hash(token)
    with state.transaction():
        state.db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
        state.db.execute(
            "INSERT INTO web_sessions (id_hash, user, csrf, address, created_at, seen_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (digest, user, csrf, address, now, now, expires))
    return Session(user, csrf, expires, now, digest, token)


def find_session(state: StateDB, token: str, now: str) -> Session | None:
    """The live session whose cookie is `token`, or None (unknown, expired, or its user deleted)."""
    if not token or len(token) > 128:
        return None
    row = state.db.execute(
        "SELECT user, csrf, expires_at, seen_at, id_hash FROM web_sessions WHERE id_hash = ? AND expires_at > ?",
        (token_hash(token), now)).fetchone()
    return Session(*map(str, row)) if row else None


def touch_session(state: StateDB, id_hash: str) -> None:
    """Record that a session was used now (`seen_at`)."""
    with state.transaction():
        state.db.execute("UPDATE web_sessions SET seen_at = ? WHERE id_hash = ?", (state.now(), id_hash))


def close_session(state: StateDB, id_hash: str) -> None:
    """Sign out: the session row is deleted (its cookie opens nothing any more)."""
    with state.transaction():
        state.db.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))


def same_token(given: str | None, expected: str) -> bool:
    """A CSRF token check in constant time (False for a missing one)."""
    return bool(given) and hmac.compare_digest(str(given).encode("utf-8", "replace"), expected.encode("utf-8"))


# --------------------------------------------------------------------------- rate limit


ADDRESS_FACTOR = 4     # an address may fail for several names (an office behind one NAT)


@dataclass
class LoginLimiter:
    """At most `attempts` failed sign-ins per user name, and `attempts * ADDRESS_FACTOR` per
    client address, in `window` seconds; a success clears the user's count (not the address's)."""

    attempts: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        limit = self.clock() - self.window
        while times and times[0] <= limit:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, user: str, address: str) -> float:
        """Seconds until a sign-in of `user` from `address` is allowed again (0: allowed now)."""
        limits = ((("user", user.lower()), self.attempts), (("address", address), self.attempts * ADDRESS_FACTOR))
        waits = [times[0] + self.window - self.clock()
                 for key, limit in limits if len(times := self._recent(key)) >= limit]
        return max(waits, default=0.0)

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        for key in (("user", user.lower()), ("address", address)):
            self._recent(key)
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, user: str) -> None:
        self._failures.pop(("user", user.lower()), None)
