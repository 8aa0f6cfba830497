"""Property-based tests (hypothesis): NIR forms in random text, wrong keys, arbitrary bytes;
hostile documents (CSV-ish text with CR/NUL/quotes, deep markup, damaged containers, odd
workbooks) that never raise, and adversarial inputs that cost linear time."""

from __future__ import annotations

import bz2
import gzip
import html
import io
import lzma
import time
import zipfile
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.fr import nir as stdnum_nir

from tests.support.nirs import nir_forms, values_of, with_key
from tests.support.strategies import bodies
from watcher.detect import nir as nir_rules
from watcher.detect.shape import ShapeReader
from watcher.extract.html import html_to_text
from watcher.extract.office import _text_pieces

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Surrounding text: anything printable but digits (a digit next to a NIR makes it part of a
# longer number), markup characters and control characters.
noise = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "No", "Cc", "Cs"), blacklist_characters="<>&"),
    max_size=30,
)
FORMS = sorted(nir_forms("184127512345640"))


def _document(prefix: str, written: str, suffix: str) -> str:
    # fixed start (a document's first bytes decide HTML/compression) and health context
    # (rarer forms may need it); the random text sits right against the NIR
    return f"Texte : {prefix}{written}{suffix}\n(mutuelle)\n"


@SETTINGS
@given(body=bodies(), form=st.sampled_from(FORMS + ["label13", "lower"]), prefix=noise, suffix=noise)
def test_valid_nir_found_in_every_form(found, body, form, prefix, suffix):
    nir = with_key(body)
    assert stdnum_nir.is_valid(nir) and nir_rules.is_valid(nir)
    if form == "label13":
        written, prefix = f"NIR : {body}", prefix + " "
    elif form == "lower":
        written = nir_forms(nir)["spaced"].lower()
    else:
        written = nir_forms(nir)[form]
    assert nir in found(_document(prefix, written, suffix))["nir"]


@SETTINGS
@given(body=bodies(), form=st.sampled_from(FORMS + ["label13_key"]), shift=st.integers(1, 99), prefix=noise, suffix=noise)
def test_wrong_key_never_found(found, body, form, shift, prefix, suffix):
    wrong = f"{body}{(nir_rules.nir_key(body) + shift) % 100:02d}"
    assert not stdnum_nir.is_valid(wrong)
    written = f"NIR : {wrong[:13]} {wrong[13:]}" if form == "label13_key" else nir_forms(wrong)[form]
    assert found(_document(prefix, written, suffix))["nir"] == set()


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda head, tail: head + tail, st.sampled_from(
        [b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"\xfd7zXZ\x00", b"x\x9c", b"x ", b"x^", b"PK\x03\x04", b"BZh9", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"<html>", b"[{\"nir\":", b"nir;cle\n",
         b"INSERT INTO t (nir) VALUES ("]), st.binary(max_size=2000)),
    st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")),
))
def test_arbitrary_bytes_never_raise(analyzer, data):
    report = analyzer.analyze_bytes(data, "fuzz")
    assert report.size == len(data)
    assert report.severity in ("none", "low", "medium", "high", "critical")
    assert "nir" in report.to_json()["counts"]


NEUTRAL = st.sampled_from(["ref", "commande", "ts", "id", "total", "lorem", "ipsum", "=", ":", ";", "|", "-", "x", "€",
                           "été", "créé le", "mutuelle", "Viamedis", "(", ")"])
SEPARATORS = st.sampled_from([" ", "\t", "\n", ";", ", ", " - ", "="])


@SETTINGS
@given(numbers=st.lists(st.one_of(st.text("0123456789", min_size=13, max_size=13), bodies().filter(str.isdigit)),
                        min_size=1, max_size=20),
       words=st.lists(NEUTRAL, min_size=1, max_size=8), separator=SEPARATORS)
def test_random_13_digit_numbers_without_label_never_count(found, numbers, words, separator):
    parts = []
    for index, number in enumerate(numbers):
        parts.append(words[index % len(words)])
        parts.append(number)
    parts.append(words[-1])
    assert found(separator.join(parts))["nir"] == set()


def test_values_helper_sees_the_pipeline(analyzer):
    # the helper the properties rely on must report what the analyzer counts
    values = values_of(analyzer, "ref 184127512345640 ok")
    assert values["nir"] == {"184127512345640"}


# -- hostile inputs (issue 9): extraction and detection never raise, in linear time ---------------

HOSTILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CSV_PIECES = st.sampled_from(["nom", "prenom", "nir", "cle", "mutuelle", ";", ",", "\t", "|", '"', '""', "\r", "\n",
                              "\r\n", "\x00", " ", "é", "\u00b2", "\u0661", "\u0301", "1841275123456", "40", "=", "'"])


@st.composite
def csvish(draw) -> bytes:
    """CSV-like text: a header naming columns, then rows of about as many fields whose values
    hold separators, quotes, CR, NUL and odd digits; a 13-character NIR column now and then."""
    delimiter = draw(st.sampled_from(";,\t|"))
    header = draw(st.lists(st.sampled_from(["nom", "prenom", "nir", "cle", "mutuelle", "x"]), min_size=1, max_size=5))
    width = st.integers(max(1, len(header) - 1), len(header) + 1)
    field = st.lists(CSV_PIECES, max_size=4).map("".join)
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(field, min_size=n, max_size=n)), max_size=30))
    prefix = draw(st.sampled_from(["", "INSERT INTO t VALUES (", "[{", "Titre\n"]))
    text = prefix + delimiter.join(header) + "\n" + "\n".join(delimiter.join(row) for row in rows)
    return text.encode("utf-8")


@st.composite
def nested_html(draw) -> bytes:
    tags = draw(st.lists(st.sampled_from(["div", "p", "td", "tr", "table", "pre", "script", "b", "li", "br", "head"]),
                         min_size=1, max_size=6))
    depth = draw(st.integers(0, 3000))
    closing = draw(st.booleans())
    text = draw(st.text(max_size=40))
    opened = "".join(f"<{tags[i % len(tags)]}>" for i in range(depth))
    closed = "".join(f"</{tags[i % len(tags)]}>" for i in reversed(range(depth))) if closing else ""
    return f"<html><body>{opened}{text}{closed}<p>fin</p></body></html>".encode("utf-8", "surrogatepass")


@st.composite
def containers(draw) -> bytes:
    """A zip (members of random bytes, text, gzip, nested zips), a gzip, or one of them cut or
    with a byte changed."""
    def archive(depth: int) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as out:
            names = draw(st.lists(st.sampled_from(["m.csv", "xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml",
                                                   "word/document.xml", "content.xml", "mimetype", "xl/workbook.xml",
                                                   "xl/sharedStrings.xml", "d/"]), max_size=4, unique=True))
            for name in names:
                kind = draw(st.sampled_from(["bytes", "text", "gzip", "zip"] if depth < 4 else ["bytes", "text"]))
                data = draw(st.binary(max_size=300)) if kind == "bytes" else draw(csvish())
                payload = gzip.compress(data, mtime=0) if kind == "gzip" else archive(depth + 1) if kind == "zip" else data
                # fixed times: a clock in the bytes changes their length, which hypothesis reads as flakiness
                out.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), payload, compress_type=out.compression)
        return buffer.getvalue()

    data = archive(0) if draw(st.booleans()) else gzip.compress(draw(csvish()), mtime=0)
    damage = draw(st.sampled_from(["none", "cut", "flip"]))
    if damage == "cut" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        position = draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]
    return data


CELL_VALUES = st.sampled_from(["0", "1", "7", "123\u00b2", "\u0661\u0662", "9" * 5000, "-1", " 3", "", "x", "1e3",
                               "1841275123456", "40", "&amp;", "<", "]]>"])


@st.composite
def workbooks(draw) -> bytes:
    """xlsx-ish: shared strings and sheets of random cells (any `t`, any reference, any value,
    odd markup), sometimes cut."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    cells = "".join(
        f'<c r="{draw(st.sampled_from(["A1", "B7", "ZZZZ9", "", "XFD1", "a1", "A0"]))}" '
        f't="{draw(st.sampled_from(["s", "n", "inlineStr", "str", "b"]))}"><v>{html.escape(draw(CELL_VALUES))}</v></c>'
        for _ in range(draw(st.integers(0, 12))))
    sheet = f'<worksheet {ns}><sheetData><row r="1">{cells}</row>{draw(st.sampled_from(["", "<row>", "</c>", "<row><c><v>"]))}</sheetData></worksheet>'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("xl/workbook.xml", f"<workbook {ns}/>")
        out.writestr("xl/sharedStrings.xml", f"<sst {ns}><si><t>nir</t></si><si><t>a</t></si></sst>")
        out.writestr(f"xl/worksheets/sheet{draw(st.sampled_from(['1', '2', '1' * 40]))}.xml", sheet)
    return buffer.getvalue()


@HOSTILE
@given(data=st.one_of(st.binary(max_size=3000), csvish(), nested_html(), containers(), workbooks()))
def test_hostile_documents_never_raise(analyzer, data):
    report = analyzer.analyze_bytes(data, "fuzz")
    assert report.size == len(data) and report.severity in ("none", "low", "medium", "high", "critical")
    assert len(report.errors) <= 51


@HOSTILE
@given(data=st.one_of(csvish(), st.binary(max_size=2000)), cuts=st.lists(st.integers(1, 200), max_size=20))
def test_the_shape_reader_never_raises_whatever_the_chunks(data, cuts):
    reader = ShapeReader(lambda nir: None)
    position = 0
    for size in cuts:
        reader.feed(data[position:position + size])
        position += size
    reader.feed(data[position:])
    shape = reader.finish()
    assert shape.records >= 0 and (shape.format is not None or shape.records == 0)


@HOSTILE
@given(depth=st.integers(0, 5000), tag=st.sampled_from(["div", "span", "td", "li", "blockquote"]), closed=st.booleans())
def test_text_nested_at_any_depth_is_found(found, depth, tag, closed):
    nir = "184127512345640"
    page = f"<html><body>{f'<{tag}>' * depth}NIR {nir}{f'</{tag}>' * depth if closed else ''}</body></html>"
    assert found(page)["nir"] == {nir}


@HOSTILE
@given(odd=st.lists(CELL_VALUES, min_size=1, max_size=6), body=bodies())
def test_odd_cells_never_void_a_sheet(found, odd, body):
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    odd_cells = "".join(f'<c t="s"><v>{html.escape(value)}</v></c>' for value in odd)
    sheet = (f'<worksheet {ns}><sheetData><row r="1">{odd_cells}</row>'
             f'<row r="2"><c r="A2" t="inlineStr"><is><t>NIR : {with_key(body)}</t></is></c></row></sheetData></worksheet>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        out.writestr("xl/workbook.xml", f"<workbook {ns}/>")
        out.writestr("xl/worksheets/sheet1.xml", sheet)
    assert with_key(body) in found(buffer.getvalue())["nir"]


@HOSTILE
@given(payloads=st.lists(st.binary(max_size=40_000) | st.just(b"") | st.just(bytes(70_000)), min_size=1, max_size=8),
       kind=st.sampled_from(["gzip", "zlib", "bzip2", "xz"]), cuts=st.lists(st.integers(1, 50_000), max_size=6),
       padding=st.sampled_from([b"", b"\x00" * 512]))
def test_decompression_gives_every_member_whatever_the_chunks(payloads, kind, cuts, padding):
    """gzip members one after another (fed 16 KiB at a time, a member may end anywhere),
    single streams of the other kinds, trailing zero padding."""
    from watcher.extract.blobs import Budget, decompress

    pack = {"gzip": gzip.compress, "zlib": zlib.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind]
    data = b"".join(pack(p) for p in payloads) if kind == "gzip" else pack(b"".join(payloads))
    data += padding
    chunks, position = [], 0
    for size in cuts:
        chunks.append(data[position:position + size])
        position += size
    chunks.append(data[position:])
    out = b"".join(decompress(iter(chunks), kind, Budget(), "x"))
    assert out == b"".join(payloads)


def _elapsed(run: Callable[[bytes], object], data: bytes) -> float:
    started = time.perf_counter()
    run(data)
    return time.perf_counter() - started


def _shape(data: bytes) -> object:
    reader = ShapeReader(lambda nir: None)
    reader.feed(data)
    return reader.finish()


# name -> (an input growing with n, what is timed: "analyze" for the whole pipeline)
ADVERSARIAL: dict[str, tuple[Callable[[int], bytes], Callable[[bytes], object] | str]] = {
    "nested_tags": (lambda n: b"<html><body>" + b"<div><span>" * n + b"x" + b"</span></div>" * n, "analyze"),
    "unmatched_end_tags": (lambda n: b"<html><body>" + b"<div>" * n + b"</span>" * n, "analyze"),
    "html_stripped": (lambda n: b"<script><style>" * n + b"<" * n, lambda data: html_to_text(data.decode(), 0)),
    "quotes": (lambda n: b"nom;nir;cle\n" + b'A;"1841275123456;"40\n' * n + b'"' * n, "analyze"),
    "digit_runs": (lambda n: b"1" * n + b" " + b"184127512345640" * (n // 15) + b" 1 84 12" * (n // 8), "analyze"),
    "separators": (lambda n: b"nom;nir;x;cle" + b";" * 200 + b"\n"
                   + (b"A;1841275123456;x;40" + b";|,\t\r" * 50 + b"\n") * (n // 200), "analyze"),
    "combining_marks": (lambda n: ("e" + "\u0301" * n + "\u0316" * n).encode(), "analyze"),
    "sql_head": (lambda n: b"INSERT INTO t VALUES (1);\n" + b"create table (" * n + b"INSERT INTO t (" * n, _shape),
    "document_xml": (lambda n: b"<w:p>" * n + b"<" * n + b"<w:br " * n, lambda data: b"".join(_text_pieces(iter([data])))),
}


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_doubling_an_adversarial_input_roughly_doubles_the_time(analyzer, name):
    """The size grows until a run takes 0.05 s; then twice and four times that size must
    take under 4x and 8x as long (best of three runs each, the sizes taken in turn so that a
    busy machine slows them alike). Quadratic work takes 4x and 16x: the code before issue 9
    took 10-16x on nested tags, unclosed scripts, combining marks and SQL heads."""
    make, run = ADVERSARIAL[name]
    timed = (lambda data: analyzer.analyze_bytes(data, "timing")) if run == "analyze" else run
    size = 1024
    while _elapsed(timed, make(size)) < 0.05 and size < 1 << 24:
        size *= 2
    inputs = [make(k * size) for k in (1, 2, 4)]
    rounds = [[_elapsed(timed, data) for data in inputs] for _ in range(3)]
    base, double, quadruple = (min(times) for times in zip(*rounds, strict=True))
    assert double < 4 * base and quadruple < 8 * base, (size, base, double, quadruple)
