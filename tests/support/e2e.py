"""Helpers of the end-to-end tests (tests/test_daemon_e2e.py and the hostile-server, kill-loop
and Tor tests built on it): synthetic leaks that remember every NIR they hand out, the proof
that none is left in clear in the state files, sources.toml blocks, and the `watcher` command
in a subprocess (without blocking the fake sites of the test's loop) or in-process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.nirs import nir_forms, random_nir
from tests.support.socksproxy import SocksProxy
from watcher.cli import main as cli_main

class Leaks:
    """Synthetic documents; every NIR handed out is remembered, to prove none leaks."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nirs: list[str] = []

    def nir(self) -> str:
        value = random_nir(self.rng, strict=True)
        self.nirs.append(value)
        return value

    def critical_csv(self, rows: int = 12) -> str:
        """A members' extract: a NIR column (several written forms), an insurer column."""
        forms = ("compact", "spaced", "dotted", "compact")
        lines = ["nom;prenom;date_naissance;nir;mutuelle;num_adherent"]
        for i in range(rows):
            nir = nir_forms(self.nir())[forms[i % len(forms)]]
            lines.append(f"NOM{i};Prenom{i};19{50 + i}-0{1 + i % 9}-1{i % 10};{nir};MGEN;A{5449600 + i}")
        return "\n".join(lines) + "\n"

    def critical_post(self, count: int = 11) -> str:
        """Free text with >= 10 NIRs (a forum sale sample)."""
        lines = ["Sample of the base, 2M lines, price in PM:"]
        lines += [f"client {i}: {nir_forms(self.nir())['spaced']}" for i in range(count)]
        return "\n".join(lines)

    def high_text(self, count: int = 2, insurer: str = "Harmonie Mutuelle") -> str:
        """1-3 NIRs with an insurer named: high."""
        nirs = ", ".join(self.nir() for _ in range(count))
        return (f"Compte adhérent {insurer} récupéré. Numéros de sécurité sociale (NIR) : {nirs}. "
                "Garanties et tiers payant actifs.")

    @staticmethod
    def clean_text(words: int = 80) -> str:
        return " ".join(["lorem", "ipsum", "dolor", "sit", "amet", "2024-05-01", "v1.2.3"] * (words // 7))

    def title_with_nir(self, prefix: str) -> str:
        """A hostile title carrying a NIR (grouped form): the store must blank it."""
        return f"{prefix} {nir_forms(self.nir())['spaced']}"


def nir_needles(nirs: Iterable[str]) -> list[bytes]:
    """Every written form of every NIR, plus the 13-digit body, as UTF-8 bytes."""
    needles: set[bytes] = set()
    for nir in nirs:
        needles.update(form.encode() for form in nir_forms(nir).values())
        needles.add(nir[:13].encode())
    return sorted(needles)


def assert_no_clear_nir(nirs: Iterable[str], blobs: dict[str, bytes]) -> None:
    needles = nir_needles(nirs)
    leaks = {name: sum(needle in blob for needle in needles) for name, blob in blobs.items()}
    leaks = {name: count for name, count in leaks.items() if count}
    assert not leaks, f"cleartext NIRs found (where: how many written forms): {leaks}"


def state_files(state_dir: Path) -> dict[str, bytes]:
    """The raw bytes of every file of the state directory (database, -wal, -shm, key)."""
    return {p.name: p.read_bytes() for p in sorted(state_dir.iterdir()) if p.is_file()}


def listing_block(name: str, url: str, item_url: str, *, tor: bool = False, interval: float = 60,
                  extra: str = "") -> str:
    return (f'[[sources]]\nname = "{name}"\nkind = "listing"\nurl = "{url}"\n'
            f'item_links = "table.archive a"\nitem_url = "{item_url}"\n'
            f'{"tor = true" if tor else ""}\ninterval = {interval}\nallow_private = true\n{extra}\n')


def write_config(tmp_path: Path, *blocks: str, proxy: SocksProxy | None = None) -> Path:
    tor = f'[tor]\nsocks = "{proxy.address}"\n\n' if proxy else ""
    text = f'[watcher]\nstate_dir = "./state"\nconcurrency = 4\n\n{tor}' + "\n".join(blocks)
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Done:
    rc: int
    out: str
    err: str
    seconds: float = 0.0


async def watcher(cwd: Path, env: dict[str, str], *args: str, timeout: float = 60) -> Done:
    """`python -m watcher ARGS` in a subprocess, without blocking the fake sites."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Done(proc.returncode or 0, out.decode(), err.decode(), time.monotonic() - started)


def cli(*args: str) -> Done:
    """The read-only commands (findings, sources, check-config) in-process: same code, no spawn."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(args))
    return Done(rc, out.getvalue(), err.getvalue())


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def findings_of(config: Path) -> list[dict[str, Any]]:
    done = cli("findings", "--format", "json", "--config", str(config))
    assert done.rc == 0, done.err
    return json_lines(done.out)


def sources_of(config: Path) -> dict[str, dict[str, Any]]:
    done = cli("sources", "--format", "json", "--config", str(config))
    assert done.rc == 0, done.err
    return {row["name"]: row for row in json_lines(done.out)}


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)
