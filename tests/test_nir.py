"""NIR detection: every written form, structure rules, key, boundaries, labels, columns."""

from __future__ import annotations

import random

import pytest
from stdnum.fr import nir as stdnum_nir

from tests.support.nirs import nir_forms, random_body, random_nir, with_key
from watcher.detect import nir as nir_rules

BODY = "1841275123456"
NIR = with_key(BODY)                      # 184127512345640


def nirs(found, text: str) -> set[str]:
    return found(text)["nir"]


# -- the module's own functions, against python-stdnum as the key oracle -------------------

def test_reference_nir_is_valid_for_the_oracle():
    assert NIR == "184127512345640"
    assert stdnum_nir.is_valid(NIR)


def test_key_agrees_with_stdnum_on_random_bodies(rng):
    for _ in range(2000):
        nir = random_nir(rng)
        assert stdnum_nir.is_valid(nir), nir
        assert nir_rules.is_valid(nir), nir
        wrong = f"{nir[:13]}{(int(nir[13:]) + rng.randrange(1, 97)) % 100:02d}"
        assert not stdnum_nir.is_valid(wrong)
        assert not nir_rules.is_valid(wrong)


def test_complete_with_and_without_key():
    assert nir_rules.complete(BODY) == NIR
    assert nir_rules.complete(BODY, "40") == NIR
    assert nir_rules.complete("1 84 12 75 123 456", " 40 ") == NIR
    assert nir_rules.complete(BODY, "41") is None
    assert nir_rules.complete(BODY, "xx") is None
    assert nir_rules.complete("5841275123456") is None          # sex 5: provisional number


@pytest.mark.parametrize("nir", ["253072A07300443", "253072B07300470"])
def test_corsica_key_substitution_matches_stdnum(nir):
    assert stdnum_nir.is_valid(nir)
    assert nir_rules.is_valid(nir)
    assert nir_rules.nir_key(nir[:13]) == int(nir[13:])


# -- written forms ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", list(nir_forms(NIR)))
def test_every_written_form_is_found(found, form):
    text = f"Assuré : {nir_forms(NIR)[form]} (dossier clos)"
    assert nirs(found, text) == {NIR}


@pytest.mark.parametrize("form", list(nir_forms(NIR)))
def test_every_written_form_of_random_nirs(found, form):
    rng = random.Random(form)
    for _ in range(40):
        nir = random_nir(rng)
        assert nirs(found, f"mutuelle x {nir_forms(nir)[form]} y") == {nir}, nir


def test_key_apart_after_the_body(found):
    assert nirs(found, "1841275123456 40") == {NIR}


@pytest.mark.parametrize("text", [
    "2 53 07 2A 073 004 43", "2 53 07 2B 073 004 70", "253072A07300443", "2 53 07 2a 073 004 43",
    "2.53.07.2B.073.004.70",
])
def test_corsica_new_departments(found, text):
    expected = text.replace(" ", "").replace(".", "").upper()
    assert nirs(found, text) == {expected}


def test_corsica_wrong_key_rejected(found):
    assert nirs(found, "2 53 07 2A 073 004 70") == set()     # the 2B key on a 2A body
    assert nirs(found, "2 53 07 2B 073 004 43") == set()


@pytest.mark.parametrize("year, valid", [("00", True), ("45", True), ("75", True), ("76", False), ("84", False), ("99", False)])
def test_corsica_old_department_20_only_before_1976(found, year, valid):
    nir = with_key(f"1{year}0520123456")
    assert stdnum_nir.is_valid(nir)           # the key is right: only the structure decides
    assert nirs(found, nir) == ({nir} if valid else set())


@pytest.mark.parametrize("place", ["97412", "97101", "97305", "98801", "98712"])
def test_overseas(found, place):
    nir = with_key(f"28405{place}123")
    assert nirs(found, f"nir {nir}") == {nir}


@pytest.mark.parametrize("country, valid", [("99135", True), ("99100", True), ("99352", True), ("99000", False)])
def test_born_abroad(found, country, valid):
    nir = with_key(f"18406{country}042")
    assert nirs(found, nir) == ({nir} if valid else set())


# The Assurance Maladie's validator accepts 01-12 and 20-99; 21-29 and 43-49 included.
VALID_MONTHS = ["01", "09", "12", "20", "21", "25", "29", "30", "35", "42", "43", "49", "50", "63", "99"]
INVALID_MONTHS = ["00", "13", "14", "19"]


@pytest.mark.parametrize("month", VALID_MONTHS)
def test_valid_months(found, month):
    nir = with_key(f"184{month}75123456")
    assert nirs(found, f"Mutuelle : {nir}") == {nir}


@pytest.mark.parametrize("month", ["21", "29", "43", "49"])
def test_the_rarer_months_need_health_context(found, month):
    nir = with_key(f"184{month}75123456")
    assert nirs(found, f"commande {nir} livree") == set()
    assert nirs(found, f"Mutuelle : {nir}") == {nir}


@pytest.mark.parametrize("month", INVALID_MONTHS)
def test_invalid_months(found, month):
    nir = with_key(f"184{month}75123456")
    assert stdnum_nir.is_valid(nir)
    for form in nir_forms(nir).values():
        assert nirs(found, f"Mutuelle : {form}") == set(), form


@pytest.mark.parametrize("sex, valid", [("1", True), ("2", True), ("3", True), ("4", True),
                                        ("5", False), ("6", False), ("7", False), ("8", False), ("9", False), ("0", False)])
def test_sex_digit(found, sex, valid):
    nir = with_key(f"{sex}841275123456")
    assert stdnum_nir.is_valid(nir)
    assert nirs(found, f"Mutuelle n {nir} n") == ({nir} if valid else set())
    assert nirs(found, f"NIR : {nir[:13]}") == ({nir} if valid else set())


@pytest.mark.parametrize("body", ["1841275000456", "1841275123000", "1841200123456", "1841297412000"])
def test_zero_commune_order_or_department(found, body):
    nir = with_key(body)
    assert stdnum_nir.is_valid(nir)
    assert nirs(found, nir) == set()
    assert nirs(found, f"NIR : {body}") == set()


# -- boundaries --------------------------------------------------------------------------------

@pytest.mark.parametrize("form", list(nir_forms(NIR)))
@pytest.mark.parametrize("before, after", [("1", ""), ("", "1"), ("0", "0")])
def test_adjacent_digit_is_not_a_nir(found, form, before, after):
    assert nirs(found, f"ref {before}{nir_forms(NIR)[form]}{after} end") == set()


@pytest.mark.parametrize("before, after", [("x", "x"), ("(", ")"), ("id=", ";"), ("#", "."), ("é", "é"), ("\t", "\n"),
                                           ("NIR", "€"), ("", "")])
def test_letters_and_punctuation_around_are_fine(found, before, after):
    for form in nir_forms(NIR).values():
        assert nirs(found, f"{before}{form}{after}") == {NIR}, form


def test_a_nir_inside_a_longer_run_of_digits(found):
    assert nirs(found, f"000{NIR}000") == set()
    assert nirs(found, f"9{NIR[:13]} {NIR[13:]}") == set()


def test_wrong_key_never_matches_in_any_form(found):
    for key in range(100):
        if key == int(NIR[13:]):
            continue
        wrong = f"{BODY}{key:02d}"
        assert not stdnum_nir.is_valid(wrong)
        text = "mutuelle | " + " | ".join(nir_forms(wrong).values())
        assert nirs(found, text) == set(), wrong


def test_wrong_key_on_random_bodies(found, rng):
    parts = []
    for _ in range(300):
        nir = random_nir(rng)
        wrong = f"{nir[:13]}{(int(nir[13:]) + rng.randrange(1, 99)) % 100:02d}"
        parts.append(rng.choice(list(nir_forms(wrong).values())))
    assert nirs(found, "mutuelle ; " + " ; ".join(parts)) == set()


# -- 13 characters: label or column only ---------------------------------------------------------

def test_millisecond_timestamps_never_match(found, rng):
    stamps = [str(rng.randrange(978_307_200_000, 2_000_000_000_000)) for _ in range(2000)]
    structure_ok = [s for s in stamps if nir_rules.structure_ok(s)]
    assert len(structure_ok) > 100          # the lookalike really passes a keyless check
    text = "mutuelle\n" + "\n".join(f"2024-02-07T10:00:00Z ts={s} event=login user=jdoe" for s in stamps)
    assert nirs(found, text) == set()


def test_bare_13_characters_without_label(found):
    assert nirs(found, f"commande {BODY} expédiée") == set()
    assert nirs(found, "1 84 12 75 123 456 expédiée") == set()


LABELS = [
    "NIR : ", "NIR:", "nir=", "n° SS ", "N° SS : ", "n°ss ", "No SS ", "n° s.s. ", "N° de sécurité sociale : ",
    "Numéro de sécurité sociale ", "numéro de sécu ", "matricule ", "Matricule : ", "NSS: ", "insee ",
    "num_secu=",
    "num secu: ", "numsecu=", "Numéro d'immatriculation : ", "N° d’immatriculation ", "N° d'assuré social : ",
]


@pytest.mark.parametrize("label", LABELS)
def test_label_makes_13_characters_count(found, label):
    assert nirs(found, f"{label}{BODY}") == {NIR}
    assert nirs(found, f"{label}1 84 12 75 123 456 fin") == {NIR}


@pytest.mark.parametrize("label", ["NIR : ", "n° SS ", "N° de sécurité sociale : ", "matricule "])
def test_label_with_key_after(found, label):
    assert nirs(found, f"{label}{BODY} {NIR[13:]}") == {NIR}
    assert nirs(found, f"{label}{BODY} clé {NIR[13:]}") == {NIR}


@pytest.mark.parametrize("label", ["NIR : ", "n° SS ", "N° de sécurité sociale : ", "matricule "])
def test_label_followed_by_a_wrong_key_does_not_count(found, label):
    assert nirs(found, f"{label}{BODY} 41") == set()
    assert nirs(found, f"{label}{BODY} clé 99") == set()
    assert nirs(found, f"{label}{BODY}41") == set()


@pytest.mark.parametrize("label", ["NIR : ", "matricule "])
def test_label_with_invalid_structure(found, label):
    assert nirs(found, f"{label}5841275123456") == set()
    assert nirs(found, f"{label}1841375123456") == set()       # month 13


def test_label_too_far_does_not_count(found):
    far = "NIR" + " x" * 40 + " " + BODY
    assert nirs(found, far) == set()


# -- columns -------------------------------------------------------------------------------------

def test_nir_and_key_columns_recombined(analyzer, rng):
    people = [random_nir(rng) for _ in range(5)]
    csv = "nom;prenom;nir;cle\n" + "".join(f"N{i};P{i};{n[:13]};{n[13:]}\n" for i, n in enumerate(people))
    report = analyzer.analyze_bytes(csv.encode(), "extract.csv")
    assert report.counts["nir"] == 5
    assert report.records == 5


def test_nir_column_wrong_key_rejected(analyzer, rng):
    good = [random_nir(rng) for _ in range(3)]
    bad = random_nir(rng)
    bad_key = f"{(int(bad[13:]) + 1) % 100:02d}"
    csv = "nom;nir;cle\n" + "".join(f"A;{n[:13]};{n[13:]}\n" for n in good) + f"B;{bad[:13]};{bad_key}\n"
    report = analyzer.analyze_bytes(csv.encode(), "extract.csv")
    assert report.counts["nir"] == 3


def test_nir_column_without_key_counts_by_structure(analyzer, rng):
    people = [random_nir(rng) for _ in range(4)]
    csv = "nom,prenom,num_secu\n" + "".join(f"N{i},P{i},{n[:13]}\n" for i, n in enumerate(people))
    csv += "X,Y,1841375123456\n"              # month 13: not a NIR body
    report = analyzer.analyze_bytes(csv.encode(), "extract.csv")
    assert report.counts["nir"] == 4


def test_13_characters_in_a_non_nir_column_do_not_count(analyzer):
    csv = "commande;montant\n" + "".join(f"{BODY[:-1]}{i};12\n" for i in range(5))
    assert analyzer.analyze_bytes(csv.encode(), "orders.csv").counts["nir"] == 0


def test_mixed_form_nir_column_with_key_column(analyzer, rng):
    people = [random_nir(rng) for _ in range(12)]
    rows = []
    for i, n in enumerate(people):
        written = n[:13] if i % 4 == 3 else nir_forms(n)[["compact", "spaced", "dotted"][i % 4 % 3]]
        rows.append(f"N{i};P{i};{written};{n[13:]}\n")
    report = analyzer.analyze_bytes(("nom;prenom;nir;cle\n" + "".join(rows)).encode(), "mixed.csv")
    assert report.counts["nir"] == 12


def test_13_character_rows_only_after_the_head(analyzer):
    rng = random.Random(3)
    people = [random_nir(rng, strict=True) for _ in range(300)]
    rows = [f"N{i};P{i};{n if i < 250 else n[:13]};{n[13:]}\n" for i, n in enumerate(people)]
    report = analyzer.analyze_bytes(("nom;prenom;nir;cle\n" + "".join(rows)).encode(), "merged.csv")
    assert report.records == 300
    assert report.counts["nir"] == len(set(people))


def test_json_records_with_nir_and_cle(analyzer):
    import json
    rng = random.Random(4)
    people = [random_nir(rng, strict=True) for _ in range(12)]
    data = json.dumps([{"nom": f"N{i}", "nir": n[:13], "cle": n[13:]} for i, n in enumerate(people)])
    report = analyzer.analyze_bytes(data.encode(), "assures.json")
    assert report.counts["nir"] == 12


def test_sql_dump_nir_and_cle_columns(analyzer):
    rng = random.Random(5)
    people = [random_nir(rng, strict=True) for _ in range(12)]
    values = ",".join(f"('N{i}','{n[:13]}','{n[13:]}')" for i, n in enumerate(people))
    report = analyzer.analyze_bytes(f"INSERT INTO assures (nom, nir, cle) VALUES {values};\n".encode(), "dump.sql")
    assert report.records == 12
    assert report.counts["nir"] == 12


def test_same_nir_in_several_forms_counts_once(found, analyzer):
    forms = nir_forms(NIR)
    text = "\n".join(forms.values()) + f"\nNIR : {BODY}\n"
    assert nirs(found, text) == {NIR}
    csv = "nom;nir;cle\nA;" + BODY + ";40\nB;" + BODY + ";40\n" + "note: " + forms["spaced"] + "\n"
    assert analyzer.analyze_bytes(csv.encode(), "dup.csv").counts["nir"] == 1


# -- lookalikes ----------------------------------------------------------------------------------

def _iban_fr(rng: random.Random) -> str:
    bban = "".join(str(rng.randrange(10)) for _ in range(23))
    numeric = int(bban + "152700")            # F=15 R=27 + "00"
    return f"FR{98 - numeric % 97:02d}{bban}"


def test_fr76_ibans_in_groups_of_four_are_not_nirs(found, rng):
    from stdnum import iban
    ibans = [_iban_fr(rng) for _ in range(300)]
    assert all(iban.is_valid(i) for i in ibans)
    grouped = [" ".join(i[k:k + 4] for k in range(0, len(i), 4)) for i in ibans]
    assert nirs(found, "\n".join(f"IBAN : {g}" for g in grouped)) == set()
    assert found("\n".join(f"IBAN : {g}" for g in grouped))["iban"] == set(ibans)


def test_sirets_with_adjacent_digits_are_not_nirs(found):
    from stdnum.fr import siret
    sirets = ["73282932000074", "35600000000048", "55210055400013", "40483304800022"]
    assert all(siret.is_valid(s) for s in sirets)
    for s in sirets:
        for d in "0123456789":
            for candidate in (d + s, s + d):
                if stdnum_nir.is_valid(candidate) and nir_rules.is_valid(candidate):
                    continue           # a real NIR shape: nothing to assert
                assert nirs(found, f"SIRET {candidate} mutuelle") == set(), candidate


def test_amex_like_numbers_are_not_nirs(found, rng):
    from stdnum import luhn
    known = ["378282246310005", "371449635398431", "378734493671000", "340000000000009", "370000000000002"]
    generated = []
    while len(generated) < 300:
        partial = rng.choice(["34", "37"]) + "".join(str(rng.randrange(10)) for _ in range(12))
        number = partial + luhn.calc_check_digit(partial)
        if not nir_rules.is_valid(number):
            generated.append(number)
    for number in known:
        assert not nir_rules.is_valid(number)
    text = "mutuelle\n" + "\n".join(f"carte {n} exp 12/27" for n in known + generated)
    assert nirs(found, text) == set()


def test_phone_numbers_are_not_nirs(found):
    text = "mutuelle 06 12 34 56 78, +33 6 12 34 56 78, 0033 1 84 12 75 12, 01.84.12.75.12, 0184127512 34"
    assert nirs(found, text) == set()


def test_ean13_are_not_nirs(found, rng):
    from stdnum import ean
    codes = []
    for _ in range(300):
        partial = rng.choice(["1", "2", "3", "4"]) + "".join(str(rng.randrange(10)) for _ in range(11))
        codes.append(partial + ean.calc_check_digit(partial))
    assert all(ean.is_valid(c) and len(c) == 13 for c in codes)
    assert nirs(found, "mutuelle\n" + "\n".join(f"EAN {c} qty 1" for c in codes)) == set()


def test_random_bodies_structure_is_valid(rng):
    for _ in range(500):
        assert nir_rules.structure_ok(random_body(rng))


def test_key_in_the_next_column_is_paired_without_a_header(analyzer, rng):
    """`body;key` in adjacent columns (CSV or SQL) is a NIR whatever the header says; a wrong
    key in that column is not."""
    people = [random_nir(rng, strict=True) for _ in range(3)]
    rows = "".join(f"x{i};{n[:13]};{n[13:]};y\n" for i, n in enumerate(people))
    assert analyzer.analyze_bytes(("a;b;c;d\n" + rows).encode(), "t.csv").counts["nir"] == 3
    wrong = "".join(f"x{i};{n[:13]};{(int(n[13:]) % 97) + 1:02d};y\n" for i, n in enumerate(people))
    assert analyzer.analyze_bytes(("a;b;c;d\n" + wrong).encode(), "t.csv").counts["nir"] == 0


@pytest.mark.parametrize("apart", [" - ", " / ", "/", " "])
def test_key_apart_with_spaced_punctuation(found, rng, apart):
    nir = random_nir(rng, strict=True)
    spaced = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]}"
    assert found(f"NSS {spaced}{apart}{nir[13:]} fin")["nir"] == {nir}


def test_digits_that_are_not_ascii_never_raise() -> None:
    """`²`, `١` and friends pass str.isdigit() but not int(): the checks refuse them."""
    from watcher.detect.nir import complete, is_valid, structure_ok

    assert not structure_ok("18412751234²6")
    assert not is_valid("1841275123456²7")
    assert complete("1841275123456", "٧٧") is None
    assert complete("18412751234٥6") is None


# -- a NIR shown as a number, thousands grouped (a spreadsheet's number format, Excel's CSV) ---

THOUSANDS = {"space": " ", "nbsp": "\u00a0", "narrow nbsp": "\u202f", "dot": ".", "comma": ","}


def _thousands(nir: str, separator: str) -> str:
    return separator.join(nir[i:i + 3] for i in range(0, 15, 3))


@pytest.mark.parametrize("separator", THOUSANDS.values(), ids=THOUSANDS.keys())
def test_a_nir_shown_with_its_thousands_grouped_is_found(found, separator, rng):
    """`184 127 512 345 640`: how a NIR column formatted as a number reads in a spreadsheet,
    its PDF, or the CSV Excel exports (cells as shown). Other NIRs in the same form too."""
    others = [random_nir(rng, strict=True) for _ in range(20)]
    others = [n for n in others if n.isdigit()]              # 2A/2B cannot be numbers
    text = "".join(f"adhérent {i} : {_thousands(n, separator)} ;\n" for i, n in enumerate([NIR, *others]))
    assert nirs(found, text) == {NIR, *others}


@pytest.mark.parametrize("text", [
    "184 127 512 345 640 123",            # a longer grouped number
    "5 184 127 512 345 640",
    "12.184.127.512.345.640",
    "184 127.512 345 640",                # separators mixed
    "184 127 512 345",                    # too short
    "184-127-512-345-640",                # dashes do not group thousands
])
def test_pieces_of_longer_or_mixed_groupings_are_not_nirs(found, text):
    assert not nirs(found, f"montant : {text} €")


def test_grouped_numbers_with_a_wrong_key_count_against_plausibility(analyzer):
    """Random 15-digit amounts shown grouped rarely pass the key; those that fail are counted
    as NIR-shaped numbers that failed, so a few passing by chance stay low."""
    rng = random.Random(4)
    lines = []
    for _ in range(3000):
        digits = f"{rng.choice('12')}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}" \
                 f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}{rng.randint(0, 99):02d}"
        lines.append(f"virement {_thousands(digits, ' ')} EUR")
    report = analyzer.analyze_bytes("\n".join(lines).encode(), "amounts.txt")
    assert 0 < report.counts["nir"] < 100 and report.severity in ("none", "low"), (report.counts, report.reasons)


@pytest.mark.parametrize("between", [" (", "(", " ( ", " clé ", "clé", ", clé : ", " (clé ", " CLÉ:", ", Clé ", " cle "])
def test_a_key_in_brackets_or_named_is_found(found, between, rng):
    """`1 84 12 75 123 456 (40)`, `1841275123456, clé : 40`: as written in letters and forms,
    with no label before (a labelled one was found already)."""
    others = [random_nir(rng, strict=True) for _ in range(5)]
    text = "".join(f"assuré {i} : {n[:13]}{between}{n[13:]}{')' if '(' in between else ''}\n"
                   for i, n in enumerate([NIR, *others]))
    spaced = f"adhérent {BODY[0]} {BODY[1:3]} {BODY[3:5]} {BODY[5:7]} {BODY[7:10]} {BODY[10:]}{between}{NIR[13:]}"
    assert nirs(found, text) == {NIR, *others} == nirs(found, text + spaced) - set()


@pytest.mark.parametrize("between", [" (clef ", " clés ", " c ", " (( ", " cl ", ", , "])
def test_other_words_between_body_and_key_are_not_a_key(found, between):
    assert not nirs(found, f"dossier {BODY}{between}{NIR[13:]})")


@pytest.mark.parametrize("key", ["secu", "Sécu", "codeNir", "code_nir", "num_nir", "numero_insee", "numeroInsee",
                                 "assure_matricule"])
def test_a_json_key_gluing_its_words_labels_a_bare_body(found, key):
    """`{"codeNir": "1841275123456"}`: a JSON key or an SQL column glues its words."""
    assert nirs(found, f'{{"nom": "X", "{key}": "{BODY}"}}') == {NIR}


@pytest.mark.parametrize("text", ["pour obtenir " + BODY, "à venir : " + BODY, "unir " + BODY, "saphir " + BODY])
def test_words_ending_in_nir_label_nothing(found, text):
    assert not nirs(found, text)
