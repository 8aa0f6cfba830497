"""The compiled helpers (`watcher/detect/_speedups.c`) against their Python equivalents.

`make test` builds the extension (gcc is part of the set-up), so its absence is a failure
here, not a silent fall back to the slower path.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_properties import bodies
from watcher.detect.compiled import speedups
from watcher.detect.engine import Engine
from watcher.detect.iban import valid_length_py
from watcher.detect.luhn import luhn_ok_py
from watcher.detect.nir import NirDetector, nir_key
from watcher.detect.shape import count_lines_py

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPILED, PYTHON = NirDetector(compiled=True), NirDetector(compiled=False)
ENGINES = {id(COMPILED): Engine([COMPILED]), id(PYTHON): Engine([PYTHON])}
# Separators inside the body, between body and key, and bytes that are neither.
BODY_SEPARATORS = ["", " ", ".", "-", "\xa0"]
KEY_SEPARATORS = BODY_SEPARATORS + ["/", " / ", ";", ",", "\t", "|", "; ", '";"', "', '", '" , "', "'|'"]
OTHER = ["x", "  ", "\n", "/", "'", '"', "..", ";;", " ; ; "]

def values(detector: NirDetector, buf: bytes, lo: int, hi: int) -> set[str]:
    hits = ENGINES[id(detector)].hits(buf, lo, hi)[0]
    found = set(detector.find(buf, hits, (lo, hi), set())) if hits else set()
    return found | set(detector.scan(buf, (lo, hi)))


def test_the_extension_is_built():
    assert speedups is not None, "watcher.detect._speedups missing: setup.py did not build it (no C compiler?)"
    assert COMPILED.compiled and not PYTHON.compiled
    assert len(COMPILED.patterns()) == 1 and len(PYTHON.patterns()) == 2


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
        before = draw(st.sampled_from(["", " ", "7", "NIR ", "A", "2", "\n", "'"]))
        after = draw(st.sampled_from(["", " ", "7", "3 ", "A", "\n", "'", ";"]))
        parts.append(before + text + after)
    return "".join(parts)


@SETTINGS
@given(text=nir_texts(), cut=st.tuples(st.integers(0, 200), st.integers(0, 200)))
def test_compiled_nir_scan_equals_the_python_path(text, cut):
    buf = text.encode()
    lo, hi = sorted(min(c, len(buf)) for c in cut)
    assert values(COMPILED, buf, 0, len(buf)) == values(PYTHON, buf, 0, len(buf))
    assert values(COMPILED, buf, lo, hi) == values(PYTHON, buf, lo, hi)


def _seeded_candidate(rng: random.Random) -> str:
    """One NIR-like number over the whole space the pattern accepts, written in any form."""
    place = rng.choice(["20", "97", "98", "99", "2A", "2B", "2a", "01", "19", "96", f"{rng.randint(1, 99):02d}"])
    commune = rng.choice(["000", "001", "700", "899", "990", f"{rng.randint(0, 999):03d}"])
    month = rng.choice(["01", "12", "20", "30", "42", "50", "99", f"{rng.randint(1, 99):02d}"])
    year = rng.choice([0, 75, 76, 99, rng.randint(0, 99)])
    body = f"{rng.choice('1234')}{year:02d}{month}{place}{commune}{rng.randint(1, 999):03d}"
    key = nir_key(body.upper()) if rng.random() < 0.7 else rng.randint(0, 99)
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
    python = values(PYTHON, buf, 0, len(buf))
    assert len(python) > 5_000                          # the sample does exercise the checks
    assert values(COMPILED, buf, 0, len(buf)) == python


@SETTINGS
@given(data=st.binary(max_size=400))
def test_compiled_nir_scan_on_arbitrary_bytes(data):
    assert values(COMPILED, data, 0, len(data)) == values(PYTHON, data, 0, len(data))


def test_compiled_scan_finds_every_form_and_marks_the_rarer_ones():
    corsica = f"2841219123456{nir_key('2841219123456'):02d}"     # key computed with 2A = 19
    rarer = f"3841275123456{nir_key('3841275123456'):02d}"
    text = f"1 84 12 75 123 456 40;x 2.84.12.2a.123.456.{corsica[13:]};\"1841275123457\", \"{nir_key('1841275123457'):02d}\" {rarer}"
    assert sorted(speedups.nir_scan(text.encode(), 0, len(text))) == sorted([
        "184127512345640", "284122A123456" + corsica[13:], f"1841275123457{nir_key('1841275123457'):02d}", "~" + rarer])
    assert speedups.nir_scan(b"11841275123456 40", 0, 20) == []          # inside a longer number
    assert speedups.nir_scan(b"1841275123456 41", 0, 20) == []           # wrong key


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
