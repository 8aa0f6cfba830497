"""The compiled-pattern cache: reused when the patterns are the same, never trusted blindly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from watcher.detect.base import Pattern
from watcher.detect.engine import compile_database, default_cache_dir

PATTERNS = [Pattern(rb"viamedis"), Pattern(rb"[0-9]{3}-x", caseless=False)]


def _ends(database, data: bytes) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    database.scan(data, match_event_handler=lambda i, s, e, f, c: found.append((i, e)))
    return found


def test_second_compilation_loads_the_cached_database(tmp_path: Path):
    first = compile_database(PATTERNS, tmp_path / "cache")
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    tmp_path = tmp_path / "cache"
    [path] = list(tmp_path.glob("hs-*.db"))
    mtime = path.stat().st_mtime_ns
    second = compile_database(PATTERNS, tmp_path)
    assert list(tmp_path.glob("hs-*.db")) == [path] and path.stat().st_mtime_ns >= mtime
    data = b"x VIAMEDIS 123-x"
    assert _ends(second, data) == _ends(first, data) == [(0, 10), (1, 16)]


def test_other_patterns_get_another_file(tmp_path: Path):
    compile_database(PATTERNS, tmp_path)
    compile_database(PATTERNS[:1], tmp_path)
    compile_database([Pattern(PATTERNS[0].expr, caseless=False)], tmp_path)      # flags count
    assert len(list(tmp_path.glob("hs-*.db"))) == 3


def test_a_damaged_cache_file_is_recompiled_and_replaced(tmp_path: Path, caplog):
    compile_database(PATTERNS, tmp_path)
    [path] = list(tmp_path.glob("hs-*.db"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    database = compile_database(PATTERNS, tmp_path)
    assert _ends(database, b"viamedis") == [(0, 8)]
    assert "unusable" in caplog.text
    assert compile_database(PATTERNS, tmp_path) is not None and "unusable" in caplog.text
    caplog.clear()
    compile_database(PATTERNS, tmp_path)
    assert "unusable" not in caplog.text                 # the rewritten file loads


def test_an_unwritable_cache_directory_only_costs_a_compilation(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    database = compile_database(PATTERNS, blocker / "cache")
    assert _ends(database, b"viamedis") == [(0, 8)]


@pytest.mark.parametrize("env, expected", [
    ({"WATCHER_CACHE_DIR": "/x/y"}, Path("/x/y")),
    ({"WATCHER_CACHE_DIR": ""}, None),
    ({"CACHE_DIRECTORY": "/var/cache/watcher"}, Path("/var/cache/watcher")),
    ({"XDG_CACHE_HOME": "/home/a/.cache"}, Path("/home/a/.cache/leak-watcher")),
])
def test_default_cache_dir(monkeypatch, env, expected):
    for name in ("WATCHER_CACHE_DIR", "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_cache_dir() == expected


def test_a_cache_directory_others_can_write_to_is_not_read(tmp_path: Path, caplog):
    compile_database(PATTERNS, tmp_path)
    tmp_path.chmod(0o777)
    database = compile_database(PATTERNS, tmp_path)
    assert _ends(database, b"viamedis") == [(0, 8)]
    assert "ignored" in caplog.text
