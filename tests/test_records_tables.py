"""Records are records (issue 11, part 2): a table's count stops at the table, a JSON
document counts the objects of its largest array of objects. Through the real Analyzer, so
records and severity are checked end to end."""

from __future__ import annotations

import json
import random

import pytest

from tests.support.nirs import random_nir

HEADER = "nom;prenom;nir;mutuelle"


def _rows(people: list[str], delimiter: str = ";") -> str:
    return "".join(delimiter.join([f"NOM{i}", f"P{i}", nir, "MGEN"]) + "\n" for i, nir in enumerate(people))


def _chunked(data: bytes, size: int):
    return iter(data[i:i + size] for i in range(0, len(data), size))


def _pre_page(people: list[str], after: str) -> bytes:
    return (f"<html><body><h1>Extrait</h1><pre>{HEADER}\n{_rows(people)}</pre>"
            f"<p>{after}</p></body></html>").encode()


def test_nine_rows_and_a_sentence_are_nine_records_and_high(analyzer, rng):
    """The measured case: 9 rows in a <pre> and one sentence were 10 records, critical."""
    people = [random_nir(rng, strict=True) for _ in range(9)]
    report = analyzer.analyze_bytes(_pre_page(people, "Contactez-moi pour le reste, 10 000 lignes disponibles."),
                                    "page.html")
    assert report.records == 9
    assert report.counts["nir"] == 9
    assert report.severity == "high"


def test_ten_rows_and_a_sentence_are_still_critical(analyzer, rng):
    people = [random_nir(rng, strict=True) for _ in range(10)]
    report = analyzer.analyze_bytes(_pre_page(people, "Contactez-moi pour le reste."), "page.html")
    assert report.records == 10
    assert report.severity == "critical"


TRAILERS = {
    "sentence": "Contactez-moi pour le reste, 10 000 lignes disponibles.\n",
    "sentence_with_delimiter": "Le reste sur demande; paiement en BTC uniquement.\n",
    "footer": "\n\n-- fin de l'extrait --\nTotal : 9 lignes\n",
    "blank_lines": "\n\n   \n\t\n",
    "signature_no_newline": "\n-- \nvendeur_x",
    "quoted_prose": 'Il a dit "pas de remise"; vraiment.\n',
}


@pytest.mark.parametrize("trailer", TRAILERS.values(), ids=TRAILERS.keys())
@pytest.mark.parametrize("chunk", [3, 64, 1 << 20])
def test_what_follows_a_table_is_not_records(analyzer, rng, trailer, chunk):
    people = [random_nir(rng, strict=True) for _ in range(9)]
    data = (f"{HEADER}\n{_rows(people)}{trailer}").encode()
    report = analyzer.analyze_chunks(_chunked(data, chunk), "export.txt")
    assert report.records == 9
    assert report.counts["nir"] == 9
    assert report.severity == "high"


def test_a_messy_row_inside_the_table_stays_a_record(analyzer, rng):
    people = [random_nir(rng, strict=True) for _ in range(9)]
    rows = _rows(people).splitlines(keepends=True)
    data = (HEADER + "\n" + "".join(rows[:4]) + "ligne cassée\n" + "".join(rows[4:]) + "fin\n").encode()
    assert analyzer.analyze_bytes(data, "export.csv").records == 10


def test_a_header_naming_no_known_column_is_not_a_record(analyzer):
    rows = "".join(f"{1000 + i};Produit {i};{i * 3};2024-01-{i + 1:02d}\n" for i in range(9))
    report = analyzer.analyze_bytes(("reference;designation;quantite;jour\n" + rows).encode(), "stock.csv")
    assert report.records == 9
    short = "".join(f"N{i};P{i};X{i};MGEN\n" for i in range(9))          # values all of one length
    assert analyzer.analyze_bytes(("a;b;c;d\n" + short).encode(), "x.csv").records == 9


def test_a_first_row_of_data_is_still_a_record(analyzer):
    rows = "".join(f"DUPONT{i};Jean;198{i}-01-02;Viamedis\n" for i in range(9))
    assert analyzer.analyze_bytes(rows.encode(), "x.csv").records == 9


@pytest.mark.parametrize("chunk", [1000, 65_536, 1 << 20])
def test_a_big_table_then_another_table_and_prose(analyzer, rng, chunk):
    """Thousands of rows, then a table of another width (more lines holding the delimiter
    than are read one by one) and a megabyte of prose, some of it quoted: the count is the
    first table's, whatever the chunking."""
    people = [random_nir(rng, strict=True) for _ in range(3000)]
    quoted = "".join(f'"NOM{i}";"P {i}; fils";"{n}";"MGEN"\n' for i, n in enumerate(people[:5]))
    other = "".join(f"total;{i};eur\n" for i in range(300))
    prose = "".join(f'Ligne {i} du journal, "citée" ou pas, rien de tabulaire.\n' for i in range(20_000))
    data = (f"{HEADER}\n{_rows(people)}{quoted}\n{other}{prose}").encode()
    assert len(data) > 1 << 20
    report = analyzer.analyze_chunks(_chunked(data, chunk), "dump.txt")
    assert report.records == 3005
    assert report.counts["nir"] == 3000


def _api_response(people: list[str], indent: int | None) -> bytes:
    beneficiaries = [{"nom": f"NOM{i}", "prenom": f"P{i}", "nir": n, "organisme": "MGEN",
                      "garanties": [{"code": "OPT", "nom": "Optique"}]} for i, n in enumerate(people)]
    body = {"status": "ok", "meta": {"nom": "export", "page": 1, "pages": [{"nom": "1"}, {"nom": "2"}]},
            "data": {"beneficiaires": beneficiaries}}
    return json.dumps(body, indent=indent, ensure_ascii=False).encode()


@pytest.mark.parametrize("indent", [None, 2])
def test_nested_json_counts_its_largest_array_of_objects(analyzer, rng, indent):
    """The measured case: `{"data": {"beneficiaires": [...1000 objects...]}}` was 1 record."""
    people = [random_nir(rng, strict=True) for _ in range(1000)]
    report = analyzer.analyze_bytes(_api_response(people, indent), "api.json")
    assert report.records == 1000
    assert report.counts["nir"] == 1000
    assert report.severity == "critical"


def test_nested_json_beyond_the_head_in_small_chunks(analyzer, rng):
    people = [random_nir(rng) for _ in range(5000)]
    data = _api_response(people, None)
    assert len(data) > 4 * 65_536
    report = analyzer.analyze_chunks(_chunked(data, 4096), "api.json")
    assert report.records == 5000


def test_one_member_with_a_list_of_guarantees_is_one_record(analyzer, rng):
    member = {"nom": "DUPONT", "prenom": "Jean", "nir": random_nir(rng, strict=True), "mutuelle": "MGEN",
              "garanties": [{"code": c, "libelle": c} for c in ("OPT", "DENT", "HOSP")]}
    report = analyzer.analyze_bytes(json.dumps(member).encode(), "member.json")
    assert report.records == 1
    assert any(r.startswith("health-data columns: nir") for r in report.reasons), report.reasons


def test_members_with_longer_lists_inside_count_as_members(analyzer, rng):
    members = [{"nom": f"N{i}", "nir": random_nir(rng), "mutuelle": "MGEN",
                "actes": [{"code": f"C{j}", "montant": j} for j in range(40)]} for i in range(30)]
    report = analyzer.analyze_bytes(json.dumps(members).encode(), "members.json")
    assert report.records == 30


def test_json_lines_still_count_lines(analyzer, rng):
    lines = "".join(json.dumps({"nom": f"N{i}", "nir": random_nir(rng), "soins": [{"a": 1}, {"a": 2}, {"a": 3}]}) + "\n"
                    for i in range(12))
    assert analyzer.analyze_bytes(lines.encode(), "x.jsonl").records == 12


def test_records_do_not_depend_on_the_chunking(analyzer):
    """Tables past the sniffed head, then rows, prose, blank lines, quotes and ragged lines,
    cut at random: the count is the reference's (non-blank lines up to the last row)."""
    rng = random.Random(11)
    head = "nom;prenom;ville\n" + "".join(f"N{i};P{i};V{i}\n" for i in range(7000))

    def is_row(line: str) -> bool:
        return line.count(";") >= 2 if '"' in line else line.count(";") == 2

    for _ in range(12):
        lines = []
        for _ in range(rng.randrange(1, 60)):
            kind = rng.random()
            if kind < 0.5:
                lines.append(f"N{rng.randrange(999)};P;V{rng.randrange(99)}")
            elif kind < 0.6:
                lines.append('"A;B";"C";D')
            elif kind < 0.8:
                lines.append(rng.choice(["texte libre", "a;b", "x;y;z;w", '"a;b" c', "A;B;C\r"]))
            else:
                lines.append(rng.choice(["", "  ", "\t\r"]))
        last = max((i for i, line in enumerate(lines) if is_row(line)), default=-1)
        expected = 7000 + sum(1 for line in lines[:last + 1] if line.strip(" \t\r"))
        data = (head + "\n".join(lines) + rng.choice(["", "\n"])).encode()
        for size in (7, 97, 4096, 1 << 20):
            assert analyzer.analyze_chunks(_chunked(data, size), "t.csv").records == expected, (size, lines)

