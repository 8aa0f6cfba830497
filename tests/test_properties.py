"""Property-based tests (hypothesis): NIR forms in random text, wrong keys, arbitrary bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.fr import nir as stdnum_nir

from conftest import MONTHS, nir_forms, values_of, with_key
from watcher.detect import nir as nir_rules

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def bodies(draw) -> str:
    """A structure-valid 13-character body, every kind of place."""
    sex = draw(st.sampled_from("1234"))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from(MONTHS))
    order = draw(st.integers(1, 999))
    commune = draw(st.integers(1, 990))
    kind = draw(st.sampled_from(["mainland", "corsica", "corsica20", "overseas", "abroad"]))
    if kind == "mainland":
        place = f"{draw(st.integers(1, 95).filter(lambda d: d != 20)):02d}{commune:03d}"
    elif kind == "corsica":
        place = f"{draw(st.sampled_from(['2A', '2B']))}{commune:03d}"
    elif kind == "corsica20":
        year = draw(st.integers(0, 75))
        place = f"20{commune:03d}"
    elif kind == "overseas":
        place = f"{draw(st.integers(971, 989))}{draw(st.integers(1, 99)):02d}"
    else:
        place = f"99{draw(st.integers(1, 999)):03d}"
    return f"{sex}{year:02d}{month}{place}{order:03d}"


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
