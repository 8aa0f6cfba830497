"""A real state directory for the disk and key tests (tests/test_disk_faults.py,
tests/test_key_hygiene.py): `seeded`, the folder a real `run --once` over a synthetic extract
left (database, key, alerts log), `site`, a private copy of it per test (both fixtures:
tests/conftest.py registers this module as a plugin), and what to check on the commands run
against it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.commands import BASE, Done, watcher
from tests.support.daemon import drop_csv, make_nirs

# The commands that write the state. `run` refuses as `run --once` does (one code path): it runs
# in two cases of tests/test_disk_faults.py, and in tests/test_check_config.py.
WRITERS = (("check-config",), ("run", "--once"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with sources.toml, ./inbox (one synthetic extract) and the ./state a real
    `run --once` left: database, key, alerts log."""
    folder = tmp_path_factory.mktemp("seeded")
    (folder / "inbox").mkdir()
    drop_csv(folder / "inbox", "extract.csv", make_nirs(9, 12))
    config = folder / "sources.toml"
    config.write_text(BASE, encoding="utf-8")
    [done] = watcher(config, ("run", "--once", "--workers", "1"))
    assert done.rc == 0, done.err
    assert {"watcher.db", "secret.key"} <= {p.name for p in (folder / "state").iterdir()}
    return folder


@pytest.fixture
def site(seeded: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded folder; its sources.toml."""
    copy = tmp_path / "site"
    shutil.copytree(seeded, copy)
    return copy / "sources.toml"


def state(config: Path, name: str = "") -> Path:
    return config.parent / "state" / name if name else config.parent / "state"


def by_command(results: list[Done]) -> dict[tuple[str, ...], Done]:
    return {done.command: done for done in results}


def works(done: Done, rc: int = 0) -> None:
    assert done.rc == rc, (done.command, done.rc, done.err)
    assert "Traceback" not in done.err, done.err
