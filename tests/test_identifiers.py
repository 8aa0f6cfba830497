"""SIRET / SIREN, RPPS, IBAN, e-mail and phone detectors: positive and negative cases."""

from __future__ import annotations

import random

import pytest
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import siret as stdnum_siret


def _luhn_complete(partial: str) -> str:
    return partial + luhn.calc_check_digit(partial)


def _bump_last(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# -- SIRET / SIREN ---------------------------------------------------------------------------

SIRETS = ["73282932000074", "55210055400013", "40483304800022"]


@pytest.mark.parametrize("siret", SIRETS)
def test_valid_siret(found, siret):
    assert stdnum_siret.is_valid(siret)
    assert found(f"Fournisseur SIRET {siret} ok")["siret"] == {siret}
    grouped = f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"
    assert found(f"SIRET : {grouped}.")["siret"] == {siret}


@pytest.mark.parametrize("siret", SIRETS)
def test_invalid_siret_luhn(found, siret):
    bad = _bump_last(siret)
    assert not stdnum_siret.is_valid(bad)
    assert not {v for v in found(f"SIRET {bad}")["siret"] if not v.startswith("siren:")}


@pytest.mark.parametrize("siret", SIRETS)
def test_siret_inside_a_longer_number(found, siret):
    assert found(f"ref 9{siret}")["siret"] == set()
    assert found(f"ref {siret}0")["siret"] == set()


def test_la_poste_siret_rule(found):
    # SIREN 356000000: SIRETs valid on a digit sum multiple of 5 even when the Luhn check fails
    la_poste = ["35600000049837", "35600000000015", "35600000000010"]
    for siret in la_poste:
        assert sum(int(c) for c in siret) % 5 == 0
        assert stdnum_siret.is_valid(siret)
        assert found(f"La Poste {siret}")["siret"] == {siret}
    assert not luhn.is_valid("35600000000015")
    for not_multiple in ["35600000000002", "35600000000003"]:
        assert sum(int(c) for c in not_multiple) % 5 != 0 and not luhn.is_valid(not_multiple)
        assert found(f"La Poste {not_multiple}")["siret"] == set()


def test_siren_grouped_and_labelled(found):
    assert stdnum_siren.is_valid("732829320")
    assert found("Société 732 829 320 RCS Paris")["siret"] == {"siren:732829320"}
    assert found("SIREN : 732829320")["siret"] == {"siren:732829320"}
    assert found("siren=732829320;")["siret"] == {"siren:732829320"}


def test_siren_negative(found):
    assert found("Société 732 829 321 RCS Paris")["siret"] == set()      # bad Luhn
    assert found("commande 732829320 expédiée")["siret"] == set()       # bare 9 digits: no label
    assert found("SIREN 7328293201")["siret"] == set()                  # 10 digits


# -- RPPS ----------------------------------------------------------------------------------------

def test_rpps(found, rng):
    numbers = [_luhn_complete("10" + "".join(str(rng.randrange(10)) for _ in range(8))) for _ in range(20)]
    assert all(len(n) == 11 and luhn.is_valid(n) for n in numbers)
    assert found("\n".join(f"Dr X, RPPS {n}" for n in numbers))["rpps"] == set(numbers)


def test_rpps_negative(found):
    good = _luhn_complete("1012345678")
    bad = _bump_last(good)
    assert not luhn.is_valid(bad)
    assert found(f"RPPS {bad}")["rpps"] == set()
    assert found(f"RPPS 9{good}")["rpps"] == set()
    assert found(f"RPPS {good}5")["rpps"] == set()
    other = _luhn_complete("2012345678")                  # 11 digits, Luhn, but not starting 10
    assert found(f"RPPS {other}")["rpps"] == set()


# -- IBAN ----------------------------------------------------------------------------------------

IBANS = ["FR7630006000011234567890189", "DE89370400440532013000", "GB82WEST12345698765432",
         "FR1420041010050500013M02606"]


def _grouped(iban: str) -> str:
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


@pytest.mark.parametrize("iban", IBANS)
def test_valid_iban_compact_and_grouped(found, iban):
    assert stdnum_iban.is_valid(iban)
    assert found(f"IBAN {iban} BIC XXXX")["iban"] == {iban}
    assert found(f"IBAN : {_grouped(iban)}\nBIC : BNPAFRPP")["iban"] == {iban}


@pytest.mark.parametrize("iban", IBANS)
def test_invalid_iban_mod97(found, iban):
    bad = iban[:-1] + ("0" if iban[-1] != "0" else "1")
    assert not stdnum_iban.is_valid(bad)
    assert found(f"IBAN {bad}")["iban"] == set()
    assert found(f"IBAN {_grouped(bad)}")["iban"] == set()


def test_iban_glued_to_a_word(found):
    assert found("xFR7630006000011234567890189")["iban"] == set()


def test_random_french_ibans(found, rng):
    ibans = []
    for _ in range(50):
        bban = "".join(str(rng.randrange(10)) for _ in range(23))
        ibans.append(f"FR{98 - int(bban + '152700') % 97:02d}{bban}")
    assert all(stdnum_iban.is_valid(i) for i in ibans)
    text = "\n".join(f"{'IBAN' if k % 2 else 'rib'} {_grouped(i) if k % 3 else i}" for k, i in enumerate(ibans))
    assert found(text)["iban"] == set(ibans)


# -- e-mail ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("contact: jean.dupont@mutuelle-exemple.fr.", "jean.dupont@mutuelle-exemple.fr"),
    ("<Marie.Curie+test@Example.COM>", "marie.curie+test@example.com"),
    ("mailto:a_b@c.fr", "a_b@c.fr"),
    ("x;prenom.nom@sous.domaine.gouv.fr;y", "prenom.nom@sous.domaine.gouv.fr"),
])
def test_emails(found, text, expected):
    assert found(text)["email"] == {expected}


@pytest.mark.parametrize("text", ["no at sign here", "user@localhost", "@example.com", "a@b", "jean.dupont@", "x@.fr"])
def test_not_emails(found, text):
    assert found(text)["email"] == set()


def test_email_counted_once_case_insensitive(found):
    assert found("A@EXAMPLE.FR a@example.fr A@example.fr")["email"] == {"a@example.fr"}


# -- phones ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("06 12 34 56 78", "+33612345678"), ("07.12.34.56.78", "+33712345678"), ("0712345678", "+33712345678"),
    ("06-12-34-56-78", "+33612345678"), ("+33 6 12 34 56 78", "+33612345678"), ("+33612345678", "+33612345678"),
    ("0033 6 12 34 56 78", "+33612345678"), ("0033612345678", "+33612345678"), ("+33 (0)6 12 34 56 78", "+33612345678"),
    ("tél. 01 23 45 67 89", "+33123456789"),
])
def test_phones(found, text, expected):
    assert found(f"Tel: {text}.")["phone"] == {expected}


@pytest.mark.parametrize("text", ["106 12 34 56 78", "06 12 34 56 789", "1206123456789", "90612345678",
                                  "06 12 34 56", "00 12 34 56 78", "+44 20 7946 0958"])
def test_not_phones(found, text):
    assert found(f"ref {text} end")["phone"] == set()


def test_phone_forms_count_once(found):
    assert found("06 12 34 56 78 / 0612345678 / +33 6 12 34 56 78 / 0033612345678")["phone"] == {"+33612345678"}


def test_grouped_iban_holds_no_phone(found):
    assert found("IBAN DE89 3704 0044 0532 0130 00")["phone"] == set()


def test_nir_is_not_a_phone_siret_or_rpps(found):
    values = found("NIR 1 84 12 75 123 456 40 et 184127512345640")
    assert values["nir"] == {"184127512345640"}
    assert values["phone"] == values["siret"] == values["rpps"] == values["iban"] == set()


def test_seeded_mix_exact_counts(found):
    rng = random.Random(7)
    sirets = set()
    while len(sirets) < 10:
        s = _luhn_complete("".join(str(rng.randrange(10)) for _ in range(13)))
        if s[0] != "0" and stdnum_siret.is_valid(s):
            sirets.add(s)
    phones = {f"06{rng.randrange(10**8):08d}" for _ in range(10)}
    text = "\n".join([f"SIRET {s}" for s in sirets] + [f"tel {p[:2]} {p[2:4]} {p[4:6]} {p[6:8]} {p[8:]}" for p in phones])
    values = found(text)
    assert values["siret"] == sirets
    assert values["phone"] == {"+33" + p[1:] for p in phones}


def test_fast_checksums_agree_with_python_stdnum():
    """The table-driven Luhn and the SIRET rule (La Poste included) match python-stdnum."""
    import random

    from stdnum import luhn
    from stdnum.fr import siret

    from watcher.detect.luhn import luhn_ok
    from watcher.detect.siret import siret_ok

    rng = random.Random(7)
    for _ in range(20000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 11, 14])))
        assert luhn_ok(digits) == luhn.is_valid(digits), digits
        number = ("356000000" + digits[:5]) if rng.random() < 0.3 else digits.ljust(14, "0")[:14]
        assert siret_ok(number) == siret.is_valid(number), number


def test_an_iban_has_its_country_length_so_hex_ids_are_no_ibans():
    """`bf5016f40704d049` (a PrivateBin id) passed mod 97 as a 15-character IBAN of a country
    whose IBANs have 28 (1 random id in 50): item ids and URLs holding one were masked."""
    from watcher.detect.iban import valid_length
    from watcher.redact import redact

    assert valid_length("BF5016F40704D049") == 0 and redact("p1#privatebin:bf5016f40704d049") == "p1#privatebin:bf5016f40704d049"
    assert valid_length("FR7630006000011234567890189") == 27 and valid_length("FR7630006000011234567890189XY") == 27
    assert valid_length("FR76300060000112345678901") == 0                    # short of France's 27
    assert redact("IBAN FR76 3000 6000 0112 3456 7890 189") == "IBAN [IBAN]"
