"""`watcher scan` on both cores (watcher/parallel.py): a big file cut into slices gives the
report one process gives, whatever the slices cut (lines, quoted fields, a table's end).

Slices are made small here (128 KB, the first one 1 MiB) so a 3-4 MB generated file is cut
ten to twenty times, through long lines, quoted fields holding newlines and NIR rows.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nirs import nir_forms, random_nir
from watcher.analyze import Analyzer
from watcher.parallel import ScanPool, _cgroup_quota, available_cpus
from watcher.report import Report

ROOT = Path(__file__).resolve().parents[1]
SLICE = 128 * 1024
SIZE = 3_500_000
FORMS = ("compact", "spaced", "dotted", "key_apart")
WORDS = ["le", "la", "dossier", "mutuelle", "assure", "remboursement", "tiers", "payant", "prestataire", "facture", "du", "de", "en", "cours"]


def _extract(rng: random.Random) -> str:
    """A CSV whose rows are parsed (13-character NIR, key two columns away), with quoted
    notes holding newlines and delimiters, blank lines, a child on a parent's NIR, and prose
    after the table."""
    rows, people, size = ["nom;nir;prenom;cle;mutuelle;note\n"], [], 0
    while size < SIZE:
        nir = rng.choice(people) if people and rng.random() < 0.05 else random_nir(rng)
        people.append(nir)
        cell = nir[:13] if rng.random() < 0.5 else nir_forms(nir)[rng.choice(FORMS)]
        note = rng.choice(['"ligne un\nligne deux; suite"', "ras", '"a ""cite""; b"', "", '"\n\n"'])
        row = f"N{len(rows)};{cell};P{len(rows)};{nir[13:]};MGEN;{note}\n"
        if rng.random() < 0.01:
            row += "\n"
        rows.append(row)
        size += len(row)
    rows.append("Fin de l'extraction.\nCordialement\n")
    return "".join(rows)


def _text(rng: random.Random) -> str:
    """Logs and prose: labelled and written NIRs, phone numbers, lines up to 40 KB long."""
    lines, size = [], 0
    while size < SIZE:
        pick = rng.random()
        if pick < 0.05:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1000, 6000)))
        elif pick < 0.25:
            nir = random_nir(rng, strict=rng.random() < 0.7)
            line = f"N° de sécurité sociale : {nir_forms(nir)[rng.choice(FORMS)]} transmis"
        elif pick < 0.35:
            line = f"rappeler le 06 {rng.randrange(10**8):08d} avant vendredi"
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 30)))
        lines.append(line + rng.choice(["\n", "\r\n"]))
        size += len(line) + 1
    return "".join(lines)


def _compare(analyzer: Analyzer, path: Path) -> Report:
    """Scanned by slices and in one process: the same report, identifiers included."""
    with ScanPool(analyzer, 2, split_at=SLICE, slice_size=SLICE) as pool:
        split = pool.analyze_split(path, reveal=True)
    whole = analyzer.analyze_path(path, reveal=True)
    assert split is not None, "the file was not cut"
    assert split.to_json() == whole.to_json()
    assert split.revealed == whole.revealed
    return split


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["extract", "text"])
def test_slices_give_the_report_of_one_process(analyzer, tmp_path, seed, kind):
    rng = random.Random(f"{kind}-{seed}")
    path = tmp_path / f"{kind}.txt"
    path.write_text(_extract(rng) if kind == "extract" else _text(rng), "utf-8")
    report = _compare(analyzer, path)
    assert report.counts["nir"] > 100
    if kind == "extract":
        assert report.records and report.records > 10_000 and report.severity == "critical"


def test_a_table_ending_before_the_last_slice_counts_its_rows_only(analyzer, tmp_path):
    """Two megabytes of prose after the table: the lines after its last row are not records,
    though they sit in slices of their own."""
    rng = random.Random(5)
    table = _extract(rng)[:1_500_000]
    table = table[:table.rfind("\n") + 1]
    path = tmp_path / "table-then-prose.csv"
    path.write_text(table + _text(rng)[:2_000_000] + "la fin", "utf-8")
    report = _compare(analyzer, path)
    lines = path.read_text("utf-8").count("\n")
    assert report.records and 1_000 < report.records < table.count("\n") < lines


def test_a_base64_block_sends_the_file_to_one_process(analyzer, tmp_path):
    """Blocks are extracted after the text against one budget: such a file is not cut."""
    rng = random.Random(6)
    secret = ("".join(f"secu={random_nir(rng, strict=True)};ok\n" for _ in range(20)) * 3).encode()
    block = base64.encodebytes(secret).decode()
    path = tmp_path / "with-block.txt"
    path.write_text(_text(rng) + block + _text(rng)[:500_000], "utf-8")
    with ScanPool(analyzer, 2, split_at=SLICE, slice_size=SLICE) as pool:
        assert pool.analyze_split(path) is None
        [(document, report)] = list(pool.reports([path], lambda d: analyzer.analyze_path(Path(d))))
    assert isinstance(report, Report) and report.to_json() == analyzer.analyze_path(path).to_json()


def test_a_directory_is_spread_over_the_pool_in_order(analyzer, tmp_path):
    """Small files go to the pool whole, a big one is cut, stdin and unreadable ones stay
    here: reports come back in the documents' order, errors in their place."""
    rng = random.Random(7)
    documents: list[Path | str] = []
    for index in range(12):
        path = tmp_path / f"{index:02d}.txt"
        path.write_text(_text(rng)[:rng.randrange(1000, 50_000)] if index != 5 else _extract(rng), "utf-8")
        documents.append(path)
    documents.insert(3, tmp_path / "missing.txt")

    def whole(document: Path | str) -> Report:
        return analyzer.analyze_path(Path(document))

    with ScanPool(analyzer, 2, split_at=1 << 20, slice_size=SLICE) as pool:
        parallel = list(pool.reports(documents, whole))
    with ScanPool(analyzer, 1) as pool:
        sequential = list(pool.reports(documents, whole))
    assert [d for d, _ in parallel] == documents
    for (_, one), (_, other) in zip(parallel, sequential, strict=True):
        if isinstance(one, Exception):
            assert type(one) is type(other) and isinstance(one, OSError)
        else:
            assert isinstance(other, Report) and one.to_json() == other.to_json()


def test_cli_jobs_gives_the_same_lines(tmp_path):
    """`--jobs 2` and `--jobs 1` print the same JSON lines for a directory; `--jobs 0` is refused."""
    rng = random.Random(8)
    for index in range(5):
        (tmp_path / f"{index}.csv").write_text(_extract(rng)[:200_000] if index % 2 else _text(rng)[:100_000], "utf-8")

    def scan(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "watcher", "scan", "--format", "json", *options, str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    one, two, zero = scan("--jobs", "1"), scan("--jobs", "2"), scan("--jobs", "0")
    assert one.returncode == two.returncode == 0
    assert [json.loads(line) for line in two.stdout.splitlines()] == [json.loads(line) for line in one.stdout.splitlines()]
    assert len(one.stdout.splitlines()) == 5
    assert zero.returncode == 2 and "--jobs" in zero.stderr


def test_available_cpus_honours_affinity():
    import os

    quota = _cgroup_quota()
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    assert quota is None or available_cpus() <= quota


def test_the_pure_python_detectors_cut_the_same(tmp_path):
    """Without the compiled number pass (every NIR through Hyperscan and Python, the rarer
    forms marked in the one set), slices still give one process's report."""
    from watcher.detect import Scanner

    analyzer = Analyzer(Scanner(compiled=False))
    path = tmp_path / "extract.csv"
    path.write_text(_extract(random.Random("python"))[:2_500_000], "utf-8")
    assert _compare(analyzer, path).counts["nir"] > 1000
