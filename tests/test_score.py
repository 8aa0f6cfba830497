"""Scoring policy: every severity level, readable reasons, custom thresholds."""

from __future__ import annotations

import random

import pytest

from tests.support.nirs import random_nir
from watcher.analyze import Analyzer
from watcher.score import SEVERITIES, Evidence, Policy, score, severity_rank

ZERO = {"nir": 0, "insurer": 0, "siret": 0, "rpps": 0, "iban": 0, "email": 0, "phone": 0, "health_terms": 0}


def evidence(**kw) -> Evidence:
    counts = dict(ZERO, **kw.pop("counts", {}))
    return Evidence(counts=counts, insurers=kw.pop("insurers", []), **kw)


# -- the policy on evidence --------------------------------------------------------------------

@pytest.mark.parametrize("nirs, expected", [(10, "critical"), (11, "critical"), (500, "critical"), (9, "medium"), (1, "medium")])
def test_nir_count_without_context(nirs, expected):
    assert score(evidence(counts={"nir": nirs}))[0] == expected


@pytest.mark.parametrize("records, expected", [(10, "critical"), (10_000, "critical"), (9, "none")])
def test_nir_column_records(records, expected):
    ev = evidence(tabular=f"semicolon CSV sample of {records} records", records=records, nir_column=True,
                  health_headers=("nir",))
    assert score(ev)[0] == expected


@pytest.mark.parametrize("context", [
    {"insurers": ["Viamedis"]},
    {"health_headers": ("nir", "mutuelle")},
    {"counts": {"nir": 3, "health_terms": 1}},
])
def test_few_nirs_with_context_is_high(context):
    kw = dict(context)
    counts = dict({"nir": 3}, **kw.pop("counts", {}))
    assert score(evidence(counts=counts, **kw))[0] == "high"


def test_professionals_extract_is_high():
    ev = evidence(counts={"siret": 12, "email": 12}, tabular="semicolon CSV sample of 12 records", records=12,
                  professional=True)
    severity, reasons = score(ev)
    assert severity == "high"
    assert any("professionals" in r for r in reasons)


def test_professionals_extract_below_threshold():
    ev = evidence(counts={"siret": 9, "email": 9}, tabular="x", records=9, professional=True)
    assert score(ev)[0] == "none"


def test_professionals_by_counts_alone():
    assert score(evidence(counts={"rpps": 10, "phone": 10}))[0] == "high"
    assert score(evidence(counts={"rpps": 10, "phone": 9}))[0] == "none"


def test_low_and_none():
    assert score(evidence(insurers=["Almerys"]))[0] == "low"
    assert score(evidence(rule_severities={"watch": "low"}))[0] == "low"
    assert score(evidence())[0] == "none"
    assert score(evidence())[1] == []
    assert score(evidence(counts={"iban": 3, "email": 2}))[0] == "none"


def test_rule_raises_but_never_lowers():
    assert score(evidence(rule_severities={"r": "critical"}))[0] == "critical"
    assert score(evidence(counts={"nir": 1}, rule_severities={"r": "high"}))[0] == "high"
    assert score(evidence(counts={"nir": 12}, rule_severities={"r": "low"}))[0] == "critical"


def test_reasons_are_readable():
    ev = evidence(counts={"nir": 3, "iban": 2, "email": 1}, insurers=["Almerys", "Viamedis"],
                  tabular="semicolon CSV sample of 3 records", records=3, nir_column=True, health_headers=("nir", "mutuelle"))
    severity, reasons = score(ev)
    assert severity == "high"
    assert reasons[0] == "3 valid NIRs in a semicolon CSV sample of 3 records"
    assert "insurers Almerys, Viamedis named" in reasons
    assert "health-data columns: nir, mutuelle" in reasons
    assert "2 IBANs, 1 e-mail address" in reasons
    assert all(isinstance(r, str) and r and r[0] != " " for r in reasons)


def test_reason_singular_and_thousands():
    assert score(evidence(counts={"nir": 1}, insurers=["MGEN"]))[1][:2] == ["1 valid NIR", "insurer MGEN named"]
    assert score(evidence(counts={"nir": 12345}))[1][0] == "12,345 valid NIRs"


def test_nir_column_without_valid_nirs_is_explained():
    ev = evidence(tabular="tab CSV extract of 120 records", records=120, nir_column=True, health_headers=("nir",))
    severity, reasons = score(ev)
    assert severity == "critical"
    assert "tab CSV extract of 120 records" in reasons and "a NIR column" in reasons


def test_custom_policy_thresholds():
    strict = Policy(critical_nirs=3, critical_records=5, professional_records=2)
    assert score(evidence(counts={"nir": 3}), strict)[0] == "critical"
    assert score(evidence(counts={"nir": 2}), strict)[0] == "medium"
    assert score(evidence(records=5, nir_column=True, tabular="t"), strict)[0] == "critical"
    assert score(evidence(counts={"siret": 2, "email": 2}), strict)[0] == "high"
    lenient = Policy(critical_nirs=1000, critical_records=1000)
    assert score(evidence(counts={"nir": 999}, insurers=["MGEN"]), lenient)[0] == "high"
    assert score(evidence(counts={"nir": 999}), lenient)[0] == "medium"


def test_severity_rank():
    assert [severity_rank(s) for s in SEVERITIES] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="expected one of"):
        severity_rank("urgent")


# -- through the analyzer ------------------------------------------------------------------------

def _bare(nirs: list[str]) -> bytes:
    return "".join(f"ref {n} ok\n" for n in nirs).encode()


def test_analyzer_critical_on_ten_distinct_nirs(analyzer):
    rng = random.Random(1)
    nirs = [random_nir(rng, strict=True) for _ in range(10)]
    report = analyzer.analyze_bytes(_bare(nirs) + _bare(nirs), "x.txt")
    assert report.counts["nir"] == 10
    assert report.severity == "critical"
    assert report.reasons[0].startswith("10 valid NIRs")


def test_analyzer_medium_then_high_with_context(analyzer):
    rng = random.Random(2)
    nirs = [random_nir(rng, strict=True) for _ in range(4)]
    medium = analyzer.analyze_bytes(_bare(nirs), "x.txt")
    assert (medium.severity, medium.counts["nir"]) == ("medium", 4)
    assert medium.reasons == ["4 valid NIRs"]
    with_insurer = analyzer.analyze_bytes(_bare(nirs) + b"Gestionnaire : Almerys\n", "x.txt")
    assert with_insurer.severity == "high"
    assert any("Almerys" in r for r in with_insurer.reasons)
    with_words = analyzer.analyze_bytes(_bare(nirs) + b"Attestation de droits, carte vitale\n", "x.txt")
    assert with_words.severity == "high"


def test_analyzer_critical_on_a_nir_column(analyzer):
    csv = "nom;prenom;nir\n" + "".join(f"N{i};P{i};XXXXXXXXXXXXX{i:02d}\n" for i in range(10))
    report = analyzer.analyze_bytes(csv.encode(), "masked.csv")
    assert report.counts["nir"] == 0
    assert report.records == 10
    assert report.severity == "critical"


def test_analyzer_professionals_extract(analyzer):
    from stdnum import luhn
    rng = random.Random(3)
    rows = []
    for i in range(12):
        rpps = "10" + "".join(str(rng.randrange(10)) for _ in range(8))
        rows.append(f"Dr N{i};{rpps + luhn.calc_check_digit(rpps)};n{i}@cabinet-exemple.fr;06{rng.randrange(10**8):08d}")
    csv = "raison_sociale;rpps;email;telephone\n" + "\n".join(rows) + "\n"
    report = analyzer.analyze_bytes(csv.encode(), "pros.csv")
    assert report.records == 12
    assert report.counts["rpps"] == 12
    assert report.severity == "high"
    assert any("professionals" in r for r in report.reasons)


def test_analyzer_low_and_none(analyzer):
    low = analyzer.analyze_bytes("Nouvelle offre Viamédis pour les opticiens.".encode(), "x")
    assert low.severity == "low"
    assert low.reasons == ["insurer Viamedis named"]
    assert analyzer.analyze_bytes(b"Rien a signaler, 42 lignes.", "x").severity == "none"


def test_analyzer_custom_policy(scanner):
    rng = random.Random(4)
    nirs = [random_nir(rng, strict=True) for _ in range(3)]
    assert Analyzer(scanner, policy=Policy(critical_nirs=3)).analyze_bytes(_bare(nirs), "x").severity == "critical"
    assert Analyzer(scanner, policy=Policy(critical_nirs=4)).analyze_bytes(_bare(nirs), "x").severity == "medium"
