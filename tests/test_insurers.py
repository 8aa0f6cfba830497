"""Insurer names: canonical names, accents and case, word boundaries, ambiguity, nesting."""

from __future__ import annotations

import unicodedata

import pytest

from watcher.detect.insurers import load_watch_list, parse_watch_list


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
    assert insurers(found, f"Contrat géré par {text}.") == {canonical}


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
