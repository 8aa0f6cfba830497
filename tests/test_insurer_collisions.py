"""The whole insurer watch list against the commonest words of 25 languages (wordfreq).

A name that is also a common word (`maaf`, sorry, in Indonesian; `generali` in Italian) is
found in every text of that language: it must be marked `~` (ambiguous), so that it counts only
near French health-insurance context. This test fails on an unmarked name or variant that
equals, accents and case folded, one of the TOP most common words of a language below; the
ambiguous ones that collide are reported (`-s` shows them) and allowed.
"""

from __future__ import annotations

import functools

from wordfreq import top_n_list

from watcher.detect.insurers import Name, load_watch_list
from watcher.detect.text import fold_key

# Latin-script languages a dark-web page, a paste or a dump is commonly written in.
LANGUAGES = ("en", "fr", "it", "es", "de", "pt", "ro", "id", "nl", "tr", "ms", "ca", "sv", "da", "nb",
             "pl", "cs", "sk", "hu", "fi", "sh", "sl", "lt", "lv", "vi")
TOP = 30_000
# Names of 4 letters or fewer checked by hand and kept unambiguous: acronyms or brands that are
# no word in any language above (the data file says so too); `M.G.E.N.` is dotted.
REVIEWED_SHORT = {"be ys", "vyv3", "ag2r", "maif", "uneo", "fnmf", "ccmo", "lmde", "smip", "m.g.e.n."}


@functools.lru_cache(maxsize=1)
def common_words() -> dict[str, list[str]]:
    """folded word -> `lang:rank` of each language where it is among the TOP commonest."""
    words: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        for rank, word in enumerate(top_n_list(lang, TOP)):
            words.setdefault(fold_key(word), []).append(f"{lang}:{rank}")
    return words


def collisions(names: list[Name]) -> dict[str, list[str]]:
    """`name (canonical)` -> where it is a common word, for every name that is one."""
    words = common_words()
    return {f"{n.text} ({n.canonical})": words[fold_key(n.text)] for n in names if fold_key(n.text) in words}


def test_no_unambiguous_name_is_a_common_word():
    names = [n for n in load_watch_list() if not n.ambiguous]
    found = collisions(names)
    assert not found, f"common words not marked '~' in watcher/data/insurers.txt: {found}"


def test_ambiguous_collisions_reported():
    """The ambiguous names that are common words: allowed, listed. The word lists must be
    real ones: the names marked for being common words are found in them."""
    found = collisions([n for n in load_watch_list() if n.ambiguous])
    print("\nambiguous names that are common words:")
    for name, where in sorted(found.items()):
        print(f"  {name}: {', '.join(where[:8])}{' ...' if len(where) > 8 else ''}")
    assert {"MAE (MAE)", "MAAF (MAAF)", "AXA (AXA)", "Generali (Generali)", "Alan (Alan)"} <= set(found)


def test_collision_check_can_fail():
    """An unmarked common word is caught: the check is not vacuous."""
    names = [Name("Mae", "Mae", False), Name("Viamedis", "Viamedis", False)]
    assert list(collisions(names)) == ["Mae (Mae)"]


def test_short_names_are_ambiguous_or_reviewed():
    """Every unmarked name of 4 letters or fewer has been looked at (REVIEWED_SHORT)."""
    short = {fold_key(n.text) for n in load_watch_list()
             if not n.ambiguous and sum(c.isalpha() for c in n.text) <= 4}
    assert short <= REVIEWED_SHORT, f"short names to review and mark '~' or add: {short - REVIEWED_SHORT}"
