"""Key hygiene: the secret key and the state directory stay private, and a lost key is never
quietly replaced while the database holds fingerprints made with it.

Real `watcher` subprocesses on a real state (the `seeded` run of tests/support/state.py: a
database with the fingerprints of 12 synthetic NIRs, its key, its alerts log). Before: any mode
passed, and a deleted key was regenerated at the next start, so the same NIRs reposted opened
a second incident.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.commands import REFUSING, error_line, watcher
from tests.support.state import WRITERS, by_command, state, works


def rows(config: Path, table: str) -> int:
    with sqlite3.connect(state(config, "watcher.db")) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_key_others_can_read_is_refused_and_left_alone(site: Path) -> None:
    key = state(site, "secret.key")
    key.chmod(0o640)
    for done in watcher(site, *REFUSING):
        error_line(done, f"watcher: error: {key}: mode 0640 lets other users read the secret key: chmod 600 it")
    assert key.stat().st_mode & 0o777 == 0o640          # refused, not fixed behind the operator's back


def test_a_state_directory_others_can_write_to_is_refused(site: Path) -> None:
    state(site).chmod(0o775)
    for done in watcher(site, *WRITERS):
        error_line(done, f'{site}:2: [watcher]: key "state_dir": {state(site)} is writable by group or others '
                         f"(mode 0775;", f"chmod go-w {state(site)}")
    state(site).chmod(0o755)                             # others may read (they cannot read the key)
    works(watcher(site, ("check-config",))[0])


def test_a_missing_key_is_not_regenerated_while_fingerprints_exist(site: Path) -> None:
    key = state(site, "secret.key")
    assert rows(site, "fingerprints") > 0
    key.unlink()
    results = by_command(watcher(site, *REFUSING))
    lines = {error_line(results[command], f"watcher: error: {key}: missing, but {state(site, 'watcher.db')} "
                        "holds fingerprints made with it", "restore it from a backup",
                        f"watcher rekey --forget --config {site}") for command in REFUSING}
    assert len(lines) == 1
    assert not key.exists()


def test_rekey_forgets_the_fingerprints_then_the_daemon_starts(site: Path) -> None:
    key = state(site, "secret.key")
    old = key.read_bytes()
    findings, incidents = rows(site, "findings"), rows(site, "incidents")
    [refused] = watcher(site, ("rekey",))                # --forget is required: it says what it costs
    assert refused.rc == 2 and "--forget" in refused.err and key.read_bytes() == old
    key.unlink()
    [done] = watcher(site, ("rekey", "--forget"))
    works(done)
    assert "made with the old one deleted" in done.out
    assert rows(site, "fingerprints") == 0
    assert (rows(site, "findings"), rows(site, "incidents")) == (findings, incidents)   # history kept
    new = key.read_bytes()
    assert len(new) == 32 and new != old and key.stat().st_mode & 0o777 == 0o600
    [run] = watcher(site, ("run", "--once", "--workers", "1"))
    works(run)
    assert key.read_bytes() == new


def test_a_missing_key_is_not_regenerated_while_a_watchlist_exists(site: Path) -> None:
    """Member watchlists are made with the key too: with no fingerprint left (after a rekey)
    but a list imported, a lost key is refused as well, or every member would stop matching."""
    import random

    from tests.support.nirs import random_nir

    works(watcher(site, ("rekey", "--forget"))[0])
    members = site.parent / "members.txt"
    rng = random.Random(17)
    members.write_text("".join(random_nir(rng) + "\n" for _ in range(5)))
    works(watcher(site, ("watchlist", "import", "acme", str(members)))[0])
    assert rows(site, "fingerprints") == 0 and rows(site, "watchlists") == 1
    key = state(site, "secret.key")
    key.unlink()
    results = by_command(watcher(site, *REFUSING, ("watchlist", "import", "other", str(members))))
    for command in (*REFUSING, ("watchlist", "import", "other", str(members))):
        error_line(results[command], f"watcher: error: {key}: missing, but {state(site, 'watcher.db')}")
    assert not key.exists()


def test_a_missing_key_with_no_fingerprints_is_created(site: Path) -> None:
    """A database that never recorded a fingerprint (nothing found yet) costs nothing to rekey."""
    with sqlite3.connect(state(site, "watcher.db")) as db:
        db.execute("DELETE FROM fingerprints")
    state(site, "secret.key").unlink()
    [done] = watcher(site, ("run", "--once", "--workers", "1"))
    works(done)
    assert state(site, "secret.key").stat().st_mode & 0o777 == 0o600


def test_the_fingerprint_check_leaves_no_file_behind(site: Path) -> None:
    """check-config reads the database of a stopped daemon without creating -wal/-shm files
    (they would belong to whoever ran the check)."""
    state(site, "secret.key").unlink()
    before = sorted(p.name for p in state(site).iterdir())
    [done] = watcher(site, ("check-config",))
    error_line(done, "holds fingerprints made with it")
    assert sorted(p.name for p in state(site).iterdir()) == before


async def test_the_daemon_itself_never_regenerates_a_lost_key(site: Path) -> None:
    """Whatever the way in (not only `watcher run`, which checks first): the daemon refuses too."""
    import pytest

    from watcher.config import load_config
    from watcher.daemon import Daemon
    from watcher.privacy import SecretKeyError

    key = state(site, "secret.key")
    key.unlink()
    with pytest.raises(SecretKeyError, match="missing, but .* holds fingerprints made with it"):
        await Daemon(load_config(site), once=True).run()
    assert not key.exists()
