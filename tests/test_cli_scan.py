"""`python -m watcher scan` in subprocesses: JSON contract, walking, stdin, text table, exit codes.

Each run compiles the patterns (seconds), so every scenario is started at once in a module
fixture and the tests only look at the results.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pty
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nirs import nir_forms, random_nir

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = {"path", "severity", "reasons", "counts", "insurers", "records", "samples", "sha256", "size", "errors"}

RNG = random.Random(2024)
PEOPLE = [random_nir(RNG, strict=True) for _ in range(12)]
EXTRACT = ("nom;prenom;nir;mutuelle\n" + "".join(
    f"N{i};P{i};{nir_forms(n)[['compact', 'spaced', 'dotted'][i % 3]]};{['MGEN', 'Viamedis'][i % 2]}\n"
    for i, n in enumerate(PEOPLE))).encode()
FEW = "".join(f"ref {n} ok\n" for n in PEOPLE[:2]).encode()       # medium: 2 NIRs, no context


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("scan")
    (base / "docs" / "sub").mkdir(parents=True)
    (base / "docs" / "sub" / "extract.csv").write_bytes(EXTRACT)
    (base / "docs" / "b.csv.gz").write_bytes(gzip.compress(EXTRACT))
    (base / "docs" / "notes.txt").write_bytes(b"Rien a signaler.\n")
    (base / "few.txt").write_bytes(FEW)
    (base / "quiet.txt").write_bytes(b"hello\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "unreadable.sock"))       # exists, but open() fails (even as root)
    yield base
    sock.close()


SCENARIOS = {
    "json_dir": (["--format", "json", "{docs}"], None),
    "stdin_fail_medium": (["--format", "json", "--fail-on", "medium", "-"], FEW),
    "text_fail": (["--fail-on", "critical", "{docs}"], None),
    "fail_not_reached": (["--format", "json", "--fail-on", "high", "{few}", "{quiet}"], None),
    "missing_unreadable": (["--format", "json", "{base}/does-not-exist.csv", "{quiet}", "{base}/unreadable.sock"], None),
    "bad_option": (["--bogus", "{quiet}"], None),
    "bad_severity": (["--fail-on", "none", "{quiet}"], None),
    "bad_format": (["--format", "xml", "{quiet}"], None),
    "reveal_pipe": (["--reveal", "--format", "json", "{few}"], None),
}


@pytest.fixture(scope="module")
def runs(tree) -> dict[str, subprocess.CompletedProcess]:
    places = {"docs": tree / "docs", "few": tree / "few.txt", "quiet": tree / "quiet.txt", "base": tree}
    started = {}
    for name, (args, stdin) in SCENARIOS.items():
        argv = [sys.executable, "-m", "watcher", "scan"] + [a.format(**places) for a in args]
        started[name] = (subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE), stdin, argv)
    done = {}
    for name, (proc, stdin, argv) in started.items():
        out, err = proc.communicate(stdin or b"", timeout=120)
        done[name] = subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())
    return done


def _lines(run) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def test_json_contract_and_directory_walk(runs, tree):
    run = runs["json_dir"]
    assert run.returncode == 0, run.stderr
    reports = _lines(run)
    docs = tree / "docs"
    assert [r["path"] for r in reports] == [str(docs / "b.csv.gz"), str(docs / "notes.txt"), str(docs / "sub" / "extract.csv")]
    for report in reports:
        assert set(report) >= CONTRACT, set(report)
        assert "nir" in report["counts"]
        path = Path(report["path"])
        assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert report["size"] == path.stat().st_size
        assert report["severity"] in ("none", "low", "medium", "high", "critical")
        assert isinstance(report["reasons"], list) and isinstance(report["samples"], list)
    gz, notes, csv = reports
    for report in (gz, csv):                      # the .gz is read like the plain file
        assert report["severity"] == "critical"
        assert report["counts"]["nir"] == 12
        assert report["records"] == 12
        assert report["insurers"] == ["MGEN", "Viamedis"]
        assert all(s.startswith("nir ") and "•" in s for s in report["samples"][:3])
    assert notes["severity"] == "none" and notes["counts"]["nir"] == 0 and notes["records"] is None


def test_no_clear_nir_in_json_output(runs):
    flat = "".join(c for c in runs["json_dir"].stdout if c.isdigit() or c == "\n")
    assert not any(n in flat for n in PEOPLE)


def test_stdin_and_fail_on_medium_reached(runs):
    run = runs["stdin_fail_medium"]
    assert run.returncode == 1, run.stderr
    [report] = _lines(run)
    assert report["path"] == "-"
    assert report["severity"] == "medium"
    assert report["counts"]["nir"] == 2
    assert report["sha256"] == hashlib.sha256(FEW).hexdigest()
    assert report["size"] == len(FEW)


def test_text_table_and_fail_on_reached(runs, tree):
    run = runs["text_fail"]
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["SEVERITY", "NIRS", "RECORDS", "INSURERS", "PATH"]
    rows = [line for line in lines[1:] if not line.startswith(" ")]
    assert len(rows) == 3
    assert rows[0].split()[:3] == ["CRITICAL", "12", "12"] and rows[0].endswith(str(tree / "docs" / "b.csv.gz"))
    assert rows[1].split()[:3] == ["NONE", "0", "-"]
    assert any("valid NIRs" in line for line in lines)
    assert not any(n in run.stdout.replace(" ", "").replace(".", "") for n in PEOPLE)


def test_fail_on_not_reached(runs):
    run = runs["fail_not_reached"]
    assert run.returncode == 0, run.stderr
    assert [r["severity"] for r in _lines(run)] == ["medium", "none"]


def test_missing_and_unreadable_paths(runs, tree):
    run = runs["missing_unreadable"]
    assert run.returncode == 2
    quiet, unreadable = _lines(run)                        # the others are still scanned
    assert quiet["path"] == str(tree / "quiet.txt") and "error" not in quiet
    assert unreadable["path"] == str(tree / "unreadable.sock")   # a document that failed has its line
    assert unreadable["severity"] == "none" and unreadable["error"]
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 2, run.stderr
    assert "does-not-exist.csv" in errors[0] or "does-not-exist.csv" in errors[1]
    assert any("unreadable.sock" in e for e in errors)
    assert all(e.startswith("watcher: error: ") for e in errors)


@pytest.mark.parametrize("name", ["bad_option", "bad_severity", "bad_format"])
def test_bad_options(runs, name):
    run = runs[name]
    assert run.returncode == 2
    assert run.stdout == ""
    assert "error" in run.stderr


def test_reveal_refused_to_a_pipe(runs):
    run = runs["reveal_pipe"]
    assert run.returncode == 2
    assert run.stdout == ""
    assert "terminal" in run.stderr
    assert not any(n in run.stderr for n in PEOPLE)


def test_reveal_allowed_to_a_terminal(tree):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "scan", "--reveal", str(tree / "few.txt")],
                                cwd=ROOT, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        os.close(slave)
        output = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            output += data
        proc.wait(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0, proc.stderr.read()
    text = output.decode()
    assert "REVEALED nir" in text
    assert all(n in text for n in PEOPLE[:2])


def test_a_reader_that_goes_away_stops_the_scan_quietly(tmp_path: Path):
    """`watcher scan DIR | head -1`: no traceback, the exit status of a broken pipe."""
    for index in range(300):
        (tmp_path / f"note-{index:03d}.txt").write_text("rien à signaler\n")
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "scan", "--format", "json", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["severity"] == "none"
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
