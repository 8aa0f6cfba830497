"""Containers read member by member: tar archives (plain or compressed, holding workbooks and
zips) and SQLite databases (their tables as rows), hostile ones included."""

from __future__ import annotations

import gzip
import io
import random
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.archives import xlsx_bytes, zip_bytes
from tests.support.nirs import random_nir
from watcher.analyze import Analyzer
from watcher.extract import Budget, extract

RNG = random.Random(23)
PEOPLE = [random_nir(RNG, strict=True) for _ in range(12)]
MAINLAND = [nir for nir in PEOPLE if nir[5:7] not in ("2A", "2B")]


def _csv(nirs: list[str]) -> bytes:
    return ("nom;prenom;nir;mutuelle\n" + "".join(f"NOM{i};Jean;{n};MGEN\n" for i, n in enumerate(nirs))).encode()


def _tar(members: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT, mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=fmt) as archive:
        archive.addfile(tarfile.TarInfo("export"), None)                 # a file of nothing, then a folder
        folder = tarfile.TarInfo("export/sub")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _database(path: Path, script: str, rows: list[tuple[object, ...]] = (), insert: str = "") -> bytes:
    db = sqlite3.connect(path)
    db.executescript(script)
    if insert:
        db.executemany(insert, rows)
    db.commit()
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("mode", ["w", "w:gz", "w:xz"])
def test_a_tar_is_read_member_by_member_workbooks_and_zips_included(analyzer: Analyzer, fmt: int, mode: str) -> None:
    """Scanned as one stream, a tar hid what is compressed in it (a workbook, a zip): 0 found."""
    third = len(PEOPLE) // 3
    data = _tar({"export/a.csv": _csv(PEOPLE[:third]),
                 "export/b.xlsx": xlsx_bytes([["nom", "nir"], *[["X", n] for n in PEOPLE[third:2 * third]]]),
                 "export/c.zip": zip_bytes({"c.csv": _csv(PEOPLE[2 * third:])})}, fmt, mode)
    report = analyzer.analyze_bytes(data, "export.tar")
    assert report.counts["nir"] == len(set(PEOPLE)), report.errors
    assert report.severity == "critical" and not report.errors


def test_a_truncated_tar_keeps_the_members_read_and_says_so(analyzer: Analyzer) -> None:
    data = _tar({"a.csv": _csv(PEOPLE[:6]), "b.csv": _csv(PEOPLE[6:])})
    cut = data.index(b"NOM0;Jean;" + PEOPLE[6].encode()) + 5          # inside the second member
    report = analyzer.analyze_bytes(data[:cut], "cut.tar")
    assert report.counts["nir"] == len(set(PEOPLE[:6]))
    assert any("cut.tar" in note and "unreadable" in note for note in report.errors), report.errors


def test_a_tar_of_too_many_members_is_refused_past_the_budget() -> None:
    data = _tar({f"m{i}.txt": b"x" for i in range(10)})
    budget = Budget(max_members=4)
    parts = [(part.label, b"".join(part.chunks)) for part in extract([data], "many.tar", budget)]
    assert [label for label, _ in parts] == [f"many.tar:{name}" for name in ("export", "m0.txt", "m1.txt", "m2.txt")]
    assert any("refused" in note and "4" in note for note in budget.notes), budget.notes


def test_text_that_merely_holds_ustar_at_257_is_still_text(analyzer: Analyzer) -> None:
    text = ("x" * 257 + "ustar " + _csv(PEOPLE).decode()).encode()
    assert analyzer.analyze_bytes(text, "notes.txt").counts["nir"] == len(set(PEOPLE))


def test_a_sqlite_database_is_read_table_by_table(analyzer: Analyzer, tmp_path: Path) -> None:
    """NIRs stored as text, as an INTEGER beside an INTEGER key (`7` for `07`), as a REAL and as
    a UTF-8 BLOB are all found; an INTEGER column scanned raw was binary: 0 found."""
    mainland = MAINLAND[:8]
    _database(tmp_path / "crm.db", """
        CREATE TABLE "adhérents ""vip"" 2024" (id INTEGER PRIMARY KEY, nom TEXT, nir TEXT, mutuelle TEXT);
        CREATE TABLE assures (id INTEGER, nom TEXT, nir INTEGER, cle INTEGER);
        CREATE TABLE notes (id INTEGER, valeur REAL, brut BLOB);
    """)
    db = sqlite3.connect(tmp_path / "crm.db")
    db.executemany('INSERT INTO "adhérents ""vip"" 2024" (nom, nir, mutuelle) VALUES (?, ?, ?)',
                   [(f"NOM{i}", nir, "MGEN") for i, nir in enumerate(mainland[:2])])
    db.executemany("INSERT INTO assures VALUES (?, ?, ?, ?)",
                   [(i, f"NOM{i}", int(nir[:13]), int(nir[13:])) for i, nir in enumerate(mainland[2:6])])
    db.executemany("INSERT INTO notes VALUES (?, ?, ?)",
                   [(1, float(mainland[6]), None), (2, None, mainland[7].encode())])
    db.commit()
    db.close()
    report = analyzer.analyze_bytes((tmp_path / "crm.db").read_bytes(), "crm.db")
    assert report.counts["nir"] == len(set(mainland)), report.errors
    assert not report.errors and report.severity in ("high", "critical")
    assert "MGEN" in report.insurers


def test_a_hostile_database_runs_nothing_of_its_schema_and_costs_one_table(analyzer: Analyzer, tmp_path: Path) -> None:
    """Views (here an endless recursive one), triggers, virtual tables and VIRTUAL generated
    columns (a 50 MB blob; 2 MB of hex made on each of 10,000 rows) are not read; a stored value
    over MAX_VALUE ends its table only; the other tables are read."""
    data = _database(tmp_path / "hostile.db", f"""
        CREATE TABLE bomb (id INTEGER, big BLOB GENERATED ALWAYS AS (zeroblob(50000000)) VIRTUAL);
        INSERT INTO bomb (id) VALUES (1);
        CREATE VIEW forever AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n;
        CREATE TABLE people (nir TEXT);
        CREATE TRIGGER t AFTER INSERT ON people BEGIN INSERT INTO people VALUES ('x'); END;
        CREATE VIRTUAL TABLE search USING fts5(body);
        INSERT INTO search VALUES ('{PEOPLE[0]}');
    """)
    db = sqlite3.connect(tmp_path / "hostile.db")
    db.execute("DROP TRIGGER t")
    db.executemany("INSERT INTO people VALUES (?)", [(nir,) for nir in PEOPLE[1:5]])
    db.commit()
    db.close()
    db = sqlite3.connect(tmp_path / "hostile.db")
    db.executescript("CREATE TABLE big (id INTEGER, b BLOB); INSERT INTO big VALUES (1, zeroblob(5000000));"
                     "CREATE TABLE spin (id INTEGER);"
                     "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k LIMIT 10000) "
                     "INSERT INTO spin (id) SELECT i FROM k;"
                     "ALTER TABLE spin ADD COLUMN n INTEGER GENERATED ALWAYS AS (length(hex(zeroblob(1000000 + id)))) VIRTUAL;")
    db.close()
    data = (tmp_path / "hostile.db").read_bytes()
    started = time.perf_counter()
    report = analyzer.analyze_bytes(data, "hostile.db")
    assert time.perf_counter() - started < 5        # never computed: read, `spin` alone took 11 s
    assert report.counts["nir"] >= len(set(PEOPLE[1:5]))
    assert any("big" in note and "not read to its end" in note for note in report.errors), report.errors
    assert not any("bomb" in note or "spin" in note for note in report.errors), report.errors


def test_a_corrupt_or_truncated_database_is_noted_never_raised(analyzer: Analyzer, tmp_path: Path) -> None:
    data = _database(tmp_path / "ok.db", "CREATE TABLE p (nir TEXT);", [(n,) for n in PEOPLE] * 200,
                     "INSERT INTO p VALUES (?)")
    garbled = bytearray(data)
    garbled[4096:] = bytes(random.Random(1).randbytes(len(data) - 4096))
    for label, damaged in (("garbled.db", bytes(garbled)), ("cut.db", data[:len(data) // 2]),
                           ("header.db", data[:100])):
        report = analyzer.analyze_bytes(damaged, label)
        assert report.errors, label
        assert all(label in note for note in report.errors)


def test_a_database_inside_a_tar_inside_a_zip_is_found(analyzer: Analyzer, tmp_path: Path) -> None:
    """And one level deeper than the budget's depth (a tar.gz in a zip: the gzip is a level),
    the database is scanned raw: its text columns still give their NIRs."""
    data = _database(tmp_path / "app.db", "CREATE TABLE p (nir TEXT, organisme TEXT);",
                     [(n, "Viamedis") for n in PEOPLE], "INSERT INTO p VALUES (?, ?)")
    report = analyzer.analyze_bytes(zip_bytes({"dump.tar": _tar({"app.db": data})}), "sample.zip")
    assert report.counts["nir"] == len(set(PEOPLE)) and "Viamedis" in report.insurers, report.errors
    deeper = analyzer.analyze_bytes(zip_bytes({"dump.tar.gz": gzip.compress(_tar({"app.db": data}))}), "deep.zip")
    assert deeper.counts["nir"] == len(set(PEOPLE))


def test_a_database_file_is_read_in_place_and_left_as_it_was(analyzer: Analyzer, tmp_path: Path) -> None:
    """A file scanned from disk is opened read-only and immutable: no journal or -wal file
    appears beside it and its bytes do not change."""
    path = tmp_path / "big.sqlite"
    data = _database(path, "CREATE TABLE p (nir TEXT, pad TEXT);", [(n, "x" * 2000) for n in PEOPLE * 100],
                     "INSERT INTO p VALUES (?, ?)")
    report = analyzer.analyze_path(path)
    assert report.counts["nir"] == len(set(PEOPLE)) and report.records == len(PEOPLE) * 100, report.errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.sqlite"] and path.read_bytes() == data


def _xls(sheets: dict[str, list[list[object]]]) -> bytes:
    import xlwt

    book = xlwt.Workbook()
    for name, rows in sheets.items():
        sheet = book.add_sheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(r, c, value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_an_xls_workbook_is_read_sheet_by_sheet_numbers_as_their_digits(analyzer: Analyzer) -> None:
    """NIRs typed into cells (floats on disk: invisible when scanned raw), a 13-digit number
    beside its key typed as a number (`7` for `07`), and text cells, on two sheets."""
    typed, split, text = MAINLAND[:4], MAINLAND[4:7], PEOPLE[-2:]
    data = _xls({"Adhérents": [["nom", "nir", "mutuelle"], *[[f"NOM{i}", float(n), "MGEN"] for i, n in enumerate(typed)],
                               *[[f"TXT{i}", n, None] for i, n in enumerate(text)]],
                 "Bénéficiaires": [["nom", "nir", "cle"], *[[f"B{i}", int(n[:13]), int(n[13:])] for i, n in enumerate(split)]]})
    assert all(n.encode() not in data for n in typed)
    report = analyzer.analyze_bytes(data, "adherents.xls")
    assert report.counts["nir"] == len(set(typed + split + text)), report.errors
    assert "MGEN" in report.insurers and not report.errors and report.severity in ("high", "critical")


def test_an_ole2_file_that_is_no_workbook_is_read_as_text(analyzer: Analyzer) -> None:
    """A .doc or .msg shares the .xls container: what xlrd cannot open is scanned as before."""
    data = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504) + _csv(PEOPLE)
    report = analyzer.analyze_bytes(data, "note.doc")
    assert report.counts["nir"] == len(set(PEOPLE))
    cut = _xls({"s": [["nir"], *[[float(n)] for n in MAINLAND]]})
    assert analyzer.analyze_bytes(cut[:len(cut) // 2], "cut.xls").severity in ("none", "low")   # damaged: no crash


def _qp_csv(nirs: list[str]) -> str:
    import quopri

    rows = "nom;prénom;nir;mutuelle;commentaire\n" + "".join(
        f"NOM{i};Zoé;{'x' * (60 - i % 15)} {n};Mutuelle Générale;ok\n" for i, n in enumerate(nirs))
    return quopri.encodestring(rows.encode("utf-8")).decode("ascii")


def test_a_quoted_printable_mail_is_decoded_rows_and_nirs_whole(analyzer: Analyzer) -> None:
    """Soft line breaks cut rows (counted twice) and NIRs (lost) when scanned raw."""
    body = _qp_csv(PEOPLE)
    assert any(f"={chr(10)}" in body[body.find(n[:4]) - 2:body.find(n[:4]) + 17] for n in PEOPLE)   # some NIR is cut
    mail = ("Return-Path: <a@example.org>\nFrom: =?utf-8?q?Service_Adh=C3=A9rents?= <a@example.org>\n"
            "Subject: =?utf-8?q?Extraction_Alm=C3=A9rys?=\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + body)
    report = analyzer.analyze_bytes(mail.encode(), "message.eml")
    assert report.counts["nir"] == len(set(PEOPLE)) and report.records == len(PEOPLE), report.errors
    assert {"Almerys", "La Mutuelle Générale"} <= set(report.insurers)


def test_a_mailbox_of_multipart_messages_gives_each_part(analyzer: Analyzer) -> None:
    """An mbox: an HTML body whose table cells split the NIRs' groups, a base64 workbook, a
    Latin-1 text part, an attached message; each read as what it is."""
    import base64
    from email.mime.application import MIMEApplication
    from email.mime.message import MIMEMessage
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    html = "<table>" + "".join(f"<tr><td>{n[:7]}</td><td>{n[7:]}</td></tr>" for n in PEOPLE[:3]) + "</table>"
    html = "<html><body><p>NIR :</p>" + "".join(f"<p>{n[:5]}<b>{n[5:]}</b></p>" for n in PEOPLE[:3]) + html + "</body></html>"
    first = MIMEMultipart()
    first["Subject"] = "export"
    first.attach(MIMEText(html, "html", "utf-8"))
    first.attach(MIMEApplication(xlsx_bytes([["nir"], *[[n] for n in PEOPLE[3:6]]]), Name="export.xlsx"))
    second = MIMEMultipart()
    second.attach(MIMEText("adhérents MGEN : " + ", ".join(PEOPLE[6:9]), "plain", "iso-8859-1"))
    forwarded = MIMEText("\n".join(PEOPLE[9:]), "plain", "utf-8")
    second.attach(MIMEMessage(forwarded))
    mbox = b"".join(b"From someone@example.org Mon Dec  7 06:00:00 2026\n" + m.as_bytes() + b"\n" for m in (first, second))
    assert all(n.encode() not in mbox for n in PEOPLE[3:6])                   # the workbook is base64
    report = analyzer.analyze_bytes(mbox, "inbox.mbox")
    assert report.counts["nir"] == len(set(PEOPLE)), report.errors
    assert not report.errors and "MGEN" in report.insurers
    assert base64  # imported for readers: the workbook travels base64-encoded


def test_text_with_header_like_lines_but_no_mime_is_read_as_text(analyzer: Analyzer) -> None:
    text = "Subject: extraction\nFrom: nobody\n\n" + _csv(PEOPLE).decode()
    report = analyzer.analyze_bytes(text.encode(), "paste.txt")
    assert report.counts["nir"] == len(set(PEOPLE)) and report.records == len(PEOPLE)


def test_a_hostile_mail_costs_nothing_but_itself(analyzer: Analyzer) -> None:
    nested = "Content-Type: text/plain\n\n" + _csv(PEOPLE).decode()
    for depth in range(2000):                                        # deeply nested multiparts
        nested = f'Content-Type: multipart/mixed; boundary="b{depth}"\n\n--b{depth}\n{nested}\n--b{depth}--\n'
    mail = "From: a@b\nMIME-Version: 1.0\n" + nested
    report = analyzer.analyze_bytes(mail.encode(), "nested.eml")
    assert report.severity in ("none", "low", "medium", "high", "critical")           # no exception
    broken = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\nContent-Transfer-Encoding: base64\n\n--x\n" \
             b"Content-Transfer-Encoding: base64\n\n!!!not base64" + bytes(range(256)) + b"\n--x"
    assert analyzer.analyze_bytes(broken, "broken.eml").severity == "none"


@st.composite
def damaged_containers(draw: st.DrawFn) -> bytes:
    """A real tar, 7-Zip, SQLite database, .xls workbook or e-mail, then bytes of it overwritten,
    cut or appended at random."""
    kind = draw(st.sampled_from(sorted(CONTAINERS)))
    data = bytearray(CONTAINERS[kind])
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at:at + 4] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data[:draw(st.integers(1, len(data)))]) + draw(st.binary(max_size=64))


def _containers() -> dict[str, bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        database = _database(Path(folder) / "c.db", "CREATE TABLE p (nir TEXT, n INTEGER);",
                             [(n, int(n[:13].replace("A", "0").replace("B", "0"))) for n in PEOPLE],
                             "INSERT INTO p VALUES (?, ?)")
    mail = ("From: a@b\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"
            "Content-Transfer-Encoding: quoted-printable\n\n" + _qp_csv(PEOPLE) + "\n--x--\n").encode()
    return {"tar": _tar({"a.csv": _csv(PEOPLE), "b.zip": zip_bytes({"c.csv": _csv(PEOPLE)})}), "sqlite": database,
            "xls": _xls({"s": [["nir"], *[[float(n)] for n in MAINLAND]]}), "mail": mail}


CONTAINERS = _containers()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged_containers())
def test_a_damaged_container_never_raises(analyzer: Analyzer, data: bytes) -> None:
    report = analyzer.analyze_bytes(data, "damaged")
    assert report.severity in ("none", "low", "medium", "high", "critical")


def _7z(members: dict[str, bytes]) -> bytes:
    import libarchive

    out = bytearray()

    def write(block: bytes) -> int:
        out.extend(block)
        return len(block)

    with libarchive.custom_writer(write, "7zip") as archive:
        for name, data in members.items():
            archive.add_file_from_memory(name, len(data), data)
    return bytes(out)


def test_a_7z_archive_is_read_member_by_member(analyzer: Analyzer, tmp_path: Path) -> None:
    """How leaks are packed on forums: compressed noise when scanned raw (0 found before), each
    member read now, a workbook or a database inside it too, from memory or from its file."""
    database = _database(tmp_path / "c.db", "CREATE TABLE p (nir INTEGER, cle INTEGER);",
                         [(int(n[:13]), int(n[13:])) for n in MAINLAND[:4]], "INSERT INTO p VALUES (?, ?)")
    data = _7z({"dump/a.csv": _csv(PEOPLE[:4]), "dump/b.xlsx": xlsx_bytes([["nir"], *[[n] for n in PEOPLE[4:8]]]),
                "dump/c.db": database, "dump/d.txt": _csv(PEOPLE[8:])})
    assert not any(n.encode() in data for n in PEOPLE)
    expected = set(PEOPLE) | set(MAINLAND[:4])
    report = analyzer.analyze_bytes(data, "leak.7z")
    assert report.counts["nir"] == len(expected) and not report.errors, report.errors
    (tmp_path / "leak.7z").write_bytes(data)
    assert analyzer.analyze_path(tmp_path / "leak.7z").counts["nir"] == len(expected)


def test_a_7z_bomb_or_a_cut_7z_costs_itself_only(analyzer: Analyzer) -> None:
    bomb = _7z({"zeros.csv": bytes(20 * 1024 * 1024), "after.csv": _csv(PEOPLE)})
    assert len(bomb) < 100_000
    report = analyzer.analyze_bytes(bomb, "bomb.7z")
    assert any("refused" in note and "bomb" in note for note in report.errors), report.errors
    whole = _7z({"a.csv": _csv(PEOPLE) * 50})
    report = analyzer.analyze_bytes(whole[:len(whole) // 2], "cut.7z")
    assert report.errors and all("cut.7z" in note for note in report.errors)


CONTAINERS["7z"] = _7z({"a.csv": _csv(PEOPLE), "b.zip": zip_bytes({"c.csv": _csv(PEOPLE)})})


def test_without_libarchive_a_7z_is_noted_as_not_read(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "leak.7z"
    path.write_bytes(CONTAINERS["7z"])
    code = ("import sys; from watcher.analyze import Analyzer; "
            "print(Analyzer().analyze_path(sys.argv[1]).errors)")
    env = {**os.environ, "LIBARCHIVE": str(tmp_path / "missing.so")}
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "7-Zip/RAR archive not read (libarchive unavailable" in done.stdout


def test_containers_are_never_cut_into_slices_as_plain_text() -> None:
    """`watcher scan --jobs N` cuts only plain text; each container is read whole."""
    from watcher.extract import plain_text

    assert plain_text(_csv(PEOPLE))
    for kind, data in CONTAINERS.items():
        assert not plain_text(data[:64 * 1024]), kind
