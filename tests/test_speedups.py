"""The compiled helpers (`watcher/detect/_speedups.c`) against their Python equivalents, and
the order of its results, checked when watcher.detect is imported.

Skipped when the extension is not built; that the build did not go missing where a compiler
and Python's headers are is tests/test_build.py's check, not this module's.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.strategies import bodies
from watcher.detect import NUMBER_DETECTORS, NUMBER_KINDS, Scanner, check_order
from watcher.detect.compiled import speedups
from watcher.detect.iban import IbanDetector, registered
from watcher.detect.phone import PhoneDetector
from watcher.detect.rpps import RppsDetector
from watcher.detect.siret import SiretDetector, SiretTag
from watcher.detect.engine import Engine
from watcher.detect.iban import valid_length_py
from watcher.detect.luhn import luhn_ok_py
from watcher.detect.base import CHECKED, FAILED, Pattern, tagged
from watcher.detect.nir import NirDetector, NirTag, nir_key
from watcher.detect.shape import count_lines_py
from watcher.extract.blobs import triggered_py
from watcher.extract.decode import _decodes

# Without the extension every test but the first is moot: the Python paths are what runs.
pytestmark = pytest.mark.skipif(speedups is None, reason="watcher.detect._speedups not built")
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = {"nir": NirDetector, "siret": SiretDetector, "rpps": RppsDetector, "phone": PhoneDetector, "iban": IbanDetector}
# kind -> (compiled detector, Python detector), each with its own engine
DETECTORS = {kind: (cls(compiled=True), cls(compiled=False)) for kind, cls in CLASSES.items()}
ENGINES = {id(d): Engine([d]) for pair in DETECTORS.values() for d in pair}
COMPILED, PYTHON = DETECTORS["nir"]
# Separators inside the body, between body and key, and bytes that are neither.
BODY_SEPARATORS = ["", " ", ".", "-", "\xa0"]
KEY_SEPARATORS = BODY_SEPARATORS + ["/", " / ", ";", ",", "\t", "|", "; ", '";"', "', '", '" , "', "'|'",
                                     " (", "(", "( ", " clé ", "clé", ", clé : ", " (clé ", " CLE:", ", Clé", " cle  ", "clef "]
OTHER = ["x", "  ", "\n", "/", "'", '"', "..", ";;", " ; ; "]

def found(kind: str, compiled: bool, buf: bytes, lo: int, hi: int) -> set[str]:
    """What the detector of `kind` accepts in (lo, hi]: through Hyperscan and `find` for its
    patterns, plus the compiled number pass when compiled (its IBANs cut to their country's
    length, as `Detection` does: `iban.registered`)."""
    detector = DETECTORS[kind][0 if compiled else 1]
    values: set[str] = set()
    hits = ENGINES[id(detector)].hits(buf, lo, hi)[0]
    if hits:
        values |= set(detector.find(buf, hits, (lo, hi), set())) - {FAILED}
    if compiled:
        for name, numbers in zip(NUMBER_DETECTORS, speedups.scan_numbers(buf, lo, hi), strict=False):
            if name == kind:
                values |= set(registered(numbers) if kind == "iban" else numbers)
    return values


def assert_same(buf: bytes, lo: int = 0, hi: int | None = None) -> None:
    hi = len(buf) if hi is None else hi
    for kind in CLASSES:
        assert found(kind, True, buf, lo, hi) == found(kind, False, buf, lo, hi), kind


def test_each_detector_leaves_the_compiled_patterns_out():
    assert all(compiled.compiled and not python.compiled for compiled, python in DETECTORS.values())
    assert len(COMPILED.patterns()) == 1 and len(PYTHON.patterns()) == len(NirTag)
    siret_compiled, siret_python = DETECTORS["siret"]
    assert len(siret_compiled.patterns()) == 1 and len(siret_python.patterns()) == len(SiretTag)
    assert Scanner().numbers and not Scanner(compiled=False).numbers


def test_pattern_tags_leave_no_gap():
    """A tag is the pattern's index in `patterns()`: only the last ones may be left out."""
    pattern = Pattern(b"x")
    assert tagged({SiretTag.SIRET: pattern, SiretTag.SIREN_LABELLED: Pattern(b"y")}) == [Pattern(b"y"), pattern]
    with pytest.raises(ValueError, match="without a gap"):
        tagged({SiretTag.SIREN_LABELLED: pattern, SiretTag.SIREN_GROUPED: pattern})


def test_the_compiled_module_gives_the_order_watcher_reads():
    assert speedups.NUMBER_KINDS == NUMBER_KINDS and speedups.FAILED_KINDS == CHECKED
    check_order("NUMBER_KINDS", speedups.NUMBER_KINDS, NUMBER_KINDS)


def test_another_order_is_refused():
    swapped = (NUMBER_KINDS[1], NUMBER_KINDS[0]) + NUMBER_KINDS[2:]
    with pytest.raises(ImportError) as refused:
        check_order("NUMBER_KINDS", swapped, NUMBER_KINDS)
    assert str(swapped) in str(refused.value) and str(NUMBER_KINDS) in str(refused.value)
    with pytest.raises(ImportError, match="older than this check"):
        check_order("FAILED_KINDS", None, CHECKED)


def test_importing_with_a_module_of_another_order_fails():
    """The check does run at import: a `_speedups` whose FAILED_KINDS are swapped (its other
    functions unused before the check) stops `import watcher.detect`."""
    code = (
        "import sys, types\n"
        "fake = types.ModuleType('watcher.detect._speedups')\n"
        "fake.__getattr__ = lambda name: (lambda *args: 0)\n"
        f"fake.NUMBER_KINDS = {NUMBER_KINDS!r}\n"
        f"fake.FAILED_KINDS = {tuple(reversed(CHECKED))!r}\n"
        "sys.modules[fake.__name__] = fake\n"
        "import watcher.detect\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_PURE_PYTHON"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "ImportError: watcher.detect._speedups gives FAILED_KINDS in the order ('rpps', 'siret', 'nir')" in result.stderr


@st.composite
def rough_bodies(draw) -> str:
    """Bodies the pattern accepts but the finer checks may not (Corsica 20 after 1976,
    overseas 970, commune 000...)."""
    place = draw(st.sampled_from(["20", "97", "98", "99", "2A", "2B", "01", "96", "19"]))
    commune = draw(st.sampled_from(["000", "001", "700", "899", "990"]))
    month = draw(st.sampled_from(["01", "12", "20", "30", "42", "50", "99"]))
    return f"{draw(st.sampled_from('1234'))}{draw(st.integers(0, 99)):02d}{month}{place}{commune}{draw(st.integers(1, 999)):03d}"


@st.composite
def nir_texts(draw) -> str:
    """Several NIR-like numbers (valid, wrong key, lower-case 2a, cut short, glued to digits)
    with any separators between the groups and around them."""
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        body = draw(st.one_of(bodies(), rough_bodies()))
        key = nir_key(body)
        key = draw(st.sampled_from([key, key, (key + draw(st.integers(1, 96))) % 100]))
        groups = [body[0], body[1:3], body[3:5], body[5:7], body[7:10], body[10:13], f"{key:02d}"]
        if draw(st.booleans()):
            groups[3] = groups[3].lower()
        if draw(st.integers(0, 9)) == 0:
            groups = groups[: draw(st.integers(1, 6))]
        style = draw(st.sampled_from(BODY_SEPARATORS))          # one style, sometimes broken
        noisy = st.sampled_from(BODY_SEPARATORS + KEY_SEPARATORS + OTHER)
        text = groups[0]
        for group in groups[1:-1]:
            text += (draw(noisy) if draw(st.integers(0, 9)) == 0 else style) + group
        if len(groups) == 7:
            text += draw(st.sampled_from(KEY_SEPARATORS + OTHER[:3])) + groups[-1]
        if draw(st.integers(0, 3)) == 0:                    # as a number, thousands grouped
            digits = f"{body}{key:02d}"
            triples = [digits[i:i + 3] for i in range(0, 15, 3)]
            triples = triples[:draw(st.integers(3, 5))] + draw(st.sampled_from([[], [], ["123"], ["4"]]))
            thousands = draw(st.sampled_from(THOUSANDS_SEPARATORS))
            text = triples[0] + "".join((draw(noisy) if draw(st.integers(0, 9)) == 0 else thousands) + t
                                        for t in triples[1:])
        before = draw(st.sampled_from(["", " ", "7", "NIR ", "A", "2", "\n", "'", "5 ", "5.", "12,"]))
        after = draw(st.sampled_from(["", " ", "7", "3 ", "A", "\n", "'", ";", " 123", ".456", ",7"]))
        parts.append(before + text + after)
    return "".join(parts)


@SETTINGS
@given(text=nir_texts(), cut=st.tuples(st.integers(0, 200), st.integers(0, 200)))
def test_compiled_nir_scan_equals_the_python_path(text, cut):
    buf = text.encode()
    lo, hi = sorted(min(c, len(buf)) for c in cut)
    assert_same(buf)
    assert_same(buf, lo, hi)


THOUSANDS_SEPARATORS = [" ", ".", ",", "\u00a0", "-", "\u202f"]


def _seeded_candidate(rng: random.Random) -> str:
    """One NIR-like number over the whole space the pattern accepts, written in any form."""
    place = rng.choice(["20", "97", "98", "99", "2A", "2B", "2a", "01", "19", "96", f"{rng.randint(1, 99):02d}"])
    commune = rng.choice(["000", "001", "700", "899", "990", f"{rng.randint(0, 999):03d}"])
    month = rng.choice(["01", "12", "20", "30", "42", "50", "99", f"{rng.randint(1, 99):02d}"])
    year = rng.choice([0, 75, 76, 99, rng.randint(0, 99)])
    body = f"{rng.choice('1234')}{year:02d}{month}{place}{commune}{rng.randint(1, 999):03d}"
    key = nir_key(body.upper()) if rng.random() < 0.7 else rng.randint(0, 99)
    if rng.random() < 0.2:                              # as a number, thousands grouped
        digits = f"{body}{key:02d}"
        return rng.choice(THOUSANDS_SEPARATORS[:4]).join(digits[i:i + 3] for i in range(0, 15, 3))
    groups = [body[0], body[1:3], body[3:5], body[5:7], body[7:10], body[10:13]]
    style = rng.choice(BODY_SEPARATORS)
    text = groups[0] + "".join(
        (rng.choice(KEY_SEPARATORS + OTHER) if rng.random() < 0.05 else style) + g for g in groups[1:]
    )
    return text + rng.choice(KEY_SEPARATORS + OTHER[:3]) + f"{key:02d}"


def test_compiled_equals_python_on_many_seeded_candidates():
    rng = random.Random(20240205)
    candidates = [_seeded_candidate(rng) for _ in range(30_000)]
    buf = "".join(rng.choice(["\n", " ", ";", "|", "x", "7", "'"]) + c for c in candidates).encode()
    python = found("nir", False, buf, 0, len(buf))
    assert len(python) > 5_000                          # the sample does exercise the checks
    assert found("nir", True, buf, 0, len(buf)) == python


@SETTINGS
@given(data=st.binary(max_size=400))
def test_compiled_nir_scan_on_arbitrary_bytes(data):
    assert_same(data)


def nirs(text: str) -> list[str]:
    strict, loose, *_ = speedups.scan_numbers(text.encode(), 0, len(text.encode()))
    assert all(not v.startswith("~") for v in strict) and all(v.startswith("~") for v in loose)
    return sorted(strict + loose)


def test_compiled_scan_finds_every_form_and_marks_the_rarer_ones():
    corsica = f"2841219123456{nir_key('2841219123456'):02d}"     # key computed with 2A = 19
    rarer = f"3841275123456{nir_key('3841275123456'):02d}"
    text = f"1 84 12 75 123 456 40;x 2.84.12.2a.123.456.{corsica[13:]};\"1841275123457\", \"{nir_key('1841275123457'):02d}\" {rarer}"
    assert nirs(text) == sorted([
        "184127512345640", "284122A123456" + corsica[13:], f"1841275123457{nir_key('1841275123457'):02d}", "~" + rarer])
    assert nirs("11841275123456 40") == []          # inside a longer number
    assert nirs("1841275123456 41") == []           # wrong key


def _luhn_complete(digits: str) -> str:
    return next(digits + d for d in "0123456789" if luhn_ok_py(digits + d))


def _seeded_number(rng: random.Random) -> str:
    """A SIRET, SIREN, RPPS or phone number, valid or not, in one of its written forms."""
    kind = rng.choice(["siret", "siren", "rpps", "phone", "poste"])
    if kind in ("siret", "siren", "poste"):
        siren = "356000000" if kind == "poste" else _luhn_complete("".join(rng.choices("0123456789", k=8)))
        number = siren if kind == "siren" else _luhn_complete(siren + "".join(rng.choices("0123456789", k=4)))
        if rng.random() < 0.3:
            number = number[:-1] + rng.choice("0123456789")
        groups = [number[i:i + 3] for i in range(0, 9, 3)] + ([number[9:]] if len(number) > 9 else [])
        sep = rng.choice(["", " ", ".", " ", "-"])
        return "".join((sep if i and rng.random() < 0.9 else rng.choice(["", " ", "."])) + g for i, g in enumerate(groups))
    if kind == "rpps":
        number = _luhn_complete("10" + "".join(rng.choices("0123456789", k=8)))
        return number if rng.random() < 0.7 else number[:-1] + rng.choice("0123456789")
    prefix = rng.choice(["0", "0", "+33", "0033", "+33 (0)", "0033 ", "+33.", "+0", "33"])
    digits = rng.choice("123456789") + "".join(rng.choices("0123456789", k=8))
    pairs = [digits[1 + 2 * i:3 + 2 * i] for i in range(4)]
    sep = rng.choice(["", " ", ".", "-"])
    seps = [sep] * 4 if rng.random() < 0.8 else rng.choices(["", " ", ".", "-"], k=4)
    lead = rng.choice(["", "", " ", "-"]) if prefix != "0" else ""
    return prefix + lead + digits[0] + "".join(s + p for s, p in zip(seps, pairs, strict=False))


def test_compiled_numbers_equal_python_on_many_seeded_candidates():
    rng = random.Random(1977)
    texts = [_seeded_number(rng) for _ in range(20_000)]
    buf = "".join(rng.choice(["\n", " ", ";", "|", "x", "7", "+", "'", "(", "SIREN "]) + t for t in texts).encode()
    for kind in ("siret", "rpps", "phone"):
        python = found(kind, False, buf, 0, len(buf))
        assert len(python) > 1_000, kind                   # the sample does exercise the checks
        assert found(kind, True, buf, 0, len(buf)) == python, kind
    for lo in range(0, len(buf), 99_991):                  # windows cut anywhere
        assert_same(buf[lo:lo + 5_000], 100, 4_000)


@settings(max_examples=500, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_compiled_luhn_equals_python(digits):
    assert speedups.luhn_ok(digits) == luhn_ok_py(digits)


@settings(max_examples=500, deadline=None)
@given(candidate=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=15, max_size=36))
def test_compiled_iban_length_equals_python(candidate):
    assert speedups.iban_length(candidate) == valid_length_py(candidate)


def test_compiled_iban_length_finds_real_ibans():
    rng = random.Random(5)
    for _ in range(200):
        account = "".join(rng.choice("0123456789") for _ in range(23))
        check = 98 - int(account + "152700") % 97          # FR = 15 27
        iban = f"FR{check:02d}{account}"
        assert speedups.iban_length(iban) == len(iban) == valid_length_py(iban)
        assert speedups.iban_length(iban + "ABCD") == valid_length_py(iban + "ABCD") >= len(iban)


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet="ab \t\r\n;", max_size=80))
def test_compiled_count_lines_equals_python(text):
    data = text.encode()
    assert speedups.count_lines(data) == count_lines_py(data)


def test_whole_scanners_agree_on_a_mixed_document():
    """Every detector's values, compiled number pass or not, on an extract and a log."""
    rng = random.Random(7)
    lines = ["nom;prenom;nir;cle;mutuelle;telephone;siret;rpps"]
    for _ in range(2_000):
        lines.append(";".join([
            "DUPONT", "Jean", _seeded_candidate(rng), f"{rng.randint(0, 99):02d}", "Viamedis",
            _seeded_number(rng), _seeded_number(rng), _seeded_number(rng),
        ]))
    data = ("\n".join(lines) + "\nNIR : 1841275123456 et SIREN 732829320, tel 06 12 34 56 78, IBAN FR76 3000 6000 0112 3456 7890 189\n").encode()
    results = []
    for compiled in (True, False):
        detection = Scanner(compiled=compiled).start()
        detection.scan_text(data)
        results.append(detection.values)
    assert results[0] == results[1]
    assert all(results[0][kind] for kind in NUMBER_DETECTORS)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.tuples(st.integers(0, 130), st.sampled_from(["\n", "\r\n", "\n  \t", " ", "\r", "\n.", "-", "="])), max_size=6))
def test_compiled_base64_trigger_equals_hyperscan(parts):
    data = "".join("QUJD+/9z" * (length // 8) + "x" * (length % 8) + sep for length, sep in parts).encode()
    assert speedups.base64_run(data) == triggered_py(data)


def test_compiled_base64_trigger_examples():
    line = b"A" * 56
    assert speedups.base64_run(b"x" * 120) and not speedups.base64_run(b"x" * 119 + b" " + b"x" * 119)
    assert speedups.base64_run(line + b"\r\n \t" + line)
    assert not speedups.base64_run(line[1:] + b"\n" + line) and not speedups.base64_run(line + b"\n.\n" + line)


def test_compiled_base64_trigger_at_every_offset():
    """The C trigger probes every 56th byte: a block must be seen wherever it starts."""
    for offset in range(0, 130):
        for length in (55, 56, 57, 119, 120):
            for tail in (b"", b"\n" + b"B" * 56, b"\r\n\t" + b"B" * 55 + b".", b" " + b"B" * 56):
                data = b". " * (offset // 2) + b"-" * (offset % 2) + b"A" * length + tail + b"."
                assert speedups.base64_run(data) == triggered_py(data), (offset, length, tail)


@settings(max_examples=1000, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf", b"\xc0\xaf",
                              b"\xf0\x9f\x98\x80", b"\xef\xbf\xbf", b"\xc3", b"\x80", b"abcdefgh"]), max_size=12).map(b"".join),
))
def test_compiled_utf8_validation_equals_decode(data):
    assert speedups.utf8_valid(data) == _decodes(data)


def test_compiled_ibans_equal_python():
    """The compiled IBANs against iban.py's Python path on seeded IBANs, cut, glued, grouped,
    most of their country's length, some not (refused by both)."""
    from watcher.detect.iban import country_lengths

    rng = random.Random(11)
    parts = []
    for _ in range(3_000):
        country = rng.choice(["FR", "DE", "GB", "MC", "BF"])
        size = country_lengths().get(country, 28) - 4 if rng.random() < 0.9 else rng.randint(11, 32)
        account = "".join(rng.choices("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=size))
        check = 98 - int("".join(str(int(c, 36)) for c in account + country + "00")) % 97
        iban = f"{country}{check:02d}{account}"
        if rng.random() < 0.3:
            iban = iban[:-1] + rng.choice("0123456789")
        if rng.random() < 0.5:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        parts.append(rng.choice([" ", "\n", "x", ";", "IBAN: "]) + iban + rng.choice(["", " ", "X", " 1234", ".", "\n"]))
    buf = "".join(parts).encode()
    python = found("iban", False, buf, 0, len(buf))
    assert len(python) > 1_000 and found("iban", True, buf, 0, len(buf)) == python
    at_start = b"FR7630006000011234567890189 fin"
    assert found("iban", True, at_start, 0, len(at_start)) == {"FR7630006000011234567890189"}
    for lo in range(0, len(buf), 9_973):                   # windows cut anywhere
        assert found("iban", True, buf, lo, lo + 3_000) == found("iban", False, buf, lo, lo + 3_000)
