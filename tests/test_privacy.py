"""Privacy: keyed fingerprints, the installation secret, masks, and reports without clear values."""

from __future__ import annotations

import json
import os
import random
import re
import stat

import pytest

from tests.support.nirs import nir_forms, random_nir
from watcher.analyze import Analyzer
from watcher.privacy import (
    BULLET, Fingerprinter, load_or_create_secret, mask_digits, mask_email, mask_iban, mask_nir,
)


def test_fingerprint_is_keyed_and_deterministic():
    a, b = Fingerprinter(b"k" * 32), Fingerprinter(b"j" * 32)
    nir = "184127512345640"
    assert a("nir", nir) == a("nir", nir)
    assert a("nir", nir) != b("nir", nir)
    assert a("nir", nir) != a("iban", nir)
    assert a("nir", nir) != a("nir", "184127512345641")
    assert re.fullmatch(r"[0-9a-f]{64}", a("nir", nir))
    assert nir not in a("nir", nir)


def test_secret_created_0600_and_reused(tmp_path):
    path = tmp_path / "state" / "secret.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert path.read_bytes() == first


def test_secret_differs_per_installation(tmp_path):
    assert load_or_create_secret(tmp_path / "a") != load_or_create_secret(tmp_path / "b")


def test_short_secret_refused(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="too short"):
        load_or_create_secret(path)


def test_masks():
    assert mask_nir("184127512345640") == f"1 84 12 {BULLET * 2} {BULLET * 3} {BULLET * 3} {BULLET * 2}"
    assert mask_nir("184127512345640") == "1 84 12 •• ••• ••• ••"
    assert mask_email("jean.dupont@mutuelle.fr") == "j•••@mutuelle.fr"
    assert mask_digits("73282932000074", 3, 2) == "732•••••••••74"
    masked_iban = mask_iban("FR7630006000011234567890189")
    assert masked_iban.startswith("FR76 ") and masked_iban.endswith("89")
    assert "30006" not in masked_iban.replace(" ", "")


@pytest.fixture(scope="module")
def leaky_document() -> tuple[bytes, dict[str, list[str]]]:
    rng = random.Random(11)
    nirs = [random_nir(rng, strict=True) for _ in range(6)]
    ibans = ["FR7630006000011234567890189", "DE89370400440532013000"]
    emails = ["jean.dupont@mutuelle-exemple.fr", "m.curie@example.org"]
    phones = ["0612345678"]
    sirets = ["73282932000074"]
    lines = ["nom;prenom;nir;iban;email;tel;siret"]
    forms = list(nir_forms(nirs[0]))
    for i, nir in enumerate(nirs):
        lines.append(";".join([f"N{i}", f"P{i}", nir_forms(nir)[forms[i % len(forms)]], ibans[i % 2],
                               emails[i % 2], "06 12 34 56 78", sirets[0]]))
    text = "\n".join(lines) + "\nGestion Viamedis\n"
    clear = {"nir": nirs, "iban": ibans, "email": emails, "phone": phones, "siret": sirets}
    return text.encode(), clear


def _assert_no_clear_value(serialized: str, clear: dict[str, list[str]]) -> None:
    flat = re.sub(r"[^0-9A-Za-z@.]", "", serialized)
    digits_only = re.sub(r"[^0-9]", "", serialized)
    for kind, values in clear.items():
        for value in values:
            assert value not in serialized, (kind, value)
            compact = re.sub(r"[^0-9A-Za-z@.]", "", value)
            assert compact not in flat, (kind, value)
            if kind in ("nir", "siret", "phone"):
                assert value[-12:] not in digits_only, (kind, value)


def test_report_json_holds_no_clear_identifier(scanner, leaky_document, tmp_path):
    data, clear = leaky_document
    analyzer = Analyzer(scanner, fingerprinter=Fingerprinter(load_or_create_secret(tmp_path / "k")))
    report = analyzer.analyze_bytes(data, "leak.csv")
    assert report.counts["nir"] == 6 and report.counts["iban"] == 2 and report.counts["email"] == 2
    assert report.samples                                    # masked samples are shown...
    serialized = json.dumps(report.to_json(), ensure_ascii=False)
    _assert_no_clear_value(serialized, clear)                # ...but never a clear value
    assert json.dumps(report.to_json(), ensure_ascii=True)  # and it is plain JSON either way
    assert "fingerprints" not in report.to_json() and "revealed" not in report.to_json()


def test_fingerprints_match_the_values(scanner, leaky_document):
    data, clear = leaky_document
    fingerprint = Fingerprinter(b"s" * 32)
    report = Analyzer(scanner, fingerprinter=fingerprint).analyze_bytes(data, "leak.csv")
    assert report.fingerprints["nir"] == sorted(fingerprint("nir", n) for n in clear["nir"])
    _assert_no_clear_value(json.dumps(report.fingerprints), clear)


def test_reveal_is_opt_in(analyzer, leaky_document):
    data, clear = leaky_document
    assert analyzer.analyze_bytes(data, "x").revealed is None
    assert set(analyzer.analyze_bytes(data, "x", reveal=True).revealed["nir"]) == set(clear["nir"])
