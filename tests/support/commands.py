"""`watcher` commands in subprocesses, side by side, for the configuration, disk and key
tests: each one's exit status and output (`Done`), the single stderr line of a refusal
(`error_line`, `refused`), and the smallest valid configuration (`BASE`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemon import child_env

REFUSING = (("check-config",), ("run", "--once"), ("run",))


BASE = """\
[watcher]
state_dir = "./state"

[[sources]]
name = "inbox"
kind = "directory"
path = "./inbox"
interval = 10
"""


@dataclass
class Done:
    """One finished `watcher` process."""

    command: tuple[str, ...]
    rc: int
    out: str
    err: str


def start(config: Path, command: tuple[str, ...], env: dict[str, str] | None = None,
          preexec: Callable[[], None] | None = None) -> subprocess.Popen[str]:
    """`python -m watcher COMMAND --config CONFIG` in the config's folder."""
    return subprocess.Popen([sys.executable, "-m", "watcher", *command, "--config", str(config)],
                      cwd=config.parent, env=child_env(env), preexec_fn=preexec, text=True,
                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def watcher(config: Path, *commands: tuple[str, ...], env: dict[str, str] | None = None,
            preexec: Callable[[], None] | None = None, timeout: float = 60) -> list[Done]:
    """Run `commands` side by side (two cores: about one start-up for three) and wait for all."""
    procs = [(command, start(config, command, env, preexec)) for command in commands]
    done = []
    for command, proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"watcher {' '.join(command)} still running after {timeout:g} s: {err[-500:]}")
        done.append(Done(command, proc.returncode, out, err))
    return done


def error_line(done: Done, *fragments: str) -> str:
    """The single stderr line of a process that exited 2; no traceback, nothing on stdout."""
    assert done.rc == 2, (done.command, done.rc, done.err)
    assert "Traceback" not in done.err, done.err
    lines = done.err.splitlines()
    assert len(lines) == 1, (done.command, done.err)
    assert lines[0].startswith("watcher: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (done.command, lines[0])
    return lines[0]


def refused(config: Path, *fragments: str, env: dict[str, str] | None = None,
            commands: tuple[tuple[str, ...], ...] = (("check-config",),)) -> str:
    """Each of `commands` exits 2 with the same one line; no output, no state."""
    results = watcher(config, *commands, env=env)
    lines = {error_line(done, *fragments) for done in results}
    assert len(lines) == 1, lines
    assert all(done.out == "" for done in results)
    assert not (config.parent / "state").exists(), "a refused configuration must not create state"
    return lines.pop()
