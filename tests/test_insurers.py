"""Insurer names: canonical names, accents and case, word boundaries, ambiguity, nesting."""

from __future__ import annotations

import random
import unicodedata

import pytest

from watcher.detect.insurers import load_watch_list, parse_watch_list
from watcher.detect.text import HEALTH_CONTEXT, HealthContext


def insurers(found, text: str | bytes) -> set[str]:
    return found(text)["insurer"]


@pytest.mark.parametrize("text, canonical", [
    ("Viamedis", "Viamedis"), ("VIAMÉDIS", "Viamedis"), ("viamedis", "Viamedis"), ("Viamédis", "Viamedis"),
    ("Almérys", "Almerys"), ("ALMERYS", "Almerys"), ("almerys.com", "Almerys"), ("ALMÉRYS", "Almerys"),
    ("Malakoff-Humanis", "Malakoff Humanis"), ("Malakoff  Humanis", "Malakoff Humanis"),
    ("MALAKOFF MÉDÉRIC", "Malakoff Humanis"), ("harmonie mutuelle", "Harmonie Mutuelle"),
    ("M.G.E.N.", "MGEN"), ("mgen", "MGEN"), ("Aesio", "Aésio"), ("AÉSIO MUTUELLE", "Aésio"),
    ("Santeclair", "Santéclair"), ("Generali", "Generali"), ("Mutuelle Générale de l’Éducation Nationale", "MGEN"),
])
def test_canonical_name_reported(found, text, canonical):
    assert insurers(found, f"Complémentaire santé gérée par {text}.") == {canonical}


def test_nfd_decomposed_accents(found):
    text = unicodedata.normalize("NFD", "Gestion : Viamédis, puis Almérys et Aésio")
    assert text != unicodedata.normalize("NFC", text)
    assert insurers(found, text) == {"Viamedis", "Almerys", "Aésio"}


def test_accented_upper_case_nfd(found):
    assert insurers(found, unicodedata.normalize("NFD", "VIAMÉDIS")) == {"Viamedis"}


@pytest.mark.parametrize("text", ["xviamedis", "viamedisx", "almerys2", "2almerys", "préviamedis", "viamedisé"])
def test_no_match_inside_a_word(found, text):
    assert insurers(found, f"le mot {text} ici") == set()


@pytest.mark.parametrize("text", ["viamedis_2024.csv", "export-almerys.zip", "/data/viamedis/", "(Almerys)", "«Viamedis»",
                                  "viamedis;almerys"])
def test_separators_are_boundaries(found, text):
    assert insurers(found, text) <= {"Viamedis", "Almerys"}
    assert insurers(found, text)


@pytest.mark.parametrize("text", [
    "Alan est parti en vacances avec sa sœur.", "J'ai vu Alan hier.", "Alan Turing a écrit un article.",
    "Alan sa maison est au bord de la mer.",
])
def test_ambiguous_name_alone_in_prose_not_counted(found, text):
    assert insurers(found, text) == set()


@pytest.mark.parametrize("text", ["Alan, ma mutuelle, rembourse bien.", "Alan complémentaire santé",
                                  "Mon assurance santé : Alan.", "Alan\u00a0mutuelle"])
def test_ambiguous_name_with_health_context(found, text):
    assert insurers(found, text) == {"Alan"}


def test_unambiguous_variant_of_an_ambiguous_name(found):
    assert insurers(found, "Visit alan.com today") == {"Alan"}


@pytest.mark.parametrize("text", ["tokenMMAxyz", "aGVsbG8MMA2x", "xMMA", "MMAx", "3MMA", "MMA3", "ZmMMAQ==",
                                  "zMMAzMMAzMMA mutuelle"])
def test_mma_inside_random_tokens_never(found, text):
    assert insurers(found, f"{text} mutuelle santé") == set()


def test_mma_alone_needs_context(found):
    assert insurers(found, "Le combat de MMA était violent.") == set()
    assert insurers(found, "Mutuelle : MMA, garanties niveau 3") == {"MMA"}
    assert insurers(found, "MMA Vie") == {"MMA"}          # an unambiguous variant


def test_ambiguous_name_counts_at_a_later_occurrence_with_context(found):
    """Hyperscan reports the first occurrence only; a later one with context still counts."""
    filler = "lorem ipsum " * 60
    assert insurers(found, f"MMA gagne. {filler} Mutuelle : MMA, garanties") == {"MMA"}
    big = f"MMA gagne. {filler}" * 2_000 + "\nMutuelle : MMA, garanties\n"   # > 1 MiB: another chunk
    assert insurers(found, big) == {"MMA"}
    assert insurers(found, f"MMA gagne. {filler}" * 2_000) == set()


def test_health_context_must_be_near(found):
    far = "MMA " + "lorem ipsum " * 100 + " mutuelle"
    assert insurers(found, far) == set()


@pytest.mark.parametrize("text, expected", [
    ("Mutuelle Générale de la Police", {"MGP"}),
    ("MUTUELLE GENERALE DE LA POLICE", {"MGP"}),
    ("Mutuelle Générale des Cheminots", {"MGC"}),
    ("Mutuelle Générale de l'Éducation Nationale", {"MGEN"}),
    ("La Mutuelle Générale", {"La Mutuelle Générale"}),
    ("AG2R La Mondiale", {"AG2R La Mondiale"}),
    ("Malakoff Médéric Humanis", {"Malakoff Humanis"}),
    ("Swiss Life Prévoyance et Santé", {"Swiss Life"}),
])
def test_name_inside_a_longer_name_counts_once(found, text, expected):
    assert insurers(found, f"Organisme : {text}.") == expected


def test_nested_and_separate_occurrences(found):
    text = "Contrat Mutuelle Générale de la Police. Ancien contrat : La Mutuelle Générale."
    assert insurers(found, text) == {"MGP", "La Mutuelle Générale"}


def test_insurers_in_an_extract(analyzer):
    csv = "nom;prenom;mutuelle\n" + "".join(f"N{i};P{i};{m}\n" for i, m in enumerate(
        ["Viamédis", "ALMERYS", "Harmonie Mutuelle", "MGEN", "Viamedis"]))
    report = analyzer.analyze_bytes(csv.encode(), "x.csv")
    assert report.insurers == sorted({"Viamedis", "Almerys", "Harmonie Mutuelle", "MGEN"})
    assert report.counts["insurer"] == 4


def test_cp1252_accented_name(analyzer):
    report = analyzer.analyze_bytes("Tiers payant : Viamédis\nOrganisme : Almérys\n".encode("cp1252"), "x.txt")
    assert set(report.insurers) == {"Viamedis", "Almerys"}


def test_watch_list_parsing():
    names = parse_watch_list("# comment\nFoo Santé|Foo|~FS\n\n~Bar|Bar Mutuelle\n")
    by_text = {n.text: n for n in names}
    assert by_text["Foo"].canonical == "Foo Santé"
    assert by_text["FS"].ambiguous and not by_text["Foo"].ambiguous
    assert by_text["Bar"].canonical == "Bar" and by_text["Bar"].ambiguous
    assert not by_text["Bar Mutuelle"].ambiguous


def test_shipped_watch_list_has_the_2024_operators():
    canonicals = {n.canonical for n in load_watch_list()}
    assert {"Viamedis", "Almerys", "MGEN", "Harmonie Mutuelle", "Malakoff Humanis"} <= canonicals


# Measured false positives (issue 11): a common word, a first name, a place or a command that
# is spelled like an insurer gives no insurer, even where a word of another language means
# "health" or "insurance".
@pytest.mark.parametrize("text", [
    "Maaf, saya tidak tahu. Maaf sekali, asuransi kesehatan saya sudah habis.",
    "Secondo i dati generali dell'ISTAT, la sanità pubblica spende di più.",
    "Se consideră axa de simetrie a parabolei; axa Ox este orizontală.",
    "We flew to Mae Hong Son, then Mae Sariang. Mae said the health insurance was fine.",
    "Minha mãe tem seguro de saúde; a mãe dele também.",
    "Die Allianz der Länder beschloss eine Garantie für die Krankenversicherung.",
    "Audiens yang hadir sangat antusias dengan organisme ini.",
    "Our health insurance covers Alan and Mae; I assure you it is adherent to the policy.",
    "Nir Cohen met Alan and Mae. Nir: thanks, MMA tonight?",
    "NIR spectroscopy model: MAE of 0.31, RMSE of 0.42.",
])
def test_measured_false_positives(found, text):
    assert insurers(found, text) == set()


ANSYS_MGEN = """/PREP7
ET,1,MASS21
N,1,0,0,0
NGEN,4,1,1,1,1,1.0
M,1,UX,,,UY
MGEN,3,1,1,,1
/SOLU
ANTYPE,MODAL
MODOPT,LANB,4
SOLVE
"""


def test_ansys_mgen_command(found):
    assert insurers(found, ANSYS_MGEN) == set()


@pytest.mark.parametrize("text", [
    "건강보험 가입자 매월 보험료를 납부합니다. 매일 아침 메일을 확인하세요.",
    unicodedata.normalize("NFD", "건강보험 가입자 매월 보험료를 납부합니다. 매일 메일."),
    "mutuelle : 나랏〮MAE 말〯MAE",          # Middle Korean tone marks (U+302E/F) glued to the name
    "mutuelle : שׁMAE ; क़MAE",              # letters NFC leaves decomposed: the mark ends a word
])
def test_other_scripts(found, text):
    assert insurers(found, text) == set()


def test_mark_after_the_name_is_an_accent(found):
    """A combining mark after the last letter accents it (NFC has no precomposed form): the
    name still ends there, accent-insensitively."""
    assert insurers(found, "Mutuelle : MAE\u0331, adhérent 12") == {"MAE"}


@pytest.mark.parametrize("text", [
    "nir;cle;nom;mutuelle_code\n1;2;X;MAE\n",                  # header row
    "Nom : X\nNIR : 1 84 12 75 123 456 78\nOrganisme : MAE\n",  # labels
    "{\"nir\": \"1\", \"org\": \"MAAF\"}",
    "numero_secu,organisme\n1,AXA\n",
    "Adhérent n° 12 chez Generali.",
    "Assurance maladie : remboursé par MGEN.",
])
def test_ambiguous_names_in_french_health_context(found, text):
    assert insurers(found, text)


@pytest.mark.parametrize("text, canonical", [
    ("Votre adhésion à Viasanté Mutuelle est confirmée.", "Viasanté Mutuelle"),
    ("Apivia Macif Mutuelle vous informe d'une évolution de vos garanties.", "Apivia Macif Mutuelle"),
    ("Mutaero informe ses adhérents d'un incident chez Viamedis.", "Mutaero"),
    ("Contrat obsèques souscrit auprès de La France Mutualiste.", "La France Mutualiste"),
    ("Carte de tiers payant de la Mutuelle Mare-Gaillard, Guadeloupe.", "Mutuelle Mare-Gaillard"),
    ("Cotisation MGET prélevée le 5 du mois, mutuelle des agents de l'équipement.", "MGET"),
    ("Agent du Quai d'Orsay, complémentaire santé : MAEE.", "MAEE"),
    ("Le personnel civil du ministère adhère à MCDef.", "MCDef"),
    ("Le tiers payant SP santé est géré par Sintia, filiale de la mutuelle.", "Groupe Sintia"),
    ("Ancien organisme : Prévadiès (avant la fusion).", "Prévadiès"),
    ("Export 2011 : mutuelle MCD, section Côte-d'Or.", "MCD"),
    ("Adhérent Sphéria Val de France depuis 2009.", "Sphéria Val de France"),
    ("Ancienne mutuelle : Smam, remboursement reçu.", "Smam"),
    ("Relevé de prestations Mutuelle Smip 2010.", "Smip"),
    ("Garanties Primamut niveau 2.", "Primamut"),
    ("Cotisations AG.Mut réglées, mutuelle des agents.", "AG Mut"),
    ("Prévoyance Novalis Taitbout, dossier 2010.", "Novalis Taitbout"),
])
def test_new_names_found(found, text, canonical):
    assert canonical in insurers(found, text)


def test_new_names_in_the_shipped_list():
    canonicals = {n.canonical for n in load_watch_list()}
    assert {"Viasanté Mutuelle", "Apivia Macif Mutuelle", "Mutaero", "La France Mutualiste", "Mutuelle Mare-Gaillard",
            "MGET", "MAEE", "MCDef", "Groupe Sintia", "Prévadiès", "MCD", "Sphéria Val de France", "Smam", "Smip",
            "Primamut", "AG Mut", "Novalis Taitbout"} <= canonicals


def test_health_context_blocks_agree_with_a_whole_buffer_search():
    """HealthContext (each block searched once, when asked) finds the context a search of the
    whole buffer finds, across block edges, multi-byte characters, bad bytes and a header at
    the very start: `near` says whether a match overlaps the window around an occurrence."""
    filler = ["lorem ipsum ", "Nir Cohen ", "é" * 7, "\xff", "health insurance ", "Mae ", "\u20ac", "x;y\n"]
    health = ["nir;cle\n", "mutuelle ", "assurance maladie ", "num_adherent ", "ab;amc;cd\n", "garanties santé "]
    rng = random.Random(11)
    for _ in range(40):
        words = [rng.choice(health) if rng.random() < 0.03 else rng.choice(filler) for _ in range(600)]
        buf = "".join(words).encode("utf-8").replace(b"\xc3\xbf", b"\xff")
        text = "\n" + buf.decode("utf-8", "surrogateescape") + "\n"
        spans = [(len(text[:m.start()].encode("utf-8", "surrogateescape")) - 1,
                  len(text[:m.end()].encode("utf-8", "surrogateescape")) - 1) for m in HEALTH_CONTEXT.finditer(text)]
        context = HealthContext(buf)
        for start in range(0, len(buf), 37):
            lo, hi = start - 300, start + 3 + 300
            assert context.near(start, start + 3) == any(s < hi and e > lo for s, e in spans), start
