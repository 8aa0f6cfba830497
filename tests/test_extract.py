"""Extraction through the analyzer: encodings, HTML, base64, compression, bombs, chunking."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import lzma
import random
import resource
import struct
import time
import zipfile
import zlib

import pytest

from tests.support.archives import gzip_bomb_chunks, xlsx_bytes, zip_bytes, zip_members
from tests.support.nirs import nir_forms, random_nir
from watcher.extract import bytes_chunks

MiB = 1024 * 1024
PEOPLE = [random_nir(random.Random(i), strict=True) for i in range(6)]


def _csv(header: str = "nom;prenom;Numéro de sécurité sociale;mutuelle") -> str:
    return header + "\n" + "".join(f"NOM{i};Prénom{i};{n};MGEN\n" for i, n in enumerate(PEOPLE))


CSV = _csv()
CSV_BYTES = CSV.encode("utf-8")


def _assert_extract(report, records: int | None = len(PEOPLE)) -> None:
    assert report.counts["nir"] == len(PEOPLE), report
    assert "MGEN" in report.insurers
    if records is not None:
        assert report.records == records


# -- encodings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, bom", [
    ("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b""), ("utf-16-le", b"\xff\xfe"),
    ("utf-16-be", b""), ("utf-16-be", b"\xfe\xff"), ("cp1252", b""),
])
def test_encodings(analyzer, encoding, bom):
    data = bom + CSV.encode(encoding)
    report = analyzer.analyze_bytes(data, f"extract.{encoding}.csv")
    _assert_extract(report)
    # the accented header only maps to the NIR column when it was decoded right
    assert any("Numéro de sécurité sociale" in r for r in report.reasons), report.reasons


def test_cp1252_accented_insurer_name(analyzer):
    data = "Remboursement effectué par Viamédis pour le compte d'Almérys.\n".encode("cp1252")
    assert b"\xe9" in data
    report = analyzer.analyze_bytes(data, "note.txt")
    assert set(report.insurers) == {"Viamedis", "Almerys"}


def test_invalid_utf8_never_raises(analyzer):
    data = CSV_BYTES + b"\xff\xfe\xc3(\xa0\xa1 \xed\xa0\x80 fin\n"
    report = analyzer.analyze_bytes(data, "broken.csv")
    assert report.counts["nir"] == len(PEOPLE)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_long_run_of_combining_marks_is_composed_in_linear_time(analyzer, encoding):
    """NFC sorts a run of combining marks by insertion: 300 KB of marks in reverse class order
    took a minute. Runs are cut every 30 marks (UAX #15 stream-safe format) first."""
    marks = "e" + "\u0301" * 150_000 + "\u0316" * 150_000
    text = f"Organisme : Viame\u0301dis\n{marks}\nNIR {PEOPLE[0]}\n"
    started = time.perf_counter()
    report = analyzer.analyze_bytes(text.encode(encoding), "marks.txt")
    assert time.perf_counter() - started < 20     # 0.25 s here; quadratic was 60-90 s
    assert report.insurers == ["Viamedis"] and report.counts["nir"] == 1


def test_stream_safe_format_keeps_ordinary_text_and_every_mark():
    from watcher.extract.decode import stream_safe

    assert stream_safe("Viame\u0301dis, cre\u0301e\u0301") == "Viame\u0301dis, cre\u0301e\u0301"
    safe = stream_safe("a" + "\u0301\u0316" * 40)
    assert safe.replace("\u034f", "") == "a" + "\u0301\u0316" * 40
    assert [len(run) for run in safe[1:].split("\u034f")] == [30, 30, 20]


# -- HTML ----------------------------------------------------------------------------------------

def test_html_pre_keeps_lines(analyzer):
    html = f"<!DOCTYPE html><html><head><title>t</title><script>var nir='x';</script></head><body>" \
           f"<p>Leak sample</p><pre>{CSV}</pre></body></html>"
    report = analyzer.analyze_bytes(html.encode(), "post.html")
    assert report.counts["nir"] == len(PEOPLE)
    assert any("NIR" in r for r in report.reasons)


def test_html_entities_and_tags_between_digits(analyzer):
    nir = PEOPLE[0]
    spaced = nir_forms(nir)["spaced"].replace(" ", "&nbsp;")
    html = f"<html><body><p>NIR&nbsp;: {spaced}</p><p>Organisme&nbsp;: MGEN</p></body></html>"
    report = analyzer.analyze_bytes(html.encode(), "p.html")
    assert report.counts["nir"] == 1


def test_html_text_keeps_the_lines_of_the_page():
    """What analysts' pages look like, rendered as the beautifulsoup version rendered them: head,
    scripts, styles and comments out of the text; a line per block, `<br>` and `<pre>` line; a
    tab after each cell; whitespace alone between tags one space (a newline if it holds one).
    Then what the page holds out of sight: the head's title, comments, scripts (not styles)."""
    from watcher.extract.html import html_to_text

    page = ("<!DOCTYPE html><html><head><title>t</title><style>p{}</style></head><body>"
            "<h1>Fuite</h1><!-- note --><p>Voici <b>le</b>&nbsp;dump<br>ligne 2</p>"
            "<pre>nom;nir\n  A;1\n\tB;2</pre><script>var x = 1;</script>apr\u00e8s"
            "<table><tr><th>nom</th>\t<th>nir</th></tr><tr><td>A</td><td>1 84</td></tr></table>"
            "<ul>\x0c<li>un<li>deux</ul><textarea>  x\n  </textarea></body></html>")
    assert html_to_text(page) == ("Fuite\nVoici le\xa0dump\nligne 2\nnom;nir\n  A;1\n\tB;2\napr\u00e8snom\t nir\n"
                                  "A\t1 84\n un\ndeux\n  x\n" "t\n note\nvar x = 1;\n")


@pytest.mark.parametrize("depth", [1_000, 3_000, 100_000])
def test_deeply_nested_html_keeps_its_text_in_linear_time(analyzer, depth):
    """A tree from libxml2 drops what is nested deeper than 256 levels (2,048 with huge_tree,
    then the rest of the page too), and bs4 appended to the last descendant (quadratic:
    100,000 nested divs took minutes). The text is written as the parser streams; past 512
    levels the tags are stripped instead."""
    nir, after = PEOPLE[0], PEOPLE[1]
    page = (f"<html><body><p>Mutuelle : MGEN</p>{'<div>' * depth}NIR {nir_forms(nir)['spaced']}{'</div>' * depth}"
            f"<p>NIR {after}</p></body></html>").encode()
    started = time.perf_counter()
    report = analyzer.analyze_bytes(page, "nested.html", reveal=True)
    assert time.perf_counter() - started < 5
    assert set(report.revealed["nir"]) == {nir, after}


def test_unmatched_end_tags_under_deep_nesting_cost_linear_time(analyzer):
    """libxml2 looks for each end tag through the open elements: 100,000 `</span>` under
    100,000 open divs took 15 s (5 MiB of them, minutes)."""
    page = f"<html><body>{'<div>' * 100_000}NIR {PEOPLE[0]}{'</span>' * 100_000}<p>NIR {PEOPLE[1]}</p>".encode()
    started = time.perf_counter()
    report = analyzer.analyze_bytes(page, "deep.html", reveal=True)
    assert time.perf_counter() - started < 5
    assert set(report.revealed["nir"]) == {PEOPLE[0], PEOPLE[1]}


def test_html_too_big_to_parse_has_its_tags_stripped_in_linear_time():
    from watcher.extract.html import html_to_text

    page = "<p>avant</p><script>var secret = 1;</script><style>p {}</style><p>NIR 1 84</p><br>fin"
    assert html_to_text(page, max_parse=0) == " avant\n NIR 1 84\nfin\n"
    # Many scripts never closed, and runs of `<`: each rescanned the rest of the page before.
    hostile = "<script>" * 200_000 + "<" * 2_000_000 + "texte"
    started = time.perf_counter()
    assert html_to_text(hostile, max_parse=0).endswith("texte\n")
    assert time.perf_counter() - started < 5


# -- base64 ----------------------------------------------------------------------------------------

def test_base64_single_line(analyzer):
    blob = base64.b64encode(CSV_BYTES)
    data = b"Voici le fichier : " + blob + b" bonne lecture\n"
    assert not any(n.encode() in data for n in PEOPLE)
    report = analyzer.analyze_bytes(data, "paste.txt")
    assert report.counts["nir"] == len(PEOPLE)
    assert "MGEN" in report.insurers


@pytest.mark.parametrize("width", [76, 64])
def test_base64_wrapped(analyzer, width):
    blob = base64.b64encode(CSV_BYTES)
    wrapped = b"\n".join(blob[i:i + width] for i in range(0, len(blob), width))
    report = analyzer.analyze_bytes(b"-----BEGIN DATA-----\n" + wrapped + b"\n-----END DATA-----\n", "mail.eml")
    assert report.counts["nir"] == len(PEOPLE)


def test_base64_wrapped_crlf(analyzer):
    blob = base64.b64encode(CSV_BYTES)
    wrapped = b"\r\n".join(blob[i:i + 76] for i in range(0, len(blob), 76))
    data = b"Content-Transfer-Encoding: base64\r\n\r\n" + wrapped + b"\r\n"
    assert analyzer.analyze_bytes(data, "mail.eml").counts["nir"] == len(PEOPLE)


def test_base64_wrapped_and_indented(analyzer):
    blob = base64.b64encode(CSV_BYTES)
    lines = [b"    " + blob[i:i + 76] for i in range(0, len(blob), 76)]
    report = analyzer.analyze_bytes(b"Voici le dump :\n\n" + b"\n".join(lines) + b"\n", "post.md")
    assert report.counts["nir"] == len(PEOPLE)


def test_base64_blocks_cut_by_a_chunk_end_are_each_decoded(analyzer, rng):
    """A block carried into the next chunk ends at its padding: it swallowed the blocks after
    it (binascii drops what follows a padding), which were lost."""
    people = [random_nir(rng, strict=True) for _ in range(6)]
    blocks = [base64.b64encode(f"nom;nir\nA;{nir}\n".encode() * 7) for nir in people]
    assert all(block.endswith(b"=") for block in blocks)
    data = b"\n\n".join(blocks) + b"\n"
    first_end = len(blocks[0])
    for cut in (first_end, first_end - 1, first_end - 30, first_end + 1, first_end + 2):
        report = analyzer.analyze_chunks(iter([data[:cut], data[cut:]]), "mail.eml", reveal=True)
        assert set(report.revealed["nir"]) == set(people), cut


def test_gzip_inside_base64(analyzer):
    blob = base64.b64encode(gzip.compress(CSV_BYTES))
    report = analyzer.analyze_bytes(b"payload=" + blob + b"\n", "paste.txt")
    assert report.counts["nir"] == len(PEOPLE)


def test_random_base64_is_harmless(analyzer):
    blob = base64.b64encode(random.Random(1).randbytes(3000))
    report = analyzer.analyze_bytes(b"key: " + blob, "k.txt")
    assert report.counts["nir"] == 0
    assert report.errors == []


# -- compressed files ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, pack", [
    ("gzip", gzip.compress), ("bzip2", bz2.compress), ("xz", lzma.compress), ("zlib", zlib.compress),
    ("zip", lambda data: zip_bytes({"export/assures.csv": data})),
])
def test_compressed(analyzer, kind, pack):
    report = analyzer.analyze_bytes(pack(CSV_BYTES), f"dump.{kind}")
    _assert_extract(report)
    assert report.errors == []


def test_concatenated_gzip_members(analyzer):
    half = len(PEOPLE) // 2
    head = CSV.splitlines(keepends=True)
    data = gzip.compress("".join(head[:1 + half]).encode()) + gzip.compress("".join(head[1 + half:]).encode())
    assert analyzer.analyze_bytes(data, "multi.gz").counts["nir"] == len(PEOPLE)


@pytest.mark.parametrize("cut", [0, -1, 1, None])
def test_gzip_members_ending_at_a_piece_or_a_chunk_end(analyzer, cut):
    """The input is fed 16 KiB at a time: a first member of exactly 16 KiB ends with nothing
    left over, and the next member starts in the next piece (or chunk, cut around it)."""
    from watcher.extract.blobs import PIECE

    first = gzip.compress(random.Random(3).randbytes(16_361), 0, mtime=0)
    assert len(first) == PIECE
    data = first + gzip.compress(CSV_BYTES) + gzip.compress(b"fin\n")
    chunks = [data] if cut is None else [data[:PIECE + cut], data[PIECE + cut:]]
    report = analyzer.analyze_chunks(iter(chunks), "multi.gz")
    assert report.counts["nir"] == len(PEOPLE) and report.errors == []


def test_thousands_of_tiny_gzip_members_cost_linear_time(analyzer):
    """What follows a member's end was copied for each member: 50,000 empty members (1 MB)
    took 0.36 s and 4 MB several seconds."""
    data = gzip.compress(b"") * 200_000 + gzip.compress(CSV_BYTES)
    started = time.perf_counter()
    assert analyzer.analyze_bytes(data, "many.gz").counts["nir"] == len(PEOPLE)
    assert time.perf_counter() - started < 3


def test_nested_gzip_in_zip(analyzer):
    data = zip_bytes({"a.csv.gz": gzip.compress(CSV_BYTES), "readme.txt": b"hello"})
    assert analyzer.analyze_bytes(data, "nested.zip").counts["nir"] == len(PEOPLE)


def test_zip_file_on_disk(analyzer, tmp_path):
    path = tmp_path / "dump.zip"
    path.write_bytes(zip_bytes({"assures.csv": CSV_BYTES}))
    _assert_extract(analyzer.analyze_path(path))


def _encrypted_flag(data: bytes, name: bytes) -> bytes:
    """Set the 'encrypted' bit of member `name` in its local and central headers."""
    out = bytearray(data)
    for signature, flag_offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        position = 0
        while (position := out.find(signature, position)) != -1:
            length_offset = 26 if signature == b"PK\x03\x04" else 28
            length = struct.unpack_from("<H", out, position + length_offset)[0]
            if bytes(out[position + name_offset:position + name_offset + length]) == name:
                out[position + flag_offset] |= 0x01
            position += 4
    return bytes(out)


def test_zip_with_password_protected_member(analyzer):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("secret.csv", b"encrypted bytes in a real archive")
        archive.writestr("clear.csv", CSV_BYTES)
    data = _encrypted_flag(buffer.getvalue(), b"secret.csv")
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo("secret.csv").flag_bits & 1
    report = analyzer.analyze_bytes(data, "leak.zip")
    assert report.counts["nir"] == len(PEOPLE)          # the clear member is still scanned
    notes = [e for e in report.errors if "secret.csv" in e]
    assert notes and "password" in notes[0].lower()


def test_corrupt_bzip2_and_zip_are_noted_not_raised(analyzer):
    for data in (b"PK\x03\x04" + b"\x00" * 200, b"BZh9" + b"junk" * 50, bz2.compress(CSV_BYTES)[:60] + b"junk"):
        report = analyzer.analyze_bytes(data, "bad.bin")
        assert report.counts["nir"] == 0


CORRUPT_STREAMS = [
    pytest.param(b"\x1f\x8bjunkjunkjunk", id="gzip-bad-method"),
    pytest.param(gzip.compress(CSV_BYTES)[:40] + b"\x00garbage" * 10, id="gzip-corrupt-body"),
    pytest.param(b"\xfd7zXZ\x00" + b"junk" * 50, id="xz-junk"),
]


@pytest.mark.parametrize("data", CORRUPT_STREAMS)
def test_corrupt_gzip_and_xz_are_noted_not_raised(analyzer, data):
    report = analyzer.analyze_bytes(data, "bad.bin")
    assert report.errors


@pytest.mark.parametrize("start", [b"x ", b"x^", b"x}"])
def test_text_starting_like_a_zlib_header(analyzer, start):
    report = analyzer.analyze_bytes(start + b"marks the spot\n" + CSV_BYTES, "notes.txt")
    assert report.counts["nir"] == len(PEOPLE)


# -- bombs -----------------------------------------------------------------------------------------


def test_bomb_helper_is_a_real_gzip_stream():
    data = b"".join(gzip_bomb_chunks(4))
    assert gzip.decompress(data[:-8] + struct.pack("<II", zlib.crc32(bytes(4 * MiB)), 4 * MiB)) == bytes(4 * MiB)


def test_gzip_bomb_refused_quickly_with_bounded_memory(analyzer):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    report = analyzer.analyze_chunks(gzip_bomb_chunks(), "bomb.csv.gz")
    elapsed = time.monotonic() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert report.size < 2 * MiB
    assert report.errors, "the bomb must be refused with a reason"
    assert any("bomb" in e.lower() and "bomb.csv.gz" in e for e in report.errors), report.errors
    assert elapsed < 10, elapsed
    assert grown_mib < 200, grown_mib


def test_high_ratio_stream_refused_before_the_total_cap(analyzer):
    data = b"".join(gzip_bomb_chunks(64))                # 64 MiB of zeros, ratio ~1000x
    report = analyzer.analyze_bytes(data, "ratio.gz")
    assert any("200x" in e for e in report.errors), report.errors


def _texts(data: bytes, budget) -> tuple[bytes, list[str]]:
    """Every part's text of a document extracted under `budget`, and the notes."""
    from watcher.extract import extract

    text = b"".join(chunk for part in extract(bytes_chunks(data), "doc", budget) for chunk in part.chunks)
    return text, budget.notes


def test_notes_are_capped_and_the_rest_counted(analyzer):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(120):
            archive.writestr(f"secret{index:03d}.csv", b"x")
        archive.writestr("clear.csv", CSV_BYTES)
    data = buffer.getvalue()
    for index in range(120):
        data = _encrypted_flag(data, f"secret{index:03d}.csv".encode())
    report = analyzer.analyze_bytes(data, "leak.zip")
    assert report.counts["nir"] == len(PEOPLE)
    assert len(report.errors) == 51 and "password" in report.errors[49]
    assert report.errors[50] == "... and 70 more parts refused or skipped (not listed)"


def test_archive_members_are_bounded_per_document():
    """Entries are counted from each archive's end record before zipfile reads them: an
    archive over what the document may still hold is refused whole, the rest is read."""
    from watcher.extract import Budget

    inner = zip_bytes({f"m{index}.txt": b"" for index in range(150)})
    outer = zip_bytes({"a.csv": CSV_BYTES, "inner.zip": inner, "z.csv": CSV_BYTES.replace(b"NOM", b"AUTRE")})
    text, notes = _texts(outer, Budget(max_members=100))
    assert text.count(PEOPLE[0].encode()) == 2 and b"AUTRE0" in text
    assert notes == ["doc:inner.zip refused: declares 150 members, over the 100 a document may hold (3 already read)"]


def test_declared_members_of_bytes_a_path_or_a_file(tmp_path):
    """(A zip64 end record: test_hostile_files, with 70,000 entries.)"""
    from watcher.extract.blobs import declared_members

    data = zip_bytes({"a.csv": CSV_BYTES, "b.csv": CSV_BYTES})
    (tmp_path / "a.zip").write_bytes(data)
    with open(tmp_path / "a.zip", "rb") as handle:
        assert declared_members(data) == declared_members(str(tmp_path / "a.zip")) == declared_members(handle) == 2
    assert declared_members(b"PK\x03\x04 no end record") is None
    assert declared_members(str(tmp_path / "missing.zip")) is None


def test_an_archive_in_an_archive_is_spooled_to_disk_past_a_size(analyzer, monkeypatch):
    import watcher.extract as extract_module

    monkeypatch.setattr(extract_module, "SPOOL_IN_MEMORY", 64)
    inner = zip_bytes({"assures.csv": CSV_BYTES})
    _assert_extract(analyzer.analyze_bytes(zip_bytes({"inner.zip": inner, "readme.txt": b"hello"}), "leak.zip"))


def test_base64_blocks_count_against_the_budget_as_they_are_found():
    from watcher.extract import Budget

    block = base64.b64encode(CSV_BYTES * 200)              # ~90 KB decoded each
    text, notes = _texts(b"\n\n".join([block] * 30), Budget(max_expanded=MiB))
    assert text.count(PEOPLE[0].encode()) == 200 * (MiB // len(CSV_BYTES * 200))
    assert len(notes) == 1 and "base64 block" in notes[0] and "refused" in notes[0]


def test_an_unexpected_error_costs_one_part(analyzer, monkeypatch):
    """A library surprised by hostile input (here the HTML converter, made to fail): that
    part is noted by the error's kind, the other members are read."""
    import watcher.extract as extract_module

    def broken(markup: str) -> str:
        raise RecursionError("maximum recursion depth exceeded: " + PEOPLE[0])

    monkeypatch.setattr(extract_module, "html_to_text", broken)
    data = zip_bytes({"page.html": b"<html><body><p>x</p></body></html>", "assures.csv": CSV_BYTES})
    report = analyzer.analyze_bytes(data, "leak.zip")
    _assert_extract(report)
    assert report.errors == ["leak.zip:page.html: not fully read (RecursionError)"]
    report = analyzer.analyze_bytes(b"<html><body><p>x</p></body></html>", "page.html")
    assert report.errors == ["page.html: not fully read (RecursionError)"] and report.severity == "none"


# -- chunks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["compact", "spaced", "key_apart", "label"])
def test_nir_across_a_chunk_boundary(analyzer, form):
    nir = PEOPLE[0]
    written = f"NIR : {nir[:13]}" if form == "label" else nir_forms(nir)[form]
    filler = (b"lorem ipsum dolor sit amet\n" * (MiB // 27 + 1))[:MiB]
    for offset in sorted({-len(written) - 1, -len(written), -len(written) + 1, -len(written) // 2, -3, -2, -1, 0, 1}):
        data = filler[:MiB + offset] + b" " + written.encode() + b" fin\n" + filler[:1000]
        chunks = [data[i:i + MiB] for i in range(0, len(data), MiB)]
        report = analyzer.analyze_chunks(iter(chunks), "stream")
        assert report.counts["nir"] == 1, (form, offset)


def test_tiny_chunks(analyzer):
    chunks = [CSV_BYTES[i:i + 7] for i in range(0, len(CSV_BYTES), 7)]
    _assert_extract(analyzer.analyze_chunks(iter(chunks), "tiny"))


# -- robustness ------------------------------------------------------------------------------------

TEXT_PREFIXES = [b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"<html><body>", b"<?xml version='1.0'?>", b"[{",
                 b"{\"nom\":", b"INSERT INTO t VALUES (", b"nom;nir;cle\n"]
ARCHIVE_PREFIXES = [b"PK\x03\x04", b"BZh9", b"BZh", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"\xfd7zXZ\x00", b"x\x9c",
                    b"x ", b"x^"]


def test_arbitrary_bytes_never_raise(analyzer):
    rng = random.Random(99)
    for prefix in TEXT_PREFIXES + ARCHIVE_PREFIXES:
        for size in (0, 1, 17, 5000):
            body = rng.randbytes(size)
            report = analyzer.analyze_bytes(prefix + body, "random.bin")
            assert report.severity in ("none", "low", "medium", "high", "critical")
            assert report.size == len(prefix) + len(body)


def test_json_unicode_escapes_are_decoded(analyzer):
    """API responses escape accents (`Viam\\u00e9dis`): names still match."""
    data = b'[{"nom": "x", "assureur": "Alm\\u00e9rys", "note": "Mutuelle G\\u00e9n\\u00e9rale"}]'
    report = analyzer.analyze_bytes(data, "api.json")
    assert report.insurers == ["Almerys", "La Mutuelle G\u00e9n\u00e9rale"]


# -- spreadsheets -----------------------------------------------------------------------------


def test_xlsx_rows_pair_a_nir_column_with_a_key_column_apart(analyzer, rng):
    """A workbook dropped in the inbox: `nir` (13 characters) and `cle` three columns apart,
    strings shared (some as rich text), a missing cell, a full NIR stored as a number."""
    people = [random_nir(rng) for _ in range(12)]
    rows: list[list[object]] = [["nom", "nir", "date_naissance", "mutuelle", "cle"]]
    for index, nir in enumerate(people):
        rows.append([f"NOM{index}", nir[:13], None if index == 3 else 30000 + index,
                     "inline:Viamedis" if index % 2 else "Almerys", int(nir[13:])])
    numeric = random_nir(rng)
    report = analyzer.analyze_bytes(xlsx_bytes(rows, [["numéro"], [int(numeric)]]), "extract.xlsx", reveal=True)
    assert set(report.revealed["nir"]) == set(people) | {numeric}
    assert report.records == 12 and report.severity == "critical"
    assert set(report.insurers) >= {"Viamedis", "Almerys"}


def test_xlsx_cells_at_their_columns():
    from watcher.extract.office import _column
    assert [_column(ref, 9) for ref in ("A1", "C7", "Z3", "AA10", "XFD2", None, "12")] == [0, 2, 25, 26, 16383, 9, 9]


def test_a_zip_that_is_not_a_workbook_is_still_read_member_by_member(analyzer, rng):
    nir = random_nir(rng)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/notes.txt", f"NIR {nir}")
    report = analyzer.analyze_bytes(buffer.getvalue(), "notes.zip", reveal=True)
    assert report.revealed["nir"] == [nir]


def test_xlsx_written_by_openpyxl(analyzer, rng, tmp_path):
    """A workbook written by a real spreadsheet library (styles, dates, two named sheets),
    read from the file as the inbox source reads it."""
    import datetime

    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Adhérents"
    sheet.append(["Nom", "N° de sécurité sociale", "Né le", "Organisme", "Clé"])
    people = [random_nir(rng) for _ in range(15)]
    for index, nir in enumerate(people):
        sheet.append([f"Nom {index}", nir[:13], datetime.date(1980, 1, 1 + index), "Mutuelle Générale", nir[13:]])
    sheet.cell(row=1, column=1).font = openpyxl.styles.Font(bold=True)
    book.create_sheet("Notes").append(["rien"])
    path = tmp_path / "export.xlsx"
    book.save(path)
    report = analyzer.analyze_path(path, reveal=True)
    assert set(report.revealed["nir"]) == set(people)
    assert report.records == 15 and report.severity == "critical"
    assert report.insurers == ["La Mutuelle Générale"]


def test_a_damaged_or_inflated_workbook_costs_only_itself(analyzer, rng):
    nir = random_nir(rng)
    members = zip_members(xlsx_bytes([["nir"], [nir]]))
    broken = dict(members)
    broken["xl/worksheets/sheet1.xml"] = members["xl/worksheets/sheet1.xml"][:-40] + b"<row><c"
    bomb = dict(members)
    bomb["xl/sharedStrings.xml"] = b"<sst>" + b" " * (40 * 1024 * 1024) + b"</sst>"   # 1000x: refused past 8 MiB
    for variant, expected in ((broken, "unreadable"), (bomb, "refused")):
        report = analyzer.analyze_bytes(zip_bytes(variant), "x.xlsx", reveal=True)
        assert any(expected in note for note in report.errors), report.errors


ODD_INDEXES = ["123\u00b2", "\u0661\u0662", "9" * 5000, "-1", " 3", "0x1", "", "1e3"]


def test_a_shared_string_cell_that_is_not_an_index_is_its_text(analyzer, rng):
    """`<v>123²</v>` in a `t="s"` cell: str.isdigit() said yes, int() raised and the whole
    sheet was lost. Such a value is the cell's text; every other row is read."""
    people = [random_nir(rng, strict=True) for _ in range(10)]
    members = zip_members(xlsx_bytes([["nom", "nir", "note"]] + [[f"N{i}", nir, "ok"] for i, nir in enumerate(people)]))
    sheet = members["xl/worksheets/sheet1.xml"].decode()
    odd = "".join(f'<c r="C{row}" t="s"><v>{value}</v></c>' for row, value in enumerate(ODD_INDEXES, 2))
    members["xl/worksheets/sheet1.xml"] = sheet.replace('<c r="C2" t="s"><v>', odd + '<c r="C99" t="s"><v>', 1).encode()
    report = analyzer.analyze_bytes(zip_bytes(members), "export.xlsx", reveal=True)
    assert set(report.revealed["nir"]) == set(people) and report.severity == "critical"
    assert report.errors == [] and report.records == 10


def test_cells_keep_odd_values_as_text():
    from watcher.extract.office import SharedStrings, _parser, _SheetTarget

    strings = SharedStrings()
    for text in ("zero", "un"):
        strings.append(text)
    cells = "".join(f'<c t="s"><v>{value}</v></c>' for value in ["1", "0", "7"] + ODD_INDEXES)
    target = _SheetTarget(strings)
    parser = _parser(target)
    parser.feed(f'<row xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{cells}</row>'.encode())
    parser.close()
    assert target.rows == [["un", "zero", ""] + ODD_INDEXES]


def test_a_sheet_of_elements_that_are_not_rows_is_read_in_flat_memory(analyzer, rng):
    """Millions of elements outside any row stayed in the tree iterparse built (a 14 MiB
    workbook took 769 MB); the parser target keeps only the row being read (the memory is
    measured in test_hostile_files)."""
    nir = random_nir(rng, strict=True)
    members = zip_members(xlsx_bytes([["nir"], [nir]]))
    names = [f"<x{rng.randrange(1 << 16):04x}/>".encode() for _ in range(4096)]
    junk = b"".join(rng.choices(names, k=1_000_000))          # varied: under the 200x ratio
    sheet = members["xl/worksheets/sheet1.xml"]
    members["xl/worksheets/sheet1.xml"] = sheet.replace(b"<sheetData>", b"<sheetData>" + junk)
    members["xl/sharedStrings.xml"] = members["xl/sharedStrings.xml"].replace(b"<si>", junk + b"<si>", 1)
    started = time.perf_counter()
    report = analyzer.analyze_bytes(zip_bytes(members), "x.xlsx", reveal=True)
    assert report.revealed["nir"] == [nir] and report.errors == []
    assert time.perf_counter() - started < 10


def test_shared_strings_are_packed_and_read_back_across_blocks(rng):
    from watcher.extract.office import SharedStrings

    texts = [rng.choice(["", "é", "Viamedis", "x" * rng.randrange(50), "\U0001f600"]) + str(i) * rng.randrange(2)
             for i in range(3 * SharedStrings.BLOCK + 17)]
    strings = SharedStrings()
    for text in texts:
        strings.append(text)
    assert len(strings) == len(texts)
    assert [strings.get(i) for i in range(len(texts) + 3)] == texts + ["", "", ""]


def test_a_sheet_name_of_thousands_of_digits_is_not_a_sheet(analyzer, rng):
    """`sheet<5,000 digits>.xml` made int() raise out of the workbook reader: the document failed."""
    nir = random_nir(rng, strict=True)
    members = zip_members(xlsx_bytes([["nir"], [nir]]))
    members["xl/worksheets/sheet" + "1" * 5000 + ".xml"] = members["xl/worksheets/sheet1.xml"]
    report = analyzer.analyze_bytes(zip_bytes(members), "x.xlsx", reveal=True)
    assert report.revealed["nir"] == [nir]


def test_document_text_is_read_a_piece_at_a_time_with_the_same_result(rng):
    """A .docx's XML is cut before opening tags into pieces (flat memory whatever its size):
    the text is what the whole XML gives, wherever the member's chunks end."""
    from watcher.extract.office import _text_pieces, _xml_text

    cell = "<w:tc><w:p><w:r><w:t>{}</w:t></w:r></w:p>\n  </w:tc>"
    rows = "".join(f"<w:tr>{cell.format(f'N{i} &amp; fils')}{cell.format('1 84 12 é')}</w:tr>" for i in range(3000))
    xml = (f'<w:document><w:body><w:p><w:r><w:t xml:space="preserve">Assur&#233; </w:t></w:r><w:r><w:tab/>'
           f"<w:t>x</w:t></w:r></w:p><w:tbl>{rows}</w:tbl></w:body></w:document>").encode()
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(xml)), 30))
        chunks = [xml[a:b] for a, b in zip([0] + cuts, cuts + [len(xml)], strict=False)]
        assert b"".join(_text_pieces(iter(chunks))) == _xml_text(xml)


# -- PDF ----------------------------------------------------------------------------------------

def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF as writers make them: Helvetica, a FlateDecode content stream, an xref."""
    text = " ".join(f"({line}) Tj 0 -14 Td" for line in lines)
    return _pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        _pdf_stream(f"BT /F1 11 Tf 50 780 Td {text} ET".encode("latin-1")),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ])


def _pdf_stream(content: bytes, entries: bytes = b"") -> bytes:
    data = zlib.compress(content)
    return b"<< %s /Length %d /Filter /FlateDecode >>\nstream\n" % (entries, len(data)) + data + b"\nendstream"


def _pdf_of(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the catalog first) with its xref."""
    out, offsets = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_page_text_is_scanned(analyzer, rng):
    people = [random_nir(rng) for _ in range(3)]
    lines = ["Attestation de droits - Viamedis", "Organisme complementaire : Almerys"]
    lines += [f"Beneficiaire {i} : NIR {nir_forms(nir)['spaced']}" for i, nir in enumerate(people)]
    report = analyzer.analyze_bytes(_pdf(lines), "attestation.pdf", reveal=True)
    assert set(report.revealed["nir"]) == set(people)
    assert set(report.insurers) >= {"Viamedis", "Almerys"} and report.severity == "high"


def test_a_broken_or_oversized_pdf_costs_only_itself(analyzer, monkeypatch):
    report = analyzer.analyze_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage", "broken.pdf")
    assert report.severity == "none" and report.errors      # a note, no exception
    import watcher.extract.pdf as pdf_module
    monkeypatch.setattr(pdf_module, "MAX_PDF", 100)
    report = analyzer.analyze_bytes(_pdf(["NIR 1 84 12 75 123 456 40"]), "big.pdf")
    assert any("not parsed" in note for note in report.errors) and report.counts["nir"] == 0


def test_a_pdf_drawing_a_form_again_and_again_gets_its_time_then_a_note(analyzer, monkeypatch):
    """A 2 KB PDF whose second page draws a 50 KB form 10,000 times: pypdf parses the form
    each time (minutes). Page 1 is read; page 2 stops at the time given (here 1 s)."""
    import watcher.extract.pdf as pdf_module

    monkeypatch.setattr(pdf_module, "MAX_SECONDS", 1.0)
    font = b"<< /Font << /F1 7 0 R >> >>"
    data = _pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R /Resources %s >>" % font,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R "
        b"/Resources << /Font << /F1 7 0 R >> /XObject << /X0 8 0 R >> >> >>",
        _pdf_stream(f"BT /F1 11 Tf 50 780 Td (Mutuelle MGEN NIR {PEOPLE[0]}) Tj ET".encode()),
        _pdf_stream(b"/X0 Do\n" * 10_000),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        _pdf_stream(b"BT /F1 11 Tf 50 780 Td (x) Tj ET\n" * 1500, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources %s" % font),
    ])
    assert len(data) < 4096
    started = time.perf_counter()
    report = analyzer.analyze_bytes(data, "bomb.pdf", reveal=True)
    assert time.perf_counter() - started < 10
    assert report.revealed["nir"] == [PEOPLE[0]]
    assert report.errors == ["bomb.pdf: PDF text extraction over 1 s (the same content drawn again and again?), "
                             "pages from 2 not read"]


def test_a_pdf_page_showing_no_text_is_not_parsed(analyzer):
    """(pypdf skips such content itself, but not with the callback the time check needs.)"""
    data = _pdf_of([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        _pdf_stream(b"0 0 m 10 10 l S\n" * 300_000),           # 4.5 MB of lines drawn: 4 s to parse
    ])
    started = time.perf_counter()
    assert analyzer.analyze_bytes(data, "drawing.pdf").errors == []
    assert time.perf_counter() - started < 2


# -- word-processing and OpenDocument files -----------------------------------------------------

def test_docx_runs_are_joined_and_tables_become_rows(analyzer, rng):
    """Word splits text into runs wherever formatting changes: a NIR over three runs, and a
    table with the NIR and its key in separate cells."""
    spaced = nir_forms(nir := random_nir(rng))["spaced"]
    other = random_nir(rng)
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    runs = "".join(f'<w:r><w:t xml:space="preserve">{part}</w:t></w:r>' for part in (spaced[:7], spaced[7:13], spaced[13:]))
    table = ("<w:tbl><w:tr><w:tc><w:p><w:r><w:t>nir</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>cl&#233;</w:t></w:r></w:p></w:tc></w:tr>"
             f"<w:tr><w:tc><w:p><w:r><w:t>{other[:13]}</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>{other[13:]}</w:t></w:r></w:p></w:tc></w:tr></w:tbl>")
    document = (f'<?xml version="1.0"?><w:document {w}><w:body><w:p><w:r><w:t>Assur&#233; : Viam&#233;dis, NIR </w:t></w:r>{runs}</w:p>'
                f"{table}</w:body></w:document>")
    report = analyzer.analyze_bytes(zip_bytes({"[Content_Types].xml": "<Types/>", "word/document.xml": document}), "lettre.docx", reveal=True)
    assert set(report.revealed["nir"]) == {nir, other}
    assert "Viamedis" in report.insurers


def test_opendocument_spreadsheet_cells_are_separated(analyzer, rng):
    people = [random_nir(rng, strict=True) for _ in range(4)]     # no health words here: the common forms
    rows = "".join(f"<table:table-row><table:table-cell><text:p>{p[:13]}</text:p></table:table-cell>"
                   f"<table:table-cell><text:p>{p[13:]}</text:p></table:table-cell></table:table-row>" for p in people)
    content = ('<?xml version="1.0"?><office:document-content><office:body><office:spreadsheet><table:table>'
               f"{rows}</table:table></office:spreadsheet></office:body></office:document-content>")
    data = zip_bytes({"mimetype": "application/vnd.oasis.opendocument.spreadsheet", "content.xml": content})
    report = analyzer.analyze_bytes(data, "export.ods", reveal=True)
    assert set(report.revealed["nir"]) == set(people)


def test_opendocument_number_cells_give_their_value_not_the_text_shown(analyzer, rng):
    """LibreOffice shows a 15-digit NIR typed as a number as `1,84127E+014` and keeps the
    full number in `office:value`: the value is read (0 of them were found from the text)."""
    people = [n for n in (random_nir(rng, strict=True) for _ in range(12)) if n.isdigit()][:6]

    def cell(value: str, shown: str) -> str:
        return (f'<table:table-cell office:value-type="float" office:value="{value}" calcext:value-type="float">'
                f"<text:p>{shown}</text:p></table:table-cell>")

    rows = "".join(f"<table:table-row><table:table-cell><text:p>NOM{i}</text:p></table:table-cell>"
                   f"{cell(p, f'{int(p):.5E}'.replace('.', ','))}{cell('0.15', '15 %')}</table:table-row>"
                   for i, p in enumerate(people))
    content = ('<?xml version="1.0"?><office:document-content><office:body><office:spreadsheet><table:table>'
               f"<table:table-row><table:table-cell><text:p>nom</text:p></table:table-cell><table:table-cell><text:p>"
               f"nir</text:p></table:table-cell></table:table-row>{rows}</table:table></office:spreadsheet>"
               "</office:body></office:document-content>")
    data = zip_bytes({"mimetype": "application/vnd.oasis.opendocument.spreadsheet", "content.xml": content})
    report = analyzer.analyze_bytes(data, "adherents.ods", reveal=True)
    assert set(report.revealed["nir"]) == set(people) and report.records == len(people)


@pytest.mark.parametrize("where", ["value", "data", "title", "script", "json", "comment", "head title"])
def test_what_a_page_holds_out_of_sight_is_read(analyzer, where):
    """A form's values, data attributes, tooltips, inline scripts (where web apps keep their
    data as JSON), comments and the head's title: after the page's text. Styles are not."""
    people = [random_nir(random.Random(i), strict=True) for i in range(12)]
    pieces = {
        "value": "".join(f'<input name="nir" value="{n}">' for n in people),
        "data": "".join(f'<div data-nir="{n}">assuré</div>' for n in people),
        "title": "".join(f'<span title="{n}">***</span>' for n in people),
        "script": "<script>var rows = [" + ",".join(f"'{n}'" for n in people) + "];</script>",
        "json": '<script type="application/json">' + str([{"nir": n} for n in people]).replace("'", '"') + "</script>",
        "comment": "<!-- " + " ".join(people) + " -->",
        "head title": "",
    }
    head = f"<title>Extraction Viamedis {' '.join(people)}</title>" if where == "head title" else ""
    page = f"<html><head>{head}<style>.x{{width:1px}}</style></head><body><p>voir</p>{pieces[where]}</body></html>"
    report = analyzer.analyze_bytes(page.encode(), "page.html", content_type="text/html")
    assert report.counts["nir"] == len(set(people))


def test_a_filled_in_pdf_form_gives_its_fields(analyzer):
    """A tiers-payant form filled in on screen keeps what was typed in its form fields, apart
    from its pages' text (empty here): the NIR, bare under the field's name, and the insurer."""
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, DictionaryObject, FloatObject, NameObject, TextStringObject

    nir = random_nir(random.Random(5), strict=True)
    writer = PdfWriter()
    page = writer.add_blank_page(width=200, height=200)
    fields = ArrayObject()
    for i, (name, value) in enumerate([("numero_securite_sociale", nir[:13]), ("organisme", "Viamedis")]):
        fields.append(writer._add_object(DictionaryObject({
            NameObject("/FT"): NameObject("/Tx"), NameObject("/T"): TextStringObject(name),
            NameObject("/V"): TextStringObject(value), NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Widget"),
            NameObject("/Rect"): ArrayObject([FloatObject(0), FloatObject(30 * i), FloatObject(100), FloatObject(30 * i + 20)]),
        })))
    page[NameObject("/Annots")] = fields
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/Fields"): fields})
    buffer = io.BytesIO()
    writer.write(buffer)
    report = analyzer.analyze_bytes(buffer.getvalue(), "prise-en-charge.pdf", reveal=True)
    assert report.revealed["nir"] == [nir] and report.insurers == ["Viamedis"], report.errors
