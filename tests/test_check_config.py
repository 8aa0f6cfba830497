"""`watcher check-config` proves the configuration runs, and `watcher run` refuses exactly alike.

Real `watcher` subprocesses on real files. A refused configuration exits 2 with one stderr line
(file, line, key), prints nothing on stdout and creates no state. One case of each kind (a value
refused by load_config, a drop folder, the state directory, apprise) also runs `run --once` and
`run` side by side with `check-config`: the three must print the same line (they share
`cli.daemon.load(runtime=True)`; the other cases check `check-config` alone, to keep the file
fast). Before this, every case below was "ok" and `run` started.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from collections.abc import Callable

import pytest

from watcher.alerts import AlertSettings, TargetError, load_targets

from tests.support.commands import BASE, REFUSING, refused, watcher


def write(folder: Path, text: str, inbox: bool = True) -> Path:
    """sources.toml in `folder` (and its ./inbox drop folder)."""
    if inbox:
        (folder / "inbox").mkdir(exist_ok=True)
    path = folder / "sources.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --------------------------------------------------------------------------- it runs: ok

def test_a_good_configuration_is_ok_and_leaves_nothing_behind(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '\n[[rules]]\nname = "contracts"\nregex = "CTR-[0-9]{8}"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    [done] = watcher(config, ("check-config",))
    assert (done.rc, done.err) == (0, ""), done.err
    assert done.out == (f"{config}: ok: 1 enabled source of 1, 0 through Tor, 1 rule; "
                        f"state in {tmp_path / 'state'}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before      # no state, no probe file left


def test_a_fast_network_source_is_a_warning_not_an_error(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '\n[[sources]]\nname = "feed"\nkind = "feed"\n'
                              'url = "http://127.0.0.1:9/feed.xml"\ninterval = "10s"\n')
    [done] = watcher(config, ("check-config",))
    assert done.rc == 0 and ": ok: 2 enabled sources" in done.out, done.err
    line = line_of(config, '"10s"')
    assert done.err.splitlines() == [
        f'watcher: warning: {config}:{line}: source "feed": key "interval" is 10 s: a network source '
        "polled more often than every 30 s loads the site and stands out"]


def test_a_disabled_source_may_name_a_missing_folder(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '\n[[sources]]\nname = "later"\nkind = "directory"\n'
                              'path = "./not-yet"\nenabled = false\n')
    [done] = watcher(config, ("check-config",))
    assert done.rc == 0, done.err


def test_a_state_dir_to_create_under_a_writable_parent_is_ok(tmp_path: Path) -> None:
    config = write(tmp_path, BASE.replace('"./state"', '"./var/lib/watcher"'))
    [done] = watcher(config, ("check-config",))
    assert done.rc == 0, done.err
    assert not (tmp_path / "var").exists()


# --------------------------------------------------------------------------- refused, alike

def test_a_rule_hyperscan_cannot_compile(tmp_path: Path) -> None:
    """Before: "ok", then every worker died compiling it, every item failed, and --once exited 0."""
    config = write(tmp_path, BASE + '\n[[rules]]\nname = "broken"\nregex = "(abc"\n')
    refused(config, f'{config}:{line_of(config, "(abc")}: rule "broken": key "regex" is not a pattern '
                    "Hyperscan can compile: Missing close parenthesis", commands=REFUSING)


@pytest.mark.parametrize(("change", "needle", "fragment"), [
    (("interval = 10", "interval = 0.001"), "interval", 'source "inbox": key "interval" must be at least 1 s'),
    (("interval = 10", "interval = 10\nmax_bytes = 2147483648"), "max_bytes",
     'source "inbox": key "max_bytes" must be at most 1073741824'),
    (('state_dir = "./state"', 'state_dir = "./state"\ndocument_timeout = 0.1'), "document_timeout",
     '[watcher]: key "document_timeout" must be at least 1 s'),
    (('state_dir = "./state"', 'state_dir = "./state"\nitem_tries = 0'), "item_tries",
     '[watcher]: key "item_tries" must be a positive integer'),
])
def test_values_out_of_range(tmp_path: Path, change: tuple[str, str], needle: str, fragment: str) -> None:
    config = write(tmp_path, BASE.replace(*change))
    refused(config, f"{config}:{line_of(config, needle)}: {fragment}")


def test_an_apprise_url_of_an_unknown_scheme(tmp_path: Path) -> None:
    """Before: found only by `watcher test-alert`."""
    config = write(tmp_path, BASE + '\n[alerts]\nurls = ["json://127.0.0.1:9/hook", "jsn://127.0.0.1:9/hook"]\n')
    refused(config, f'{config}:{line_of(config, "urls =")}: [alerts]: key "urls" entry 2 is not a URL '
                    "apprise can use (scheme 'jsn')")


def test_an_apprise_config_file_with_an_entry_apprise_cannot_use(tmp_path: Path) -> None:
    """apprise skips such an entry with a log line only: a target silently lost. The error
    names the file and what apprise said, never the URL's credentials."""
    (tmp_path / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/hook\n"
                                    "  - jsn://soc:hunter2secret@127.0.0.1/hook\n")
    config = write(tmp_path, BASE + '\n[alerts]\nconfig = "apprise.yml"\n')
    line = refused(config, f'{config}:{line_of(config, "config =")}: [alerts]: key "config" names '
                     f"{tmp_path / 'apprise.yml'}: Unparseable URL jsn://...", commands=REFUSING)
    assert "hunter2" not in line and "soc:" not in line


def test_the_running_sender_keeps_the_targets_apprise_could_load(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The file may be edited while the daemon runs: the good target still gets the alerts, and
    the bad entry is one error line of ours (apprise's own line, quoting the URL, is kept out)."""
    (tmp_path / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/hook\n"
                                          "  - jsn://soc:hunter2secret@127.0.0.1/hook\n")
    settings = AlertSettings(config=tmp_path / "apprise.yml")
    with caplog.at_level(logging.INFO):
        [target] = load_targets(settings)
    assert target.name.startswith("json://127.0.0.1:9/hook")
    assert [(r.name, r.levelname) for r in caplog.records] == [("watcher.alerts.targets", "ERROR")]
    assert "Unparseable URL jsn://..." in caplog.text and "hunter2" not in caplog.text
    with pytest.raises(TargetError, match="Unparseable URL"):
        load_targets(settings, strict=True)


def test_an_env_url_whose_variable_is_not_set(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '\n[alerts]\nurls = ["critical=env:WATCHER_TEST_SLACK_URL"]\n')
    refused(config, f'{config}:{line_of(config, "urls =")}: [alerts]: key "urls" entry 1 reads '
                    "environment variable WATCHER_TEST_SLACK_URL, which is not set")


def test_an_env_url_that_is_set_is_parsed_by_apprise_too(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '\n[alerts]\nurls = ["env:WATCHER_TEST_HOOK"]\n')
    line = refused(config, 'key "urls" entry 1 is not a URL apprise can use',
                         env={"WATCHER_TEST_HOOK": "nosuch://user:t0ken@127.0.0.1/x"})
    assert "t0ken" not in line
    [done] = watcher(config, ("check-config",), env={"WATCHER_TEST_HOOK": "json://127.0.0.1:9/x"})
    assert done.rc == 0, done.err


@pytest.mark.parametrize(("make", "problem"), [
    (lambda folder: None, "does not exist (create the folder, or disable the source)"),
    (lambda folder: folder.write_text("a file"), "is not a directory"),
])
def test_a_drop_folder_that_cannot_be_watched(tmp_path: Path, make: Callable[[Path], object], problem: str) -> None:
    """Before: "ok", then the source failed at every poll."""
    config = write(tmp_path, BASE.replace('"./inbox"', '"./drop"'), inbox=False)
    make(tmp_path / "drop")
    refused(config, f'{config}:{line_of(config, "path =")}: source "inbox": key "path": '
                    f"{tmp_path / 'drop'} {problem}", commands=REFUSING)


def test_a_state_dir_that_is_a_file(tmp_path: Path) -> None:
    config = write(tmp_path, BASE.replace('"./state"', '"./state.db"'))
    (tmp_path / "state.db").write_text("not a folder")
    refused(config, f'{config}:2: [watcher]: key "state_dir": {tmp_path / "state.db"} is not a directory',
            commands=REFUSING)


def test_a_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    config = write(tmp_path, BASE.replace('"./state"', '"./blocker/state"'))
    (tmp_path / "blocker").write_text("a file where a folder should be")
    refused(config, f'{config}:2: [watcher]: key "state_dir": {tmp_path / "blocker" / "state"} cannot be '
                    f"created: {tmp_path / 'blocker'} is not a directory")


def test_state_directory_from_systemd_is_named_as_such(tmp_path: Path) -> None:
    config = write(tmp_path, BASE)
    (tmp_path / "file").write_text("x")
    line = refused(config, env={"STATE_DIRECTORY": str(tmp_path / "file")})
    assert line == f"watcher: error: $STATE_DIRECTORY: {tmp_path / 'file'} is not a directory"
