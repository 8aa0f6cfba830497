"""An alert means a leak (issue 11): counts random digits explain give at most `low`; real
extracts keep their severity; the written forms of French typography are read.

Random 15-digit numbers pass the NIR checks about 1 in 3,000, so 40,000 order ids hold a dozen
"valid NIRs"; among the NIR-shaped ones (right structure) 1 in 97 passes the key. A real
extract has almost every NIR-shaped number valid. Everything here goes through the real
Analyzer (extraction, both detector paths, scoring).
"""

from __future__ import annotations

import math
import random

import pytest

from tests.support.nirs import random_nir
from watcher.analyze import Analyzer
from watcher.detect import Scanner
from watcher.report import Report
from watcher.score import ALPHA, CHANCE, binomial_tail, by_chance

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.fixture(scope="module")
def analyzers() -> dict[str, Analyzer]:
    return {"compiled": Analyzer(Scanner()), "python": Analyzer(Scanner(compiled=False))}


def analyze(analyzer: Analyzer, text: str) -> Report:
    return analyzer.analyze_bytes(text.encode("utf-8"), "test")


def random_ids(rng: random.Random, count: int) -> list[str]:
    return [str(rng.randrange(10 ** 14, 10 ** 15)) for _ in range(count)]


def extract(rng: random.Random, rows: int, bad_keys: float = 0.0) -> str:
    lines = ["nom;prenom;date_naissance;nir;mutuelle"]
    for i in range(rows):
        nir = random_nir(rng, strict=True)
        if rng.random() < bad_keys:                       # a typo in the key
            nir = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
        lines.append(f"NOM{i};Prenom{i};1970-01-0{1 + i % 9};{nir};MGEN")
    return "\n".join(lines) + "\n"


def grouped(nir: str, sep: str) -> str:
    return sep.join([nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]])


# --------------------------------------------------------------------------- the test itself


@pytest.mark.parametrize("k, n, p", [(1, 1, 0.5), (2, 3, 0.5), (3, 10, 0.1), (5, 40, 1 / 97), (12, 12, 1 / 97)])
def test_binomial_tail_is_exact_on_small_cases(k: int, n: int, p: float) -> None:
    exact = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9) or (k <= n * p and binomial_tail(k, n, p) == 1.0)


def test_the_test_separates_noise_from_extracts() -> None:
    assert by_chance(13, 6097 - 13, "nir")               # the collation file
    assert by_chance(178, 16_202 - 178, "nir")            # 40,000 random ids
    assert not by_chance(12, 0, "nir") and not by_chance(990, 10, "nir")
    assert not by_chance(1, 0, "nir")                    # too few numbers to tell: counted as found
    assert not by_chance(41, 2020 - 41, "nir")           # 20 real NIRs among 2,000 random numbers
    assert binomial_tail(41, 2020, CHANCE["nir"]) < ALPHA


# --------------------------------------------------------------------------- false alarms


@pytest.mark.parametrize("count", [40_000, 100_000])
@pytest.mark.parametrize("path", ["compiled", "python"])
def test_random_order_ids_are_low_at_most(analyzers: dict[str, Analyzer], path: str, count: int) -> None:
    rng = random.Random(count)
    report = analyze(analyzers[path], "order_id;amount\n" + "\n".join(f"{i};12.50" for i in random_ids(rng, count)))
    assert report.counts["nir"] > 0                       # still counted and said
    assert report.severity == "low", report.reasons
    assert "consistent with random digits" in report.reasons[0]


def test_a_collation_like_file_of_stroke_codes_is_not_an_alert(analyzers: dict[str, Analyzer]) -> None:
    rng = random.Random(11)
    lines = [f"<U{rng.randrange(0x4E00, 0x9FFF):04X}> " + "".join(rng.choice("12345") for _ in range(15))
             for _ in range(6097)]
    report = analyze(analyzers["compiled"], "LC_COLLATE\n" + "\n".join(lines) + "\nEND LC_COLLATE\n")
    assert report.severity in ("none", "low"), report.reasons


def test_random_siret_shaped_numbers_make_no_professionals_extract(analyzers: dict[str, Analyzer]) -> None:
    rng = random.Random(3)
    rows = [f"{rng.randrange(10 ** 13, 10 ** 14)};contact{i}@example.org;06{rng.randrange(10 ** 7, 10 ** 8)}"
            for i in range(5000)]
    report = analyze(analyzers["compiled"], "ref;email;tel\n" + "\n".join(rows))
    assert report.counts["siret"] > 10
    assert report.severity not in ("high", "critical"), report.reasons
    assert any("SIRET/SIREN-shaped numbers pass the Luhn check" in r for r in report.reasons)


# --------------------------------------------------------------------------- real extracts


@pytest.mark.parametrize("rows, severity", [(1, "high"), (5, "high"), (10, "critical"), (1000, "critical")])
@pytest.mark.parametrize("path", ["compiled", "python"])
def test_real_extracts_keep_their_severity(analyzers: dict[str, Analyzer], path: str, rows: int, severity: str) -> None:
    report = analyze(analyzers[path], extract(random.Random(rows), rows))
    assert (report.severity, report.counts["nir"]) == (severity, rows), report.reasons


def test_an_extract_with_typos_stays_critical(analyzers: dict[str, Analyzer]) -> None:
    report = analyze(analyzers["compiled"], extract(random.Random(2), 1000, bad_keys=0.05))
    assert report.severity == "critical" and 900 < report.counts["nir"] < 1000


def test_free_text_with_ten_nirs_stays_critical(analyzers: dict[str, Analyzer]) -> None:
    rng = random.Random(4)
    text = "Sample, price in PM:\n" + "\n".join(f"client {i}: {random_nir(rng, strict=True)}" for i in range(10))
    assert analyze(analyzers["compiled"], text).severity == "critical"


def test_real_nirs_hidden_among_random_ids_still_count(analyzers: dict[str, Analyzer]) -> None:
    rng = random.Random(9)
    rows = [f"{i};{n}" for i, n in enumerate(random_ids(rng, 5000))]
    rows[::250] = [f"x;{random_nir(rng, strict=True)}" for _ in rows[::250]]      # 20 real NIRs
    report = analyze(analyzers["compiled"], "ref;numero\n" + "\n".join(rows))
    assert report.severity in ("medium", "critical"), report.reasons
    assert not any("random digits" in r for r in report.reasons)


def test_the_rarer_forms_alone_never_make_a_document_critical(analyzers: dict[str, Analyzer]) -> None:
    rng = random.Random(6)
    rarer = [random_nir(rng, sex="3") for _ in range(15)]
    prose = "Mutuelle MGEN, adhérents : " + ", ".join(rarer)
    report = analyze(analyzers["compiled"], prose)
    assert report.counts["nir"] == 15 and report.severity == "high", report.reasons
    table = "nom;nir;mutuelle\n" + "\n".join(f"N{i};{n};MGEN" for i, n in enumerate(rarer))
    assert analyze(analyzers["compiled"], table).severity == "critical"            # a NIR column says so


# --------------------------------------------------------------------------- written forms


@pytest.mark.parametrize("form", ["narrow no-break space", "thin space", "no-break space", "full-width digits",
                                  "full-width, grouped by narrow no-break spaces"])
@pytest.mark.parametrize("path", ["compiled", "python"])
def test_french_typography_is_read(analyzers: dict[str, Analyzer], path: str, form: str) -> None:
    rng = random.Random(form)
    nirs = [random_nir(rng, strict=True) for _ in range(12)]
    write = {
        "narrow no-break space": lambda n: grouped(n, "\u202f"),
        "thin space": lambda n: grouped(n, "\u2009"),
        "no-break space": lambda n: grouped(n, "\u00a0"),
        "full-width digits": lambda n: n.translate(FULL_WIDTH),
        "full-width, grouped by narrow no-break spaces": lambda n: grouped(n, "\u202f").translate(FULL_WIDTH),
    }[form]
    report = analyze(analyzers[path], "Liste des assurés\n" + "\n".join(write(n) for n in nirs))
    assert (report.counts["nir"], report.severity) == (12, "critical")


@pytest.mark.parametrize("month", ["21", "25", "29", "43", "49"])
def test_the_months_the_assurance_maladie_accepts_count_in_health_context(analyzers: dict[str, Analyzer],
                                                                        month: str) -> None:
    from tests.support.nirs import with_key

    nir = with_key(f"184{month}75123456")
    assert analyze(analyzers["compiled"], f"Mutuelle : {nir}").counts["nir"] == 1
    assert analyze(analyzers["compiled"], f"ticket {nir}").counts["nir"] == 0
