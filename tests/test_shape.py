"""Shape of a part: CSV dialects and header roles, JSON, JSON lines, SQL dumps, HTML tables."""

from __future__ import annotations

import csv
import json
import time

import pytest

from tests.support.nirs import random_nir
from watcher.detect.shape import header_role

ROWS = [
    ["DUPONT", "Jean", "1980-01-02", "Viamedis", "A123"],
    ["MARTIN", "Marie", "1975-03-04", "MGEN", "A124"],
    ["PETIT", "Luc", "1990-05-06", "Almerys", "A125"],
    ["DURAND", "Léa", "2001-07-08", "Aésio", "A126"],
]
HEADER = ["nom", "prenom", "date_naissance", "mutuelle", "num_adherent"]


def shape_of(scanner, text: str | bytes):
    detection = scanner.start()
    detection.scan_text(text.encode("utf-8") if isinstance(text, str) else text)
    assert len(detection.shapes) == 1
    return detection.shapes[0]


@pytest.mark.parametrize("delimiter, name", [(";", "semicolon"), (",", "comma"), ("\t", "tab"), ("|", "pipe")])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("trailing", [True, False])
def test_csv_dialects_headers_and_records(scanner, delimiter, name, newline, trailing):
    text = newline.join(delimiter.join(r) for r in [HEADER] + ROWS) + (newline if trailing else "")
    shape = shape_of(scanner, text)
    assert shape.format == "csv"
    assert shape.delimiter == delimiter
    assert shape.records == len(ROWS)
    assert shape.headers == HEADER
    assert shape.roles == {"nom": "nom", "prenom": "prenom", "date_naissance": "date_naissance",
                           "mutuelle": "mutuelle", "num_adherent": "adherent"}
    assert name in shape.describe()


def test_csv_without_header_counts_every_line(scanner):
    text = "".join(";".join(r) + "\n" for r in ROWS)
    shape = shape_of(scanner, text)
    assert shape.format == "csv"
    assert shape.records == len(ROWS)
    assert shape.roles == {}


def test_quoted_csv(scanner):
    text = 'nom,prenom,adresse\n"DUPONT","Jean","1, rue de la Paix"\n"MARTIN","Marie","2, rue Haute"\n"PETIT","Luc","3, place"\n'
    shape = shape_of(scanner, text)
    assert shape.format == "csv"
    assert shape.delimiter == ","
    assert shape.records == 3


def test_large_csv_records_counted_over_many_chunks(analyzer):
    rows = "".join(f"NOM{i};P{i};1980-01-01;MGEN;A{i}\n" for i in range(60_000))
    data = (";".join(HEADER) + "\n" + rows).encode()
    assert len(data) > 2 * 1024 * 1024
    assert analyzer.analyze_bytes(data, "big.csv").records == 60_000


@pytest.mark.parametrize("name, role", [
    ("Num_Sécu", "nir"), ("NIR", "nir"), ("nss", "nir"), ("numero_securite_sociale", "nir"), ("matricule", "nir"),
    ("Date de naissance", "date_naissance"), ("DDN", "date_naissance"), ("clé", "cle"), ("cle_nir", "cle"),
    ("Organisme", "mutuelle"), ("code_amc", "mutuelle"), ("RPPS", "rpps"), ("finess", "finess"), ("SIRET", "siret"),
    ("e-mail", "email"), ("courriel", "email"), ("Téléphone", "telephone"), ("IBAN", "iban"), ("commentaire", None),
    ("", None), ("montant", None),
])
def test_header_roles(name, role):
    assert header_role(name) == role


def test_json_array(scanner):
    records = [{"nom": f"N{i}", "prenom": f"P{i}", "nir": "x", "mutuelle": "MGEN"} for i in range(7)]
    for text in (json.dumps(records), json.dumps(records, indent=2), json.dumps(records, ensure_ascii=False, indent="\t")):
        shape = shape_of(scanner, text)
        assert shape.format == "json"
        assert shape.records == 7
        assert shape.nir_column
        assert set(shape.health_headers) == {"nir", "mutuelle"}


def test_json_lines(scanner):
    text = "".join(json.dumps({"nom": f"N{i}", "ddn": "1980-01-01", "organisme": "MGEN"}) + "\n" for i in range(9))
    shape = shape_of(scanner, text)
    assert shape.format == "jsonl"
    assert shape.records == 9
    assert shape.roles == {"nom": "nom", "ddn": "date_naissance", "organisme": "mutuelle"}


def test_json_that_is_not_records(scanner):
    assert shape_of(scanner, "[1, 2, 3, 4]").format is None
    assert shape_of(scanner, '{"a": ').format is None


SQL_ROWS = "('DUPONT','Jean','1841275123456'),('MARTIN','Marie','2530720123456'),('PETIT','Luc','1900175000111')"


def test_sql_insert_multi_row_with_column_list(scanner):
    text = f"INSERT INTO `assures` (`nom`, `prenom`, `nir`) VALUES {SQL_ROWS};\n" \
           "INSERT INTO `assures` (`nom`, `prenom`, `nir`) VALUES ('DURAND','Léa','2010175000222');\n"
    shape = shape_of(scanner, text)
    assert shape.format == "sql"
    assert shape.records == 4
    assert shape.headers == ["nom", "prenom", "nir"]
    assert shape.nir_column


def test_sql_insert_rows_on_their_own_lines(scanner):
    text = "INSERT INTO assures (nom, prenom, nir) VALUES\n" + SQL_ROWS.replace("),(", "),\n(") + ";\n"
    shape = shape_of(scanner, text)
    assert shape.format == "sql"
    assert shape.records == 3


def test_sql_insert_indented_rows(scanner):
    text = "INSERT INTO assures (nom, prenom, nir) VALUES\n  " + SQL_ROWS.replace("),(", "),\n  (") + ";\n"
    assert shape_of(scanner, text).records == 3


def test_sql_insert_with_create_table(scanner):
    text = (
        "CREATE TABLE `beneficiaires` (\n  `id` int(11) NOT NULL,\n  `nom` varchar(64) DEFAULT NULL,\n"
        "  `date_naissance` date,\n  `num_secu` char(13),\n  `cle` char(2),\n  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
        "INSERT INTO `beneficiaires` VALUES (1,'A','1980-01-01','1841275123456','40'),(2,'B','1953-07-01','2530720123456','12');\n"
        "INSERT INTO `beneficiaires` VALUES (3,'C','1990-01-01','1900175000111','33');\n"
    )
    shape = shape_of(scanner, text)
    assert shape.format == "sql"
    assert shape.records == 3
    assert shape.headers == ["id", "nom", "date_naissance", "num_secu", "cle"]
    assert shape.roles["num_secu"] == "nir" and shape.roles["cle"] == "cle"


def test_sql_nir_and_key_in_separate_columns_are_recombined(scanner):
    """`nir` and `cle` apart in an SQL dump (a value between them): the rows are parsed."""
    from tests.support.nirs import random_body, with_key
    import random
    rng = random.Random(8)
    bodies = [random_body(rng, strict=True) for _ in range(30)]

    def dump(keys: list[str]) -> bytes:
        rows = ",\n".join(f"({i}, 'O''Neil (fils)', '{b}', '1984-12-01', '{k}')" for i, (b, k) in enumerate(zip(bodies, keys, strict=False)))
        return f"INSERT INTO `assures` (`id`, `nom`, `nir`, `date_naissance`, `cle`) VALUES\n{rows};\n".encode()

    keys = [with_key(b)[13:] for b in bodies]
    detection = scanner.start()
    detection.scan_text(dump(keys))
    assert detection.values["nir"] == {with_key(b) for b in bodies}
    keys[0] = f"{(int(keys[0]) + 1) % 100:02d}"                       # one wrong key
    detection = scanner.start()
    detection.scan_text(dump(keys))
    assert detection.values["nir"] == {with_key(b) for b in bodies[1:]}


def test_sql_rows_of_hostile_quotes_do_not_hang(scanner):
    text = "INSERT INTO t (nom, nir) VALUES (" + "'" * 5000 + "x\n" + "('" * 20000
    detection = scanner.start()
    detection.scan_text(text.encode())
    assert detection.values["nir"] == set()


def _html_table(people, heading: str = "") -> bytes:
    rows = "".join(f"<tr><td>N{i}</td><td>P{i}</td><td>{n}</td><td>MGEN</td></tr>" for i, n in enumerate(people))
    return (f"<html><body>{heading}<table><tr><th>nom</th><th>prenom</th><th>nir</th><th>mutuelle</th></tr>"
            f"{rows}</table></body></html>").encode()


def test_html_table_through_the_analyzer(analyzer, rng):
    people = [random_nir(rng, strict=True) for _ in range(3)]
    report = analyzer.analyze_bytes(_html_table(people), "page.html")
    assert report.records is not None and report.records >= 3
    assert report.counts["nir"] == 3
    assert "MGEN" in report.insurers
    assert any("tab CSV" in r for r in report.reasons)


def test_html_table_with_nir_column_is_critical(analyzer):
    people = [f"{1000000000000 + i}" for i in range(12)]          # not NIRs: the column alone decides
    report = analyzer.analyze_bytes(_html_table(people), "page.html")
    assert report.severity == "critical"
    assert any("NIR column" in r for r in report.reasons)


def test_html_table_after_a_heading(analyzer, rng):
    people = [random_nir(rng, strict=True) for _ in range(3)]
    report = analyzer.analyze_bytes(_html_table(people, "<h1>Export assurés</h1><p>Extrait du 07/02</p>"), "page.html")
    assert report.records is not None and report.records >= 3


def test_html_table_record_count_is_exact(analyzer):
    rows = "".join(f"  <tr><td>N{i}</td><td>P{i}</td><td>x</td></tr>\n" for i in range(3))
    html = f"<html><body>\n<table>\n  <tr><th>nom</th><th>prenom</th><th>nir</th></tr>\n{rows}</table>\n</body></html>\n"
    report = analyzer.analyze_bytes(html.encode(), "page.html")
    assert report.records == 3
    assert report.severity != "critical"      # 3 rows: far from the 10-record threshold


def test_single_line_prose_is_not_tabular(scanner):
    assert shape_of(scanner, "Bonjour, voici le texte. Rien de tabulaire ici; vraiment rien.").format is None


def test_short_prose_is_not_tabular(scanner):
    text = "Bonjour à tous.\nVoici le compte rendu de la réunion.\nMerci de votre attention.\n"
    assert shape_of(scanner, text).format is None


def test_wrapped_prose_is_not_tabular(scanner):
    text = (
        "Le marché de l'assurance santé évolue vite. Les mutuelles, les courtiers et les\n"
        "opérateurs de tiers payant partagent des données, souvent sans le dire clairement.\n"
        "En 2024, deux opérateurs ont été touchés par des fuites, et des millions de personnes\n"
        "ont reçu un courrier les informant que leurs données avaient été exposées, mais pas\n"
        "leurs coordonnées bancaires. La CNIL a ouvert des contrôles, et les assureurs ont\n"
        "promis de renforcer l'authentification des professionnels de santé.\n"
    )
    shape = shape_of(scanner, text)
    assert shape.format is None
    assert shape.records == 0


def test_describe():
    from watcher.detect.shape import Shape
    assert Shape(format="csv", delimiter=";", records=1204).describe() == "semicolon CSV extract of 1,204 records"
    assert Shape(format="jsonl", records=25).describe() == "JSON-lines sample of 25 records"


@pytest.mark.parametrize("header, role", [
    ("N° sécurité sociale", "nir"), ("No Secu Assure", "nir"), ("Nº de Sécu", "nir"),
    ("N° Sécu", "nir"), ("n_secu", "nir"), ("Sécu", "nir"), ("N° INSEE", "nir"), ("numero_insee", "nir"),
    ("Code NIR", "nir"), ("num_assure_social", "nir"), ("Numéro NIR", "nir"),
    ("code_insee", None), ("immatriculation", None), ("SSN", None), ("nom_assure_social", None),
    ("code mutuelle", "mutuelle"), ("Date de naissance", "date_naissance"), ("Ville", None),
])
def test_header_roles_written_as_people_write_them(header, role):
    from watcher.detect.shape import header_role

    assert header_role(header) == role


# -- messy real files: never raise, keep the records and the NIR column ---------------------------

MESSY_LINES = {
    "carriage_return": "A;B\rC;1",                 # an export edited on Windows
    "nul": "A;B\x00C;1",
    "unbalanced_quote": 'A;"B;1',
    "missing_field": "A;1",
    "extra_field": "A;B;C;D",
    "huge_field": 'A;"' + "x" * (csv.field_size_limit() + 10) + '";1',
    "superscript_digits": "A;1²41275123456;B;4²",      # str.isdigit() says yes, int() says no
}


def _messy_csv(people: list[str], messy: str, apart: bool) -> bytes:
    """A clean extract with one messy line after the header and one in the middle. `apart`:
    13-character NIRs with their key two columns away (rows parsed), else full NIRs."""
    rows = [f"N{i};{n[:13]};P{i};{n[13:]}" if apart else f"N{i};P{i};{n}" for i, n in enumerate(people)]
    rows.insert(len(rows) // 2, messy)
    return ("nom;nir;prenom;cle\n" if apart else "nom;prenom;nir\n").encode() + "\n".join([messy] + rows).encode() + b"\n"


@pytest.mark.parametrize("apart", [False, True], ids=["nir15", "nir13_key_apart"])
@pytest.mark.parametrize("messy", MESSY_LINES.values(), ids=MESSY_LINES.keys())
def test_one_messy_line_costs_nothing_but_itself(analyzer, rng, messy, apart):
    people = [random_nir(rng, strict=True) for _ in range(10)]
    data = _messy_csv(people, messy, apart)
    report = analyzer.analyze_bytes(data, "export.csv", reveal=True)
    assert set(report.revealed["nir"]) == set(people)
    assert report.severity == "critical" and report.errors == []
    assert report.records == len(people) + 2            # the messy lines are records too
    assert any(r.startswith("health-data columns: nir") for r in report.reasons), report.reasons
    small_chunks = analyzer.analyze_chunks(iter(data[i:i + 5] for i in range(0, len(data), 5)), "stream",
                                           reveal=True) if len(data) < 10_000 else report
    assert set(small_chunks.revealed["nir"]) == set(people) and small_chunks.records == report.records


def test_the_reported_stray_carriage_return(analyzer, rng):
    """Issue 9: `nom;prenom;nir\\nA;B\\rC;1\\n...` raised _csv.Error out of the shape reader."""
    people = [random_nir(rng, strict=True) for _ in range(10)]
    data = ("nom;prenom;nir\nA;B\rC;1\n" + "".join(f"N{i};P{i};{n}\n" for i, n in enumerate(people))).encode()
    report = analyzer.analyze_bytes(data, "export.csv")
    assert report.severity == "critical" and report.counts["nir"] == 10 and report.records == 11


@pytest.mark.parametrize("text", ["[" * 100_000, '{"nom":' * 100_000, '[{"nom": ' * 50_000])
def test_json_nested_deeper_than_the_decoder_is_not_records(scanner, text):
    assert shape_of(scanner, text).format is None


def test_hostile_sql_heads_do_not_hang(scanner):
    """A lazy CREATE TABLE body and an unbounded column list rescanned the head from every
    occurrence: 1 MB of `create table ` took 30 s, now milliseconds."""
    started = time.perf_counter()
    for text, fmt in ((b"INSERT INTO t VALUES (1);\n" + b"create table " * 80_000, "sql"),
                      (b"INSERT INTO t VALUES (1);\nCREATE TABLE t (" * 40_000, "sql"),
                      (b"INSERT INTO t (" * 80_000, None)):
        assert shape_of(scanner, text).format == fmt
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("text", [
    '[{"nom": 1, "x' + "\u0301\u0316" * 100_000 + '": 1}]',
    "nom;nir" + "\u0301\u0316" * 100_000 + ";cle\nA;B;C\nD;E;F\n",
])
def test_a_header_of_combining_marks_costs_linear_time(scanner, text):
    """Folding a header's accents (NFD) sorts a run of marks by insertion: a name longer than
    any header is not looked at."""
    started = time.perf_counter()
    shape = shape_of(scanner, text)
    assert time.perf_counter() - started < 5
    assert shape.format in ("json", "csv") and shape.roles.get("nom") == "nom"
