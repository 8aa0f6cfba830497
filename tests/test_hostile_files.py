"""Hostile and messy files (issue 9): each costs at most itself, in bounded time and memory.

Every file reported against the extractors, and their relatives (bombs of each compression,
trees and chains of archives, deep markup, odd cells), goes through the analyzer in-process:
what is refused is in `errors`, the healthy content of the same document is still found.
Then all of them, with a healthy extract between each two, go through one `watcher scan
--format json` subprocess: no traceback, every healthy extract still scanned and critical,
and the scanner's peak RSS under 300 MB.
"""

from __future__ import annotations

import base64
import bz2
import io
import json
import lzma
import random
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import pytest

from tests.support.archives import gzip_bomb_chunks, xlsx_bytes, zip_bytes, zip_members
from tests.support.nirs import nir_forms, random_nir
from watcher.extract.blobs import declared_members

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
RNG_SEED = 9
MAX_RSS_MIB = 300


def _people(seed: int, count: int = 10) -> list[str]:
    rng = random.Random(seed)
    return [random_nir(rng, strict=True) for _ in range(count)]


PEOPLE = _people(RNG_SEED)


def _extract(people: list[str]) -> bytes:
    return ("nom;prenom;nir\n" + "".join(f"N{i};P{i};{nir}\n" for i, nir in enumerate(people))).encode()


EXTRACT = _extract(PEOPLE)


# -- archives written by hand: zipfile would have to deflate every GiB of a bomb ------------------

Member = tuple[bytes, int, int]          # raw deflate stream, crc32, size


def _deflated(data: bytes) -> Member:
    engine = zlib.compressobj(9, zlib.DEFLATED, -15)
    return engine.compress(data) + engine.flush(), zlib.crc32(data), len(data)


def _zeros(mib: int) -> Member:
    """`mib` MiB of zeros as a raw deflate stream (about 1 KB per MiB), built block by block."""
    crc, zeros = 0, bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return b"".join(gzip_bomb_chunks(mib))[10:-8], crc, mib * MiB


def _zip_of(members: dict[str, Member]) -> bytes:
    """A zip archive of deflated members (local headers, central directory, end record)."""
    out, central = bytearray(), bytearray()
    for name, (data, crc, size) in members.items():
        raw = name.encode()
        fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(data), size)
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHHHII", len(raw), 0, 0, 0, 0, 0, len(out)) + raw
        out += b"PK\x03\x04" + fields + struct.pack("<HH", len(raw), 0) + raw + data
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def test_the_hand_written_zip_is_a_zip():
    data = _zip_of({"a.csv": _deflated(EXTRACT), "z.bin": _zeros(3)})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.read("a.csv") == EXTRACT and archive.read("z.bin") == bytes(3 * MiB)


# -- the hostile files --------------------------------------------------------------------------

@dataclass
class Hostile:
    """A hostile file, what the analyzer must still find in it, and what it must note."""

    build: Callable[[], bytes]
    found: set[str] = field(default_factory=lambda: set(PEOPLE))
    notes: tuple[str, ...] = ()          # each in some note of `errors`
    severity: str = "critical"


def stray_carriage_return() -> bytes:
    return b"nom;prenom;nir\nA;B\rC;1\n" + EXTRACT.split(b"\n", 1)[1]


def nested_divs() -> bytes:
    """100,000 nested divs (1.1 MB), the NIRs at 1,000 levels and after the nesting."""
    rows = "".join(f"<p>{nir_forms(nir)['spaced']}</p>" for nir in PEOPLE[5:])
    return (f"<html><body><p>Mutuelle : MGEN</p>{'<div>' * 1000}{''.join(f'<p>{n}</p>' for n in PEOPLE[:5])}"
            f"{'<div>' * 99_000}x{'</div>' * 100_000}{rows}</body></html>").encode()


def superscript_cell() -> bytes:
    members = zip_members(xlsx_bytes([["nom", "nir", "note"]] + [[f"N{i}", nir, "ok"] for i, nir in enumerate(PEOPLE)]))
    sheet = members["xl/worksheets/sheet1.xml"].decode()
    members["xl/worksheets/sheet1.xml"] = sheet.replace('<c r="C2" t="s"><v>', '<c r="D2" t="s"><v>123\u00b2</v></c><c r="C2" t="s"><v>', 1).encode()
    return zip_bytes(members)


def zip_bomb() -> bytes:
    """A GiB member (declared), nine members of 200 MiB under the per-member limit (each
    refused past 200x, then the document's 256 MiB), and the extract last."""
    members = {"zeros.bin": _zeros(1024)} | {f"zeros{i}.bin": _zeros(200) for i in range(9)}
    return _zip_of(members | {"assures.csv": _deflated(EXTRACT)})


def nested_42() -> bytes:
    """42.zip's shape: four levels of 16 archives above 1 GiB members (64 TiB in 2 KB)."""
    layer = _zip_of({"0.bin": _zeros(1024)})
    for level in range(4):
        member = _deflated(layer)
        layer = _zip_of({f"{level}_{index}.zip": member for index in range(16)})
    return _zip_of({"tree.zip": _deflated(layer), "assures.csv": _deflated(EXTRACT)})


def nested_deep() -> bytes:
    """A chain of archives six deep: the extract at the top is read, the one at the bottom noted."""
    deep = _zip_of({"deep.csv": _deflated(_extract(_people(99)))})
    for level in range(6):
        deep = _zip_of({f"level{level}.zip": _deflated(deep)})
    return _zip_of({"deep.zip": _deflated(deep), "assures.csv": _deflated(EXTRACT)})


def many_members() -> bytes:
    """An archive declaring 70,000 entries (a zip64 end record) next to the extract."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(70_000):
            archive.writestr(str(index), b"")
    assert declared_members(buffer.getvalue()) == 70_000
    return _zip_of({"many.zip": _deflated(buffer.getvalue()), "assures.csv": _deflated(EXTRACT)})


def gzip_bomb() -> bytes:
    return b"".join(gzip_bomb_chunks(1024))


def _compressed_zeros(engine, mib: int) -> bytes:
    zeros = bytes(MiB)
    return b"".join(engine.compress(zeros) for _ in range(mib)) + engine.flush()


def bombs_in_a_zip() -> bytes:
    """bzip2 and xz bombs (64 MiB of zeros each), a gzip bomb: members of one archive."""
    return _zip_of({
        "a.bz2": _deflated(_compressed_zeros(bz2.BZ2Compressor(9), 64)),
        "b.xz": _deflated(_compressed_zeros(lzma.LZMACompressor(preset=1), 64)),
        "c.gz": _deflated(gzip_bomb()),
        "assures.csv": _deflated(EXTRACT),
    })


def base64_gzip_bomb() -> bytes:
    """A paste: a GiB gzip bomb in base64 (1.4 MB), then the extract in clear."""
    return b"payload=" + base64.encodebytes(gzip_bomb()) + b"\n" + EXTRACT


def elements_not_rows() -> bytes:
    """A workbook whose sheet holds 2.5 million elements that are not rows (varied enough to
    stay under the 200x ratio) before its rows: a tree of them took gigabytes."""
    rng = random.Random(RNG_SEED)
    names = [f"<x{rng.randrange(1 << 16):04x}/>".encode() for _ in range(4096)]
    members = zip_members(xlsx_bytes([["nom", "nir"]] + [[f"N{i}", nir] for i, nir in enumerate(PEOPLE)]))
    sheet = members["xl/worksheets/sheet1.xml"]
    members["xl/worksheets/sheet1.xml"] = sheet.replace(b"<sheetData>", b"<sheetData>" + b"".join(rng.choices(names, k=2_500_000)))
    return zip_bytes(members)


def deep_json() -> bytes:
    return b"[" * 200_000 + b"\n" + EXTRACT


def combining_marks() -> bytes:
    return ("e" + "\u0301" * 150_000 + "\u0316" * 150_000 + "\n").encode() + EXTRACT


HOSTILE: dict[str, Hostile] = {
    "stray_cr.csv": Hostile(stray_carriage_return),
    "nested_divs.html": Hostile(nested_divs),
    "superscript.xlsx": Hostile(superscript_cell),
    "zip_bomb.zip": Hostile(zip_bomb, notes=("declares 1024 MiB", "200x", "declares 200 MiB (over budget)")),
    "42.zip": Hostile(nested_42, notes=("nested too deep",)),
    "deep.zip": Hostile(nested_deep, notes=("level4.zip: zip content nested too deep",)),
    "many_members.zip": Hostile(many_members, notes=("declares 70,000 members",)),
    "bomb.csv.gz": Hostile(gzip_bomb, found=set(), severity="none", notes=("(gzip) refused: expands more than 200x",)),
    "bombs.zip": Hostile(bombs_in_a_zip, notes=("a.bz2 (bzip2) refused", "b.xz (xz) refused", "c.gz (gzip) refused")),
    "base64_bomb.txt": Hostile(base64_gzip_bomb, notes=("(base64 block 1) (gzip) refused",)),
    "elements.xlsx": Hostile(elements_not_rows),
    "deep.json": Hostile(deep_json),
    "marks.txt": Hostile(combining_marks),
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, hostile in HOSTILE.items():
        (folder / name).write_bytes(hostile.build())
    return folder


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_costs_at_most_itself(analyzer, hostile_dir, name):
    hostile = HOSTILE[name]
    started = time.perf_counter()
    report = analyzer.analyze_path(hostile_dir / name, reveal=True)
    elapsed = time.perf_counter() - started
    assert set((report.revealed or {}).get("nir", [])) == hostile.found
    assert report.severity == hostile.severity
    for note in hostile.notes:
        assert any(note in error for error in report.errors), (note, report.errors)
    assert len(report.errors) <= 51                     # 50 listed, then a count
    assert elapsed < 20, elapsed


# -- the same files through `watcher scan`, a healthy extract between each two --------------------

@dataclass
class ScanRun:
    lines: list[dict]
    stderr: str
    returncode: int
    max_rss_mib: float
    seconds: float


# Starts the scanner and writes its peak RSS (KiB) to argv[1]. A child's ru_maxrss counts the
# image it was forked from: forked from pytest (hundreds of MB by then), it would be that.
LAUNCHER = """
import os, subprocess, sys
scanner = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(scanner.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.fixture(scope="module")
def scan_run(hostile_dir) -> tuple[ScanRun, dict[str, list[str]]]:
    healthy: dict[str, list[str]] = {}
    argv = [sys.executable, "-m", "watcher", "scan", "--format", "json"]
    for index, name in enumerate(HOSTILE):
        path = hostile_dir / f"healthy{index:02d}.csv"
        healthy[str(path)] = _people(1000 + index)
        path.write_bytes(_extract(healthy[str(path)]))
        argv += [str(path), str(hostile_dir / name)]
    out, err, rss = hostile_dir / "out.jsonl", hostile_dir / "err.txt", hostile_dir / "rss.txt"
    started = time.perf_counter()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(rss)] + argv, cwd=ROOT, stdout=stdout,
                              stderr=stderr, stdin=subprocess.DEVNULL, timeout=300)
    run = ScanRun([json.loads(line) for line in out.read_text().splitlines() if line.strip()], err.read_text(),
                  proc.returncode, int(rss.read_text()) / 1024, time.perf_counter() - started)
    return run, healthy


def test_scan_survives_every_hostile_file(scan_run, hostile_dir):
    run, healthy = scan_run
    assert "Traceback" not in run.stderr, run.stderr
    by_path = {line["path"]: line for line in run.lines}
    for path, people in healthy.items():                 # every extract after a hostile file is scanned
        line = by_path[path]
        assert line["severity"] == "critical" and line["counts"]["nir"] == len(people) and line["records"] == 10
    for name, hostile in HOSTILE.items():
        line = by_path[str(hostile_dir / name)]
        assert line["severity"] == hostile.severity and line["counts"]["nir"] == len(hostile.found), line
        assert not any(nir in json.dumps(line) for nir in hostile.found)      # masked, never in clear


def test_scan_memory_and_time_stay_bounded(scan_run):
    run, _ = scan_run
    assert run.max_rss_mib < MAX_RSS_MIB, run.max_rss_mib
    assert run.seconds < 120, run.seconds
