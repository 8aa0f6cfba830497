"""Secret values in sources.toml: `env:NAME`, `file:PATH` or `cred:NAME`, resolved without echo.

A header value or an apprise URL is often a credential. Rather than writing it in the file, the
operator names where it lives:

    env:NAME    the environment variable NAME. Under systemd, an `Environment=` value can be
                read by any local user with `systemctl show`: prefer the two below;
    file:PATH   the content of the file PATH (relative to the configuration file's folder),
                its trailing line break stripped;
    cred:NAME   the file $CREDENTIALS_DIRECTORY/NAME, where systemd puts what the unit's
                `LoadCredential=NAME:/path` names (readable by the service only).

A value must be one line of UTF-8 text, at most MAX_SECRET_BYTES. `SecretError` messages name
the reference (variable, file, credential) and what is wrong, never the value: callers put them
after the file, line and key, as every configuration error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_SECRET_BYTES", "PREFIXES", "SecretError", "SecretMissing", "SecretSource", "is_reference"]

PREFIXES = ("env:", "file:", "cred:")
MAX_SECRET_BYTES = 64 * 1024        # a header or a URL; more is a wrong file (a log, /dev/zero)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CRED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")     # a file name in one folder: no "/"


class SecretError(ValueError):
    """A reference that cannot be resolved; `str()` is a phrase like "reads file /x, which
    does not exist", never the secret."""


class SecretMissing(SecretError):
    """The reference is well formed but its variable, file or credential is not there (a
    disabled source may leave it so)."""


def is_reference(value: str) -> bool:
    """Whether `value` names a secret rather than being the value itself."""
    return value.startswith(PREFIXES)


@dataclass(frozen=True)
class SecretSource:
    """Where references are resolved: the environment, and the configuration's folder."""

    environ: Mapping[str, str]
    base: Path

    def resolve(self, reference: str) -> str:
        """The secret `reference` names (one line, trailing line break stripped)."""
        kind, _, name = reference.partition(":")
        if kind == "env":
            return self._env(name)
        if kind == "file":
            if not name.strip():
                raise SecretError('"file:" must be followed by a path')
            path = self.base / Path(name).expanduser()
            return _read(path, f"reads file {path}")
        if kind == "cred":
            return self._credential(name)
        raise SecretError(f'must start with one of {", ".join(PREFIXES)}')

    def _env(self, name: str) -> str:
        if not _ENV_NAME.fullmatch(name):
            raise SecretError(f'"env:" must be followed by a variable name, not {name!r}')
        if name not in self.environ:
            raise SecretMissing(f"reads environment variable {name}, which is not set")
        return _one_line(self.environ[name], f"reads environment variable {name}")

    def _credential(self, name: str) -> str:
        if not _CRED_NAME.fullmatch(name):
            raise SecretError(f'"cred:" must be followed by a credential name (a file name), not {name!r}')
        directory = self.environ.get("CREDENTIALS_DIRECTORY", "")
        if not directory:
            raise SecretMissing(f"reads credential {name}, but $CREDENTIALS_DIRECTORY is not set (run "
                                f"under systemd with LoadCredential={name}:/path/to/file)")
        path = Path(directory) / name
        return _read(path, f"reads credential {name} ({path})")


def _read(path: Path, what: str) -> str:
    """The one-line content of `path`; SecretMissing when it is not there."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise SecretMissing(f"{what}, which does not exist") from None
    except OSError as exc:
        raise SecretError(f"{what}, which cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretError(f"{what}, which is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{what}, which is not UTF-8 text") from None
    return _one_line(text.rstrip("\r\n"), what)


def _one_line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise SecretError(f"{what}, which contains a line break")
    if not value.strip():
        raise SecretMissing(f"{what}, which is empty")
    return value
