"""Disk faults: one line on stderr naming the path and the problem, exit 2, never a traceback.

Real `watcher` subprocesses on a real state directory (made by a real `run --once` over a
synthetic extract), with real faults:

- read-only files and folders: modes. Root ignores modes (CAP_DAC_OVERRIDE), and these tests run
  as root here and in CI, so as root the subprocess runs without CAP_DAC_OVERRIDE and
  CAP_DAC_READ_SEARCH (dropped from its bounding set before exec: the same uid, hence the same
  interpreter and files, but modes apply as they do to the service's unprivileged user). Where
  even that is not allowed (no CAP_SETPCAP), those cases are skipped, saying so;
- a full disk: RLIMIT_FSIZE in the subprocess (unprivileged, no mount): a write past the limit
  fails with EFBIG ("File too large"); Python ignores SIGXFSZ, so nothing kills the process.
  SQLite reports it as a disk I/O error, a really full disk as "database or disk is full";
- a state directory that is a file, a database file that is not SQLite, or SQLite but not ours,
  a key file too short.

Each command gets the outcome its job implies: `check-config`, `run --once` and `run` refuse
what the daemon could not live with; `sources`, `findings` and `status` only read (mode=ro, no
migration), so they answer on a read-only or full state; `status` reports an unreadable database as
DOWN (exit 2) in its report.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.commands import REFUSING, error_line, watcher
from tests.support.daemon import child_env
from tests.support.state import WRITERS, by_command, state, works

READERS = (("sources",), ("findings",))
STATUS = (("status",),)
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
PR_CAPBSET_DROP = 24


# --------------------------------------------------------------------------- faults


def _drop_dac() -> None:
    """preexec_fn (root only): lose the capabilities that let root ignore file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _modes_bind_check(tmp: Path) -> str | None:
    """Why modes cannot be made to bind a child here, or None (they do)."""
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = subprocess.run(["sh", "-c", f"touch {locked}/x"], preexec_fn=modes_apply(),
                                capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot drop CAP_DAC_OVERRIDE for a child ({exc}): root would ignore every mode"
    finally:
        locked.chmod(0o700)
    return None if result.returncode else "a child still writes into a 0500 folder: modes cannot be tested"


def modes_apply() -> Callable[[], None] | None:
    """The preexec_fn under which file modes bind the child (None when not root: they do)."""
    return _drop_dac if os.geteuid() == 0 else None


@pytest.fixture(scope="module")
def modes(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], None] | None:
    """modes_apply(), or the module's mode cases skipped with the reason."""
    reason = _modes_bind_check(tmp_path_factory.mktemp("modes"))
    if reason:
        pytest.skip(reason)
    return modes_apply()


def file_size_limit(limit: int) -> Callable[[], None]:
    """preexec_fn: a full disk, as far as this process's writes are concerned."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limited


# --------------------------------------------------------------------------- read-only


def test_read_only_state_directory(site: Path, modes: Callable[[], None] | None) -> None:
    """Before: `run` died with a PermissionError traceback creating the key (a fresh state), or
    wherever the first write came."""
    state(site).chmod(0o500)
    try:
        results = by_command(watcher(site, *REFUSING, *READERS, *STATUS, preexec=modes))
    finally:
        state(site).chmod(0o700)
    for command in REFUSING:
        error_line(results[command], f'{site}:2: [watcher]: key "state_dir": cannot write in {state(site)}: '
                                     "Permission denied")
    for command in (*READERS, *STATUS):                # they only read
        works(results[command])
    assert "watcher: OK" in results[("status",)].out


def test_unwritable_database(site: Path, modes: Callable[[], None] | None) -> None:
    state(site, "watcher.db").chmod(0o400)
    results = by_command(watcher(site, *WRITERS, *READERS, *STATUS, preexec=modes))
    for command in WRITERS:
        error_line(results[command], f"watcher: error: {state(site, 'watcher.db')}: cannot open for writing: "
                                     "Permission denied")
    for command in (*READERS, *STATUS):                # they only read
        works(results[command])


def test_unreadable_key(site: Path, modes: Callable[[], None] | None) -> None:
    state(site, "secret.key").chmod(0o000)
    results = by_command(watcher(site, *WRITERS, *READERS, *STATUS, preexec=modes))
    for command in WRITERS:
        error_line(results[command], f"watcher: error: {state(site, 'secret.key')}: cannot read the secret key: "
                                     "Permission denied")
    for command in (*READERS, *STATUS):              # they do not need the key
        works(results[command])


def test_a_read_only_key_is_fine(site: Path, modes: Callable[[], None] | None) -> None:
    """0400 is a good mode for the key: the daemon only reads it once it exists."""
    state(site, "secret.key").chmod(0o400)
    [done] = watcher(site, ("run", "--once", "--workers", "1"), preexec=modes)
    works(done)


# --------------------------------------------------------------------------- full disk


def test_full_disk(site: Path) -> None:
    """No byte can be written: the commands that would write say so; status, which only reads
    (first: the others leave empty -wal/-shm files behind), still answers."""
    [status] = watcher(site, *STATUS, preexec=file_size_limit(0))
    works(status)
    assert "watcher: OK" in status.out
    results = by_command(watcher(site, *WRITERS, *READERS, preexec=file_size_limit(0)))
    for command in WRITERS:
        error_line(results[command], f'{site}:2: [watcher]: key "state_dir": cannot write in {state(site)}: '
                                     "File too large")
    for command in READERS:                            # they only read
        works(results[command])


def test_disk_full_while_the_database_is_created(tmp_path: Path) -> None:
    """The checks pass (a 4 KiB probe fits) but the database cannot grow: the daemon's own
    failure is one line naming the database. Before: a sqlite3 traceback, exit 1."""
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "sources.toml"
    config.write_text('[watcher]\nstate_dir = "./state"\n\n[[sources]]\nname = "inbox"\nkind = "directory"\n'
                      'path = "./inbox"\n', encoding="utf-8")
    [done] = watcher(config, ("run", "--once"), preexec=file_size_limit(20_000))
    error_line(done, f"watcher: error: {tmp_path / 'state' / 'watcher.db'}: disk I/O error")


def test_disk_full_while_the_key_is_created_leaves_no_short_key(tmp_path: Path) -> None:
    """Before: an empty secret.key stayed behind, and every later start failed on it."""
    key = tmp_path / "secret.key"
    code = ("import sys\nfrom watcher.privacy import SecretKeyError, load_or_create_secret\n"
            f"try:\n    load_or_create_secret({str(key)!r})\n"
            "except SecretKeyError as exc:\n    sys.exit(str(exc))\n")
    result = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True,
                            preexec_fn=file_size_limit(8), timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"{key}: cannot create the secret key: File too large\n"
    assert list(tmp_path.iterdir()) == []              # no key, no temporary file
    result = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and len(key.read_bytes()) == 32 and oct(key.stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------- the wrong file


def test_state_dir_is_a_file(site: Path) -> None:
    shutil.rmtree(state(site))
    state(site).write_text("not a folder")
    results = watcher(site, *REFUSING, *READERS, *STATUS)
    lines = {error_line(done, f'{site}:2: [watcher]: key "state_dir": {state(site)} is not a directory')
             for done in results}
    assert len(lines) == 1


def test_corrupt_database(site: Path) -> None:
    """Before: a sqlite3 traceback from run, sources and findings."""
    state(site, "watcher.db").write_bytes(os.urandom(8192))
    results = by_command(watcher(site, *WRITERS, *READERS, *STATUS))
    for command in WRITERS:
        error_line(results[command], f"watcher: error: {state(site, 'watcher.db')}: not an SQLite database")
    for command in READERS:
        error_line(results[command], f"watcher: error: {state(site, 'watcher.db')}: file is not a database")
    works(results[("status",)], rc=2)
    assert "state database unreadable: file is not a database" in results[("status",)].out


def test_an_sqlite_file_that_is_not_ours(site: Path) -> None:
    """Refused by the store before it writes anything (check-config reads only the header)."""
    database = state(site, "watcher.db")
    database.unlink()
    subprocess.run([sys.executable, "-c", f"import os, sqlite3; os.umask(0o077); sqlite3.connect({str(database)!r})"
                    ".execute('CREATE TABLE accounts (id)')"], check=True)   # 0600: the store keeps quiet
    results = by_command(watcher(site, ("run", "--once"), *READERS))
    for done in results.values():
        error_line(done, f"watcher: error: {database} holds tables ['accounts'] but no schema_version table")


def test_a_short_key(site: Path) -> None:
    state(site, "secret.key").write_bytes(b"abc")
    results = watcher(site, *WRITERS)
    for done in results:
        error_line(done, f"watcher: error: {state(site, 'secret.key')}: secret key is too short (3 bytes)")
