"""The sealed evidence vault wired into the daemon (watcher.evidence_stage, the `evidence` table,
`watcher evidence`, retention): a real `watcher run` over the loopback paste site or a drop
folder, an analyst key generated here, the documents decrypted back with `watcher evidence
export`, a real kill -9 while a piece is being written."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest

from tests.support.daemon import child_env, wait_until
from tests.support.e2e import Leaks, assert_no_clear_nir, cli, json_lines, listing_block, watcher
from tests.support.fakesites import PasteSite
from watcher.config import RetentionSettings
from watcher.evidence import TEMP_PREFIX
from watcher.retention import EvidenceRetention, retention_pass, store_runner
from watcher.store import Store

NOTICE_OFF = "evidence: off (dry mode"


@pytest.fixture
def analyst(tmp_path: Path) -> tuple[Path, str]:
    """An analyst's age identity file (as age-keygen writes it) and its public recipient."""
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    key = tmp_path / "analyst.key"
    key.write_text(f"# public key: {recipient}\n{identity}\n", encoding="ascii")
    key.chmod(0o600)
    return key, recipient


def evidence_table(recipient: str | None, min_severity: str = "critical", extra: str = "") -> str:
    if recipient is None:
        return ""
    return f'[evidence]\nrecipients = ["{recipient}"]\nmin_severity = "{min_severity}"\n{extra}\n'


def write_config(tmp_path: Path, *blocks: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text('[watcher]\nstate_dir = "./state"\n\n' + "\n".join(blocks), encoding="utf-8")
    return path


def directory_block(folder: Path, interval: float = 1) -> str:
    return f'[[sources]]\nname = "inbox"\nkind = "directory"\npath = "{folder}"\ninterval = {interval}\n'


def custody(state: Path) -> list[dict[str, Any]]:
    """The custody records, read-only ([] before the table exists)."""
    path = state / "watcher.db"
    if not path.exists():
        return []
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute("SELECT * FROM evidence ORDER BY id")]
        except sqlite3.OperationalError:
            return []


def pieces(state: Path) -> list[Path]:
    folder = state / "evidence"
    return sorted(folder.glob("*.age")) if folder.is_dir() else []


def partials(state: Path) -> list[Path]:
    folder = state / "evidence"
    return sorted(folder.glob(TEMP_PREFIX + "*")) if folder.is_dir() else []


def state_blobs_outside_pieces(state: Path) -> dict[str, bytes]:
    """Every file of the state folder, recursively, but the sealed pieces (names included)."""
    blobs = {}
    for path in sorted(state.rglob("*")):
        blobs[f"name:{path.relative_to(state)}"] = str(path.relative_to(state)).encode()
        if path.is_file() and path.suffix != ".age":
            blobs[str(path.relative_to(state))] = path.read_bytes()
    return blobs


def export(config: Path, record: int, key: Path, out: Path) -> bytes:
    done = cli("evidence", "export", str(record), "--identity", str(key), "--out", str(out), "--config", str(config))
    assert done.rc == 0, done.err
    assert str(out) in done.err and "verified" in done.err
    return out.read_bytes()


def drop(folder: Path, name: str, data: bytes) -> Path:
    """A file in the drop folder, old enough to be settled (the source skips changing files)."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    past = time.time() - 30
    os.utime(path, (past, past))
    return path


# --------------------------------------------------------------------------- the paste site


async def test_a_critical_paste_is_sealed_with_its_custody_and_exported_exactly(
        tmp_path: Path, paste_site: PasteSite, analyst: tuple[Path, str]) -> None:
    key, recipient = analyst
    leaks = Leaks(seed=14)
    critical = leaks.critical_csv(12)
    in_url = leaks.nir()          # the paste's id carries a NIR: the custody record masks its URL
    paste_site.add_paste(f"dump-{in_url}", critical, "clients_mgen.csv")
    paste_site.add_paste("phigh", leaks.high_text(2), "mutuelle account")        # below min_severity
    paste_site.add_paste("pclean", Leaks.clean_text(), "holiday notes")
    config = write_config(tmp_path, evidence_table(recipient),
                          listing_block("paste", paste_site.url("/archive"), paste_site.url("/raw/{id}")))
    state = tmp_path / "state"
    env = child_env()

    done = await watcher(tmp_path, env, "run", "--once", "--workers", "1", "--config", str(config))
    assert done.rc == 0, done.err
    assert "evidence: documents from critical up are sealed to 1 recipient" in done.err
    assert "evidence sealed" in done.err

    (record,) = custody(state)
    (piece,) = pieces(state)
    expected = critical.encode()
    assert (record["status"], record["file_name"], record["source"]) == ("sealed", piece.name, "paste")
    assert record["sha256"] == record["kept_sha256"] == hashlib.sha256(expected).hexdigest()
    assert (record["size"], record["kept_bytes"], record["truncated"]) == (len(expected), len(expected), 0)
    assert json.loads(record["recipients"]) == [recipient] and record["expired_at"] is None
    assert in_url not in record["url"] and record["url"].endswith("/raw/dump-[NIR]")
    findings = json_lines(cli("findings", "--format", "json", "--config", str(config)).out)
    critical_finding = next(f for f in findings if f["severity"] == "critical")
    assert record["finding_id"] == critical_finding["id"] and record["incident_id"] is not None
    assert {f["severity"] for f in findings} == {"critical", "high"}   # the high one: found, not sealed

    # the analyst's side: the exact bytes back, the sha256 checked
    out = tmp_path / "exported" / "document.csv"
    out.parent.mkdir()
    assert export(config, record["id"], key, out) == expected
    assert os.stat(out).st_mode & 0o777 == 0o600

    listed = cli("evidence", "list", "--format", "json", "--config", str(config))
    assert [row["id"] for row in json_lines(listed.out)] == [record["id"]]
    of_incident = cli("evidence", "list", "--incident", str(record["incident_id"]), "--config", str(config))
    other = cli("evidence", "list", "--incident", str(record["incident_id"] + 1), "--config", str(config))
    assert record["sha256"][:8] not in of_incident.out and f"incident {record['incident_id']}" in of_incident.out
    assert "no evidence kept" in other.out
    shown = cli("evidence", "show", str(record["id"]), "--config", str(config))
    assert shown.rc == 0 and record["sha256"] in shown.out and in_url not in shown.out
    assert cli("evidence", "show", "999", "--config", str(config)).rc == 2

    # nothing readable is left outside the sealed files (the log either)
    assert_no_clear_nir(leaks.nirs, {**state_blobs_outside_pieces(state), "log": done.err.encode()})

    # a second run: nothing new fetched, nothing sealed again
    again = await watcher(tmp_path, env, "run", "--once", "--workers", "1", "--config", str(config))
    assert again.rc == 0, again.err
    assert len(custody(state)) == 1 and pieces(state) == [piece]


async def test_a_repost_on_another_source_reuses_the_piece_with_its_own_record(
        tmp_path: Path, paste_site: PasteSite, analyst: tuple[Path, str]) -> None:
    _, recipient = analyst
    leaks = Leaks(seed=15)
    critical = leaks.critical_csv(12)
    paste_site.add_paste("first", critical, "dump")
    drop(tmp_path / "inbox", "repost.csv", critical.encode())
    config = write_config(tmp_path, evidence_table(recipient),
                          listing_block("paste", paste_site.url("/archive"), paste_site.url("/raw/{id}")),
                          directory_block(tmp_path / "inbox"))
    done = await watcher(tmp_path, child_env(), "run", "--once", "--workers", "1", "--config", str(config))
    assert done.rc == 0, done.err
    records = custody(tmp_path / "state")
    assert sorted(r["source"] for r in records) == ["inbox", "paste"]
    assert sorted(r["status"] for r in records) == ["reused", "sealed"]
    assert len({r["file_name"] for r in records}) == 1 and len(pieces(tmp_path / "state")) == 1
    assert len({r["finding_id"] for r in records}) == 1 and len({r["incident_id"] for r in records}) == 1


# --------------------------------------------------------------------------- dry mode


async def test_dry_mode_says_so_once_and_seals_nothing(tmp_path: Path, start_daemon) -> None:
    leaks = Leaks(seed=16)
    inbox = tmp_path / "inbox"
    drop(inbox, "first.csv", leaks.critical_csv(12).encode())
    config = write_config(tmp_path, directory_block(inbox))
    daemon = start_daemon(config)
    try:
        wait_until(lambda: "msg=finding" in daemon.log, 30, "the first finding")
        drop(inbox, "second.csv", leaks.critical_csv(15).encode())
        wait_until(lambda: daemon.log.count("msg=finding") >= 2, 30, "the second finding")
        wait_until(lambda: daemon.log.count('msg="poll done"') >= 4, 30, "more polls")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    log = daemon.log
    assert log.count(NOTICE_OFF) == 1, log
    state = tmp_path / "state"
    assert not (state / "evidence").exists() and custody(state) == []
    assert_no_clear_nir(leaks.nirs, state_blobs_outside_pieces(state))


# --------------------------------------------------------------------------- a kill -9


def test_a_kill_while_sealing_counts_no_partial_and_loses_no_evidence(
        tmp_path: Path, analyst: tuple[Path, str]) -> None:
    """The daemon is killed (-9) while the piece of a big critical file is being written; the
    next run finds the temporary file of a dead writer and deletes it, the item was never
    recorded (sealing comes first) so it is analysed again and sealed whole."""
    key, recipient = analyst
    leaks = Leaks(seed=17)
    # A critical CSV followed by 10 MB of random hex: a piece of ~6 MB, written for a while.
    filler = os.urandom(5 * 1024 * 1024).hex().encode()
    document = leaks.critical_csv(12).encode() + b"# " + filler + b"\n"
    inbox = tmp_path / "inbox"
    drop(inbox, "big.csv", document)
    config = write_config(tmp_path, evidence_table(recipient), directory_block(inbox))
    state = tmp_path / "state"
    caught = None
    log = tmp_path / "killed.log"
    with log.open("wb") as output:
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--once", "--workers", "1",
                                 "--config", str(config)], cwd=tmp_path, env=child_env(), stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            found = partials(state)
            if found:
                os.killpg(proc.pid, signal.SIGKILL)
                caught = found
                break
            time.sleep(0.0005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert caught, f"the daemon ended before its piece was caught half-written:\n{log.read_text()}"
    assert pieces(state) == [] and custody(state) == []            # nothing counted as evidence
    assert partials(state), "the dead writer's temporary file is there until the next opening"

    rerun = subprocess.run([sys.executable, "-m", "watcher", "run", "--once", "--workers", "1",
                            "--config", str(config)], cwd=tmp_path, env=child_env(), capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert partials(state) == []
    (record,) = custody(state)
    assert record["status"] == "sealed" and record["sha256"] == hashlib.sha256(document).hexdigest()
    out = tmp_path / "big.out"
    assert hashlib.sha256(export(config, record["id"], key, out)).hexdigest() == record["sha256"]


# --------------------------------------------------------------------------- retention


async def test_retention_deletes_old_pieces_and_marks_their_records(
        tmp_path: Path, analyst: tuple[Path, str]) -> None:
    key, recipient = analyst
    leaks = Leaks(seed=18)
    drop(tmp_path / "inbox", "leak.csv", leaks.critical_csv(12).encode())
    config = write_config(tmp_path, evidence_table(recipient, extra="evidence_days = 30"),
                          directory_block(tmp_path / "inbox"))
    done = await watcher(tmp_path, child_env(), "run", "--once", "--workers", "1", "--config", str(config))
    assert done.rc == 0, done.err
    state = tmp_path / "state"
    (piece,) = pieces(state)
    evidence = EvidenceRetention(state / "evidence", 30)

    store = await Store.open(state / "watcher.db")
    try:
        soon = datetime.now(UTC) + timedelta(days=29)
        result = await retention_pass(store_runner(store), RetentionSettings(), clock=lambda: soon, evidence=evidence)
        assert result is not None and result.evidence == 0 and piece.exists()
        later = datetime.now(UTC) + timedelta(days=31)
        result = await retention_pass(store_runner(store), RetentionSettings(), clock=lambda: later, evidence=evidence)
        assert result is not None and result.evidence == 1
    finally:
        await store.close()
    assert not piece.exists()
    (record,) = custody(state)
    assert record["expired_at"] is not None and record["file_name"] == piece.name
    refused = await asyncio.to_thread(cli, "evidence", "export", str(record["id"]), "--identity", str(key),
                                      "--out", str(tmp_path / "gone.csv"), "--config", str(config))
    assert refused.rc == 2 and "deleted by retention" in refused.err
    assert not (tmp_path / "gone.csv").exists()
    listed = cli("evidence", "list", "--config", str(config))
    assert "expired" in listed.out
