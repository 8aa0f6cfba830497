"""Member watchlists in the running daemon (issue 16): a real `watcher run` on a drop folder,
lists imported and removed from another process while it runs, the counts in the findings,
the incidents (distinct as they grow), the alert's title and body and the JSONL record; and
the watchlist monitor on a real store. Random NIRs only."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.support.commands import watcher
from tests.support.daemon import db_rows, wait_until, write_config
from tests.support.nirs import nir_forms, random_nir
from watcher.config import DB_NAME
from watcher.store import Store
from watcher.watchlist.monitor import WatchlistMonitor


def drop(folder: Path, name: str, nirs: list[str]) -> None:
    """A member extract in assorted written forms, old enough for the directory source."""
    forms = ["compact", "spaced", "dotted", "dashed", "nbsp", "key_apart"]
    rows = ["nom;nir;mutuelle"] + [f"N{i};{nir_forms(n)[forms[i % 6]]};MGEN" for i, n in enumerate(nirs)]
    path = folder / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    past = time.time() - 30
    os.utime(path, (past, past))


def import_list(config: Path, name: str, nirs: list[str]) -> None:
    path = config.parent / f"{name}.txt"
    path.write_text("".join(n + "\n" for n in nirs))
    (done,) = watcher(config, ("watchlist", "import", name, str(path)))
    assert done.rc == 0, done.err


def records(state: Path, count: int) -> list[dict[str, object]]:
    """The JSONL sink's first `count` records, waiting for them."""
    sink = state / "alerts.jsonl"

    def read() -> list[dict[str, object]] | None:
        if not sink.exists():
            return None
        lines = [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]
        return lines if len(lines) >= count else None
    return wait_until(read, 40, f"{count} alert records")[:count]


def test_the_daemon_counts_members_reloads_changed_lists_and_keeps_incident_counts(
        tmp_path: Path, start_daemon) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(16)
    ours = [random_nir(rng, strict=True) for _ in range(40)]
    strangers = [random_nir(rng, strict=True) for _ in range(60)]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"}, '[alerts]\nmin_severity = "low"\n')
    state = tmp_path / "state"
    import_list(config, "acme", ours[:20])
    daemon = start_daemon(config)
    daemon.notify.wait_for("READY", "1", timeout=30)

    # 1. a document with 4 members of acme among others
    drop(inbox, "a.csv", ours[:4] + strangers[:8])
    (first,) = records(state, 1)
    assert first["watchlist_hits"] == {"acme": 4}
    assert "4 of our members (watchlist acme)" in str(first["title"])
    assert "4 of our members (watchlist acme)" in first["reasons"]     # type: ignore[operator]
    assert first["incident"]["watchlist_hits"] == {"acme": 4}          # type: ignore[index]
    assert db_rows(state, "SELECT watchlist_hits FROM findings") == [('{"acme":4}',)]

    # 2. a new list while the daemon runs: the workers load it again
    import_list(config, "beta", ours[20:] + ours[:2])
    wait_until(lambda: "watchlists changed" in daemon.log, 30, "the daemon to notice the new list")
    # a repost with more of ours: the same incident, distinct members over it
    drop(inbox, "b.csv", ours[:4] + ours[10:16] + ours[20:23] + strangers[:8])
    second = records(state, 2)[1]
    assert second["kind"] == "update" and second["incident_id"] == first["incident_id"]
    assert second["watchlist_hits"] == {"acme": 10, "beta": 5}
    assert second["incident"]["watchlist_hits"] == {"acme": 10, "beta": 5}   # type: ignore[index]
    assert "our members (watchlist acme) 4 -> 10" in second["changes"]       # type: ignore[operator]
    (done,) = watcher(config, ("alerts", "show", str(second["id"])))
    assert "Members: 10 of our members (watchlist acme); 5 of our members (watchlist beta) in this document; " \
           "10 of our members (watchlist acme); 5 of our members (watchlist beta) over the incident" in done.out

    # 3. removed: no longer matched; SIGHUP looks at once
    (done,) = watcher(config, ("watchlist", "remove", "acme"))
    assert done.rc == 0
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.log.count("watchlists changed") >= 2, 30, "the daemon to notice the removal")
    drop(inbox, "c.csv", ours[4:8] + ours[30:33] + strangers[20:40])
    third = records(state, 3)[2]
    assert third["watchlist_hits"] == {"beta": 3} and third["kind"] == "new"
    assert daemon.stop() == 0

    # nothing in clear: the database, the sink, the log
    data = b"".join(path.read_bytes() for path in state.rglob("*") if path.is_file() and path.name != "secret.key")
    assert list((state / "watchlists").glob("*.u64")), "the workers map the lists from their flat files"
    for nir in ours + strangers:
        for form in (nir, nir[:13], nir_forms(nir)["spaced"]):
            assert form.encode() not in data
            assert form not in daemon.log


@pytest.mark.asyncio
async def test_the_monitor_renews_the_workers_when_the_lists_change(tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"})
    (tmp_path / "inbox").mkdir()
    rng = random.Random(17)
    import_list(config, "acme", [random_nir(rng) for _ in range(5)])
    renewed: list[int] = []
    async with await Store.open(tmp_path / "state" / DB_NAME) as store:
        monitor = WatchlistMonitor(store, lambda: renewed.append(1))
        assert await monitor.check() is False                 # the first look: what the workers start with
        assert await monitor.check() is False and renewed == []
        import_list(config, "acme", [random_nir(rng) for _ in range(5)])       # replaced: a new id
        assert await monitor.check() is True and renewed == [1]
        import_list(config, "beta", [random_nir(rng) for _ in range(5)])
        assert await monitor.check() is True and renewed == [1, 1]
        (done,) = watcher(config, ("watchlist", "remove", "acme"))
        assert await monitor.check() is True and renewed == [1, 1, 1]
        import_list(config, "gamma", [random_nir(rng) for _ in range(5)])
        (done,) = watcher(config, ("watchlist", "remove", "gamma"))
        assert await monitor.check() is False       # back to the lists the workers have: nothing to reload
        assert renewed == [1, 1, 1]
