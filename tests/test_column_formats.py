"""Column formats analysts meet (issue 11, part 3): a key column a spreadsheet stored as a
number (`7` for `07`), NIRs in scientific notation (`1,84127512345678E+14`), and a NIR
column whose digits the notation lost (`1,84127E+14`). Through the real Analyzer."""

from __future__ import annotations

import random

import pytest

from tests.support.nirs import random_body, random_nir, with_key
from watcher.detect.shape import Shape, scientific_nir


def _low_key_bodies(rng: random.Random, count: int) -> list[str]:
    """Bodies whose key is below 10: a spreadsheet writes it as one digit."""
    bodies: list[str] = []
    while len(bodies) < count:
        body = random_body(rng, strict=True)
        if int(with_key(body)[13:]) < 10:
            bodies.append(body)
    return bodies


@pytest.mark.parametrize("layout", ["nir;cle;prenom", "nir;prenom;cle"])
def test_keys_stored_as_numbers_are_recombined(analyzer, rng, layout):
    """The measured case: 0 of 5 when every key is below 10 and `cle` follows `nir`."""
    bodies = _low_key_bodies(rng, 5)
    rows = []
    for i, body in enumerate(bodies):
        cells = {"nir": body, "cle": str(int(with_key(body)[13:])), "prenom": f"P{i}"}
        rows.append(f"N{i};" + ";".join(cells[c] for c in layout.split(";")))
    data = (f"nom;{layout}\n" + "\n".join(rows) + "\n").encode()
    report = analyzer.analyze_bytes(data, "export.csv", reveal=True)
    assert set(report.revealed["nir"]) == {with_key(b) for b in bodies}
    assert report.records == 5
    assert report.severity == "high"


def test_keys_stored_as_numbers_in_a_bigger_extract(analyzer, rng):
    """Keys as numbers: one digit below 10, two above; a wrong one-digit key counts nothing."""
    bodies = [random_body(rng, strict=True) for _ in range(200)] + _low_key_bodies(rng, 3)
    keys = [str(int(with_key(b)[13:])) for b in bodies]
    keys[-1] = str((int(keys[-1]) % 9) + 1)                    # a wrong one-digit key
    data = ("nom;nir;cle;mutuelle\n" + "".join(f"N{i};{b};{k};MGEN\n" for i, (b, k) in enumerate(zip(bodies, keys, strict=False)))).encode()
    report = analyzer.analyze_bytes(data, "export.csv", reveal=True)
    assert set(report.revealed["nir"]) == {with_key(b) for b in bodies[:-1]}
    assert report.records == 203
    assert report.severity == "critical"


def test_sql_keys_stored_as_numbers(analyzer, rng):
    """An SQL dump's integer key column (`..., '1841275123456', 7)`)."""
    bodies = _low_key_bodies(rng, 5)
    rows = ",\n".join(f"({i}, 'N{i}', '{b}', {int(with_key(b)[13:])})" for i, b in enumerate(bodies))
    data = f"INSERT INTO assures (id, nom, nir, cle) VALUES\n{rows};\n".encode()
    report = analyzer.analyze_bytes(data, "dump.sql", reveal=True)
    assert set(report.revealed["nir"]) == {with_key(b) for b in bodies}


def _excel(nir: str, comma: bool, digits: int = 15) -> str:
    """How a spreadsheet writes the number: scientific notation, trailing zeros dropped,
    `digits` significant digits (15: all of them)."""
    mantissa = f"{nir[0]}.{nir[1:digits]}".rstrip("0").rstrip(".")
    text = f"{mantissa}E+14"
    return text.replace(".", ",") if comma else text


def _numeric_nir(rng: random.Random) -> str:
    """A NIR a spreadsheet can hold as a number (not Corsica's 2A/2B)."""
    while not (nir := random_nir(rng, strict=True)).isdigit():
        pass
    return nir


def _people_with_trailing_zero_keys(rng: random.Random, count: int) -> list[str]:
    """NIRs, some with a key ending in 0 (the notation then drops a digit)."""
    people = [_numeric_nir(rng) for _ in range(count)]
    while sum(p.endswith("0") for p in people) < 3:
        nir = _numeric_nir(rng)
        if nir.endswith("0"):
            people[sum(p.endswith("0") for p in people)] = nir
    return people


FORMS = {
    "comma_in_semicolon_csv": (";", True, ""),
    "comma_in_quoted_comma_csv": (",", True, '"'),
    "dot_in_comma_csv": (",", False, ""),
    "dot_in_semicolon_csv": (";", False, ""),
}


@pytest.mark.parametrize("delimiter, comma, quote", FORMS.values(), ids=FORMS.keys())
def test_scientific_notation_with_all_digits(analyzer, rng, delimiter, comma, quote):
    people = _people_with_trailing_zero_keys(rng, 12)
    cells = [_excel(n, comma) for n in people]
    assert any(len(c.replace(",", ".").split("E")[0]) == 15 for c in cells)        # a dropped zero
    rows = "".join(delimiter.join([f"N{i}", f"{quote}{c}{quote}", "MGEN"]) + "\n" for i, c in enumerate(cells))
    data = (delimiter.join(["nom", "num_secu", "mutuelle"]) + "\n" + rows).encode()
    report = analyzer.analyze_bytes(data, "export.csv", reveal=True)
    assert set(report.revealed["nir"]) == set(people)
    assert report.records == 12
    assert report.severity == "critical"


def test_scientific_notation_under_any_header(analyzer, rng):
    """A column of such values is enough (the key checks each one), a header is not needed."""
    people = _people_with_trailing_zero_keys(rng, 6)
    data = ("ref;valeur;site\n" + "".join(f"R{i};{_excel(n, True)};Lyon\n" for i, n in enumerate(people))).encode()
    report = analyzer.analyze_bytes(data, "x.csv", reveal=True)
    assert set(report.revealed["nir"]) == set(people)


def test_scientific_notation_outside_a_column_does_not_count(analyzer, rng):
    nir = _numeric_nir(rng)
    prose = f"Le numéro {_excel(nir, True)} figure au dossier.\n"
    assert analyzer.analyze_bytes(prose.encode(), "note.txt").counts["nir"] == 0
    # one such value among amounts: not a column of them
    rows = "".join(f"N{i};{i * 12},5\n" for i in range(9)) + f"N9;{_excel(nir, True)}\n"
    assert analyzer.analyze_bytes(("nom;montant\n" + rows).encode(), "x.csv").counts["nir"] == 0


def test_scientific_notation_with_a_wrong_key_does_not_count(analyzer, rng):
    people = [_numeric_nir(rng) for _ in range(5)]
    wrong = people[0][:13] + f"{(int(people[0][13:]) % 97) + 1:02d}"
    cells = [_excel(n, True) for n in [wrong] + people[1:]]
    data = ("nom;nir\n" + "".join(f"N{i};{c}\n" for i, c in enumerate(cells))).encode()
    report = analyzer.analyze_bytes(data, "x.csv", reveal=True)
    assert set(report.revealed["nir"]) == set(people[1:])


@pytest.mark.parametrize("comma", [True, False])
@pytest.mark.parametrize("count, severity", [(12, "critical"), (5, "low")])
def test_lost_digits_make_a_nir_column(analyzer, rng, comma, count, severity):
    """`1,84127E+14`: no NIR can be read back, but it is a NIR column (policy: >= 10 records
    with a NIR column is critical; below, no NIR: the insurer name alone, low)."""
    people = [_numeric_nir(rng) for _ in range(count)]
    delimiter = ";" if comma else ","
    rows = "".join(delimiter.join([f"N{i}", _excel(n, comma, digits=6), "MGEN"]) + "\n" for i, n in enumerate(people))
    data = (delimiter.join(["nom", "nir", "mutuelle"]) + "\n" + rows).encode()
    report = analyzer.analyze_bytes(data, "export.csv")
    assert report.counts["nir"] == 0
    assert report.records == count
    assert report.severity == severity
    assert any("NIR column with lost digits" in r for r in report.reasons), report.reasons


def test_lost_digits_under_a_header_naming_nothing(analyzer, rng):
    people = [_numeric_nir(rng) for _ in range(12)]
    data = ("nom;numero;ville\n" + "".join(f"N{i};{_excel(n, True, digits=6)};Lyon\n" for i, n in enumerate(people))).encode()
    report = analyzer.analyze_bytes(data, "export.csv")
    assert report.severity == "critical"
    assert any("NIR column with lost digits" in r for r in report.reasons), report.reasons


def test_imei_numbers_in_scientific_notation_are_not_a_nir_column(analyzer):
    rng = random.Random(3)
    imeis = [f"35{rng.randrange(10 ** 12, 10 ** 13)}" for _ in range(12)]
    data = ("modele;imei;site\n" + "".join(f"M{i};{_excel(n, True, digits=6)};Lyon\n" for i, n in enumerate(imeis))).encode()
    report = analyzer.analyze_bytes(data, "parc.csv")
    assert report.severity == "none"
    assert not any("NIR" in r for r in report.reasons)


def test_shape_of_a_lost_digit_column():
    shape = Shape(format="csv", delimiter=";", records=12, lost_digits=["numero"])
    assert shape.nir_column
    assert shape.describe() == "semicolon CSV sample of 12 records with a NIR column with lost digits (scientific notation)"
    assert not Shape(format="csv", delimiter=";", records=12).nir_column


def test_scientific_nir(rng):
    nir = _numeric_nir(rng)
    assert scientific_nir(_excel(nir, True)) == nir
    assert scientific_nir(_excel(nir, False)) == nir
    assert scientific_nir(_excel(nir, True, digits=6)) is None
    assert scientific_nir(nir) is None


# -- fixed-width records: a NIR field glued to the fields around it --------------------------------

def _records(rng: random.Random, people: list[str], beneficiaries: list[str], newline: str = "\n") -> str:
    """Flat-file records as a mainframe writes them: fields side by side, no separator."""
    return "".join(f"100{i:07d}{n}{rng.randint(10**7, 10**8 - 1)}{b}19841201{'MGEN':<10}{rng.randint(0, 10**9):09d}{newline}"
                   for i, (n, b) in enumerate(zip(people, beneficiaries, strict=True)))


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_nir_fields_of_fixed_width_records_are_read(analyzer, rng, newline):
    """Glued to other digits a NIR is never read (a random window passes 1 time in 300), so a
    flat file showed none; two fields that hold a valid NIR on most records are read whole."""
    people = [random_nir(rng, strict=True) for _ in range(40)] + [with_key("284122A123456")]     # Corsica too
    beneficiaries = [random_nir(rng, strict=True) for _ in range(len(people))]
    report = analyzer.analyze_bytes(_records(rng, people, beneficiaries, newline).encode(), "flat.txt", reveal=True)
    assert set(report.revealed["nir"]) == set(people) | set(beneficiaries)
    assert report.severity == "critical" and not report.errors


def test_a_fixed_width_file_larger_than_a_chunk_is_read_to_its_end(analyzer, rng, tmp_path):
    people = [random_nir(rng, strict=True) for _ in range(14_000)]
    path = tmp_path / "flat.txt"
    path.write_text(_records(rng, people, people[::-1]))
    assert path.stat().st_size > 1024 * 1024
    assert analyzer.analyze_path(path).counts["nir"] == len(set(people))


def test_long_numbers_and_half_valid_columns_are_no_nir_field(analyzer, rng):
    noise = "".join("".join(str(rng.randint(0, 9)) for _ in range(80)) + "\n" for _ in range(300))
    assert analyzer.analyze_bytes(noise.encode(), "ids.txt").counts["nir"] == 0
    people = [random_nir(rng, strict=True) for _ in range(40)]
    half = [n if i % 2 else f"{rng.randint(10**14, 10**15 - 1)}" for i, n in enumerate(people)]
    assert analyzer.analyze_bytes(_records(rng, half, half).encode(), "half.txt").counts["nir"] == 0


def test_a_big_fixed_width_file_is_not_cut_into_slices(analyzer, rng, tmp_path):
    """`watcher scan --jobs 2` cuts big text files into slices scanned raw: a file with NIR
    fields is read whole instead, so its fields are read (`extract.plain_text`)."""
    from watcher.parallel import ScanPool

    people = [random_nir(rng, strict=True) for _ in range(3000)]
    path = tmp_path / "flat.txt"
    path.write_text(_records(rng, people, people[::-1]))
    with ScanPool(analyzer, 2, split_at=64 * 1024, slice_size=64 * 1024) as pool:
        report = next(outcome for _, outcome in pool.reports([path], analyzer.analyze_path))
    assert report.counts["nir"] == len(set(people))


def test_fewer_than_five_records_make_no_field():
    from watcher.extract.fixed import nir_fields

    people = [random_nir(random.Random(i), strict=True) for i in range(8)]
    records = "".join(f"100{i:07d}{n}19841201\n" for i, n in enumerate(people)).encode()
    assert nir_fields(records) == [10]
    few = b"".join(records.splitlines(keepends=True)[:3]) + b"1" * 60 + b"\n" + b"2" * 61 + b"\n" + b"3" * 62 + b"\n"
    assert nir_fields(few) == []
